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
