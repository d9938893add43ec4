//! docker/, checked without a Docker engine: `scripts/check-docker.sh` accepts the committed
//! compose file, Dockerfiles and seccomp profile, and refuses a worker that lost its hardening;
//! the images' healthcheck script answers like the compose healthchecks expect against the real
//! API and worker. (The images' build steps run with `scripts/check-docker.sh --build`, by hand.)

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use mediaq_e2e::TestEnv;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn check(args: &[&str]) -> Output {
    Command::new("bash").arg(root().join("scripts/check-docker.sh")).args(args).output().expect("run check-docker.sh")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The committed compose file with `from` replaced by `to` once, inside the worker service.
fn worker_mutated(from: &str, to: &str) -> String {
    let compose = std::fs::read_to_string(root().join("docker/compose.yaml")).unwrap();
    let start = compose.find("\n  worker:\n").expect("a worker service");
    let at = compose[start..].find(from).unwrap_or_else(|| panic!("{from:?} not in the worker service")) + start;
    format!("{}{}{}", &compose[..at], to, &compose[at + from.len()..])
}

#[test]
fn the_committed_docker_files_pass_the_engine_free_checks() {
    let out = check(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("docker/compose.yaml and the Dockerfiles are valid"), "{}", text(&out));
}

#[test]
fn a_worker_that_lost_its_hardening_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A profile like ours but without Landlock: the transcoder could not confine itself.
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docker/seccomp-worker.json")).unwrap()).unwrap();
    let mut stripped = profile.clone();
    for rule in stripped["syscalls"].as_array_mut().unwrap() {
        rule["names"].as_array_mut().unwrap().retain(|n| !n.as_str().unwrap().starts_with("landlock_"));
    }
    let no_landlock = dir.path().join("no-landlock.json");
    std::fs::write(&no_landlock, serde_json::to_string(&stripped).unwrap()).unwrap();

    let cases = [
        (worker_mutated("    cap_drop: [ALL]\n", ""), "worker: cap_drop must be [ALL]"),
        (worker_mutated("    read_only: true\n", "    read_only: false\n"), "worker: read_only must be true"),
        (worker_mutated("      - no-new-privileges:true\n", ""), "worker: security_opt needs no-new-privileges:true"),
        (
            worker_mutated("seccomp=docker/seccomp-worker.json", &format!("seccomp={}", no_landlock.display())),
            "does not allow ['landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self']",
        ),
        (
            worker_mutated("      - /work:size=2g", "      - /scratch:size=2g"),
            "MEDIAQ_WORK_DIR /work is not a tmpfs mount",
        ),
        (worker_mutated("    pids_limit: 512\n", ""), "worker: needs a pids limit"),
        (
            worker_mutated(
                "    image: mediaq-worker:local\n",
                "    image: mediaq-worker:local\n    container_name: w1\n",
            ),
            "container_name prevents --scale",
        ),
        (
            worker_mutated("    healthcheck:\n", "    ports: [\"9464:9464\"]\n    healthcheck:\n"),
            "published ports clash",
        ),
        (worker_mutated("    init: true\n", "    init: true\n    hardened: yes\n"), "schema: services/worker"),
        (worker_mutated("      MEDIAQ_SANDBOX: strict\n", "      MEDIAQ_SANDBOX: best-effort\n"), "must stay strict"),
    ];
    for (i, (compose, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("compose-{i}.yaml"));
        std::fs::write(&path, compose).unwrap();
        let out = check(&["--compose", path.to_str().unwrap()]);
        assert!(!out.status.success(), "case {i} ({expected}) passed:\n{}", text(&out));
        assert!(text(&out).contains(expected), "case {i}: expected {expected:?} in:\n{}", text(&out));
    }
}

#[tokio::test]
async fn the_images_healthcheck_script_probes_the_real_services() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let worker = env.worker_with(&[("MEDIAQ_METRICS_BIND", "127.0.0.1:0")]).await;
    let probe = |addr: &str, path: &str| {
        Command::new("bash").arg(root().join("docker/healthcheck.sh")).args([addr, path]).output().unwrap()
    };
    let api_addr = api.addr().to_string();
    assert!(probe(&api_addr, "/readyz").status.success(), "{}", text(&probe(&api_addr, "/readyz")));
    let missing = probe(&api_addr, "/no-such-route");
    assert!(!missing.status.success());
    assert!(text(&missing).contains("404"), "{}", text(&missing));
    let worker_addr = worker.metrics_url.as_deref().unwrap().trim_start_matches("http://").to_owned();
    assert!(probe(&worker_addr, "/healthz").status.success(), "{}", text(&probe(&worker_addr, "/healthz")));
    // Nothing listening: unhealthy, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    assert!(!probe(&closed, "/healthz").status.success());
}

/// Issue #26, item 8: the engine-free check refuses a compose file that falls back to a
/// development password, gives the application the object store's root credential or serves a
/// worker's metrics to the compose network without a token, and a seccomp profile that lets the
/// worker make namespaces it does not use (a time or mount namespace).
#[test]
fn default_secrets_root_credentials_open_metrics_and_extra_namespaces_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let compose = std::fs::read_to_string(root().join("docker/compose.yaml")).unwrap();
    let replaced = |from: &str, to: &str| {
        assert!(compose.contains(from), "{from:?} not in compose.yaml");
        compose.replacen(from, to, 1)
    };
    // The profile as it was: unshare and clone let every namespace but cgroup, UTS and IPC through.
    let mut wide: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docker/seccomp-worker.json")).unwrap()).unwrap();
    for rule in wide["syscalls"].as_array_mut().unwrap() {
        if rule["comment"].as_str().is_some_and(|c| c.starts_with("mediaq: ")) && rule.get("args").is_some() {
            rule["args"][0]["value"] = serde_json::json!(0x0E00_0000u64);
        }
    }
    let wide_path = dir.path().join("wide.json");
    std::fs::write(&wide_path, serde_json::to_string(&wide).unwrap()).unwrap();

    let cases = [
        (
            replaced(
                "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD, see docs/DEPLOY.md}",
                "${POSTGRES_PASSWORD:-mediaq-dev-password}",
            ),
            "falls back to a default (${POSTGRES_PASSWORD:-",
        ),
        (
            replaced(
                "${MEDIAQ_S3_ACCESS_KEY:?set MEDIAQ_S3_ACCESS_KEY, see docs/DEPLOY.md}\n",
                "${MINIO_ROOT_USER:?x}\n",
            ),
            "the object store's root credential",
        ),
        (
            replaced(
                "MEDIAQ_METRICS_TOKEN: ${MEDIAQ_METRICS_TOKEN:?set MEDIAQ_METRICS_TOKEN, see docs/DEPLOY.md}",
                "MEDIAQ_METRICS_TOKEN: ${MEDIAQ_METRICS_TOKEN:-}",
            ),
            "MEDIAQ_METRICS_TOKEN must be required",
        ),
        (
            replaced("seccomp=docker/seccomp-worker.json", &format!("seccomp={}", wide_path.display())),
            "unshare may set CLONE_NEWTIME",
        ),
        (
            replaced("seccomp=docker/seccomp-worker.json", &format!("seccomp={}", wide_path.display())),
            "clone may set CLONE_NEWNS",
        ),
    ];
    for (i, (compose, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("compose-{i}.yaml"));
        std::fs::write(&path, compose).unwrap();
        let out = check(&["--compose", path.to_str().unwrap()]);
        assert!(!out.status.success(), "case {i} ({expected}) passed:\n{}", text(&out));
        assert!(text(&out).contains(expected), "case {i}: expected {expected:?} in:\n{}", text(&out));
    }
    // Secrets stay out of git and out of the images' build context.
    for ignore in [".gitignore", ".dockerignore"] {
        let text = std::fs::read_to_string(root().join(ignore)).unwrap();
        assert!(text.lines().any(|l| l.trim() == ".env"), "{ignore} lacks .env");
    }
}
