//! The README's first run from a checkout anywhere: `scripts/run-local.sh` in a checkout inside a
//! mode-700 folder, with spaces in its path (like a clone in /root), provisions its PostgreSQL,
//! starts the API and a worker whose transcoder runs as the sandbox user, and converts an upload;
//! Ctrl-C (SIGTERM) stops everything, the cluster included. The same provisioning is what
//! `scripts/test.sh` runs. (The binaries are the suite's own, through MEDIAQ_BIN_DIR, copied into
//! the checkout so that they too sit where the sandbox user cannot go.)

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use mediaq_e2e::{bin_dir, fixtures, probe, services::client_with_key, wait_for};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A checkout at `<tmp>/locked home/my checkout` with `locked home` at mode 700: the scripts and
/// the built binaries (in its own target/debug).
fn locked_checkout(base: &Path) -> PathBuf {
    let home = base.join("locked home");
    let checkout = home.join("my checkout");
    let bins = checkout.join("target/debug");
    std::fs::create_dir_all(&bins).unwrap();
    let status = Command::new("cp").arg("-a").arg(root().join("scripts")).arg(&checkout).status().unwrap();
    assert!(status.success());
    for bin in ["mediaq-api", "mediaq-worker", "mediaq-transcode"] {
        std::fs::copy(bin_dir().join(bin), bins.join(bin)).unwrap();
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    checkout
}

/// Kills run-local.sh's whole process group if the test fails half-way.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// `[mediaq] ... PREFIX<path>SUFFIX` from the script's log.
fn logged_path(log: &str, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let start = log.find(prefix)? + prefix.len();
    let end = log[start..].find(suffix)? + start;
    Some(PathBuf::from(&log[start..end]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_local_works_from_a_mode_700_checkout_with_spaces_in_its_path() {
    let base = tempfile::Builder::new().prefix("mediaq-first-run-").tempdir().unwrap();
    let checkout = locked_checkout(base.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = base.path().join("run-local.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(checkout.join("scripts/run-local.sh"))
        .current_dir(&checkout)
        .env_remove("DATABASE_URL")
        .env_remove("MEDIAQ_STORAGE_DIR")
        .env_remove("MEDIAQ_WORK_DIR")
        .env_remove("MEDIAQ_TRANSCODE_BIN")
        .env_remove("CARGO_TARGET_DIR")
        .env("MEDIAQ_BIN_DIR", checkout.join("target/debug"))
        .env("MEDIAQ_BIND", format!("127.0.0.1:{port}"))
        .env("MEDIAQ_PG_FSYNC", "off")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0);
    let mut run = Group(cmd.spawn().expect("run scripts/run-local.sh"));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !(log().contains("mediaq-worker ready") && log().contains("mediaq is running")) {
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!("run-local.sh exited {status}:\n{}", log());
        }
        assert!(std::time::Instant::now() < deadline, "run-local.sh did not start mediaq:\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = log();
    let data_dir = logged_path(&text, "(data: ", "/pgdata)").expect("the cluster's folder in the log");
    let sandbox_dir = logged_path(&text, "job directories in ", "\n");
    if is_root() {
        assert!(data_dir.starts_with("/var/tmp"), "the cluster must leave the locked checkout: {text}");
        assert!(sandbox_dir.as_ref().is_some_and(|d| d.starts_with("/var/tmp")), "{text}");
    } else {
        assert!(data_dir.starts_with(&checkout), "{text}");
    }

    let key = std::fs::read_to_string(checkout.join(".mediaq/local-api-key")).unwrap();
    let client = client_with_key(key.trim());
    let url = format!("http://127.0.0.1:{port}");
    let resp = client
        .post(format!("{url}/v1/jobs?filename=clip.webm"))
        .header("Content-Type", "video/webm")
        .body(fixtures::bytes(&fixtures::VP8_OPUS_2S))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let job: serde_json::Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let done: serde_json::Value = wait_for(Duration::from_secs(120), "the job to finish", || async {
        let j: serde_json::Value = client.get(format!("{url}/v1/jobs/{id}")).send().await.ok()?.json().await.ok()?;
        matches!(j["status"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", log());
    let mp4 = client.get(format!("{url}/v1/jobs/{id}/output")).send().await.unwrap().bytes().await.unwrap();
    let out = base.path().join("clip.mp4");
    std::fs::write(&out, &mp4).unwrap();
    let probed = probe::ffprobe(&out);
    assert_eq!(probe::stream(&probed, "video").unwrap()["codec_name"], "h264", "{probed}");

    // Ctrl-C: the script stops the API, the worker and its cluster.
    // SAFETY: kill(2) on the script's own pid.
    unsafe { libc::kill(run.0.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while run.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "run-local.sh did not stop:\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!data_dir.join("pgdata/postmaster.pid").exists(), "the cluster still runs: {}", log());
    if is_root() {
        std::fs::remove_dir_all(&data_dir).unwrap();
        if let Some(dir) = sandbox_dir {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
