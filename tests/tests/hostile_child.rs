//! A transcoder child taken over by its input (sandbox and all: the stand-in applies none and
//! lies about it) attacks the worker through what it leaves and what it says. The worker holds:
//! no link or FIFO (at the output or the poster path) is ever stored or served, a forged code never leaves a job stuck or loops it,
//! an endless line does not grow the worker, and nothing the child starts outlives it.

use std::{path::PathBuf, time::Duration};

use mediaq_e2e::{bin_dir, fixtures, wait_for, TestEnv};
use serde_json::Value;

/// A symlink named after the act, pointing at the hostile stand-in (it picks its act by name).
fn stand_in(dir: &tempfile::TempDir, act: &str) -> PathBuf {
    let link = dir.path().join(act);
    std::os::unix::fs::symlink(bin_dir().join("mediaq-hostile-transcode"), &link).unwrap();
    link
}

fn peak_rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Runs one job through a worker whose transcoder is the stand-in acting `act`; returns the
/// terminal job, its id, and how much the worker's peak memory grew meanwhile (MiB).
async fn run_job(env: &TestEnv, act: &str) -> (Value, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = stand_in(&dir, act);
    let api = env.api().await;
    let worker = env
        .worker_with(&[
            ("MEDIAQ_TRANSCODE_BIN", bin.to_str().unwrap()),
            ("MEDIAQ_RETRY_BASE", "100ms"),
            ("MEDIAQ_STALL_TIMEOUT", "20s"),
        ])
        .await;
    let peak_before = peak_rss_mib(worker.service.pid());
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    let download = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(download.status(), 409, "{act}: nothing is served");
    // Any entry at all (a symlink is not a regular file).
    let outputs: Vec<_> =
        std::fs::read_dir(env.storage_dir().join("outputs")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(outputs.is_empty(), "{act}: stored {outputs:?}");
    let grown = peak_rss_mib(worker.service.pid()).saturating_sub(peak_before);
    drop(worker);
    (job, id, grown)
}

#[tokio::test]
async fn links_and_fifos_at_the_output_path_are_never_stored() {
    let env = TestEnv::new().await;
    for act in ["symlink-output", "fifo-output", "symlink-poster"] {
        let started = std::time::Instant::now();
        let (job, _, _) = run_job(&env, act).await;
        assert_eq!(job["status"], "failed", "{act}: {job}");
        assert_eq!(job["error"]["code"], "sandbox_violation", "{act}: {job}");
        assert_eq!(job["attempts"], 1, "{act}: permanent, not retried: {job}");
        assert!(started.elapsed() < Duration::from_secs(30), "{act}: the worker did not hang");
    }
}

#[tokio::test]
async fn forged_worker_codes_fail_the_job_once() {
    let env = TestEnv::new().await;
    for act in ["forge-canceled", "forge-interrupted", "endless-line"] {
        let (job, id, grown_mib) = run_job(&env, act).await;
        assert!(grown_mib < 32, "{act}: the worker's peak memory grew by {grown_mib} MiB");
        assert_eq!(job["status"], "failed", "{act}: {job}");
        assert_eq!(job["error"]["code"], "transcode_error", "{act}: {job}");
        assert_eq!(job["attempts"], 1, "{act}: {job}");
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE job_id = $1::uuid")
            .bind(&id)
            .fetch_one(env.pool())
            .await
            .unwrap();
        assert_eq!(attempts, 1, "{act}: one attempt, not a requeue loop");
    }
}

#[tokio::test]
async fn nothing_the_child_starts_outlives_the_attempt() {
    let env = TestEnv::new().await;
    let (job, id, _) = run_job(&env, "setsid-grandchild").await;
    assert_eq!(job["status"], "failed", "{job}");
    // The grandchild's command line names the job directory, which names the job.
    let survivors = wait_for(Duration::from_secs(5), "the grandchild to be gone", || {
        let id = id.clone();
        async move {
            let alive: Vec<u32> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| {
                    let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    String::from_utf8_lossy(&cmdline).contains(&id).then_some(pid)
                })
                .collect();
            alive.is_empty().then_some(alive)
        }
    })
    .await;
    assert!(survivors.is_empty());
}

#[tokio::test]
async fn stored_outputs_belong_to_the_worker_and_no_one_else() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The MP4 and its poster.
    let stored: Vec<_> = std::fs::read_dir(env.storage_dir().join("outputs")).unwrap().flatten().collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for file in stored {
        let meta = std::fs::symlink_metadata(file.path()).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o777, 0o600, "not readable by other users (the sandbox user included)");
        // SAFETY: geteuid has no preconditions. The worker runs as this test's user.
        assert_eq!(meta.uid(), unsafe { libc::geteuid() }, "owned by the worker, not the sandbox user");
    }
}
