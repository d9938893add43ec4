//! Crash recovery: a worker killed with SIGKILL mid-transcode takes its child with it, and the
//! job is re-run by another worker (already running, or started later) exactly to one output.

use std::time::{Duration, Instant};

use mediaq_e2e::{fixtures, transcoders_of, Api, TestEnv, Worker};
use serde_json::Value;

/// A worker slow enough to be caught mid-transcode.
const SLOW: &[(&str, &str)] = &[("MEDIAQ_X264_PRESET", "veryslow"), ("MEDIAQ_TRANSCODE_THREADS", "1")];

async fn start_slow_job(env: &TestEnv, api: &Api) -> (Worker, String) {
    let victim = env.worker_with(SLOW).await;
    let resp = api.upload(fixtures::bytes(&fixtures::LONG_VP8), "video/webm", Some("long.webm")).await;
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // Wait until the transcoder is running for it.
    let id2 = id.clone();
    mediaq_e2e::wait_for(Duration::from_secs(30), "the transcoder to start", || {
        let running = !transcoders_of(&id2).is_empty();
        async move { running.then_some(()) }
    })
    .await;
    (victim, id)
}

async fn kill_and_check_no_orphan(victim: &mut Worker, id: &str) -> Instant {
    victim.service.signal(libc::SIGKILL);
    let killed = Instant::now();
    victim.service.wait_exit(Duration::from_secs(5)).await;
    let id = id.to_owned();
    mediaq_e2e::wait_for(Duration::from_secs(2), "the orphaned transcoder to die", || {
        let left = transcoders_of(&id);
        async move { left.is_empty().then_some(()) }
    })
    .await;
    killed
}

async fn check_recovered(env: &TestEnv, api: &Api, id: &str) -> Value {
    let (_, job) = api.wait_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let history = job["attempt_history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "failed", "{job}");
    assert_eq!(history[0]["error_code"], "worker_crashed", "{job}");
    assert_eq!(history[1]["outcome"], "succeeded", "{job}");
    let outputs = mediaq_e2e::mp4s_under(&env.storage_dir().join("outputs"));
    assert_eq!(outputs.len(), 1, "exactly one output: {outputs:?}");
    assert!(mediaq_e2e::files_under(&env.storage_dir().join("work")).is_empty());
    job
}

#[tokio::test]
async fn a_killed_workers_job_is_rerun_by_a_running_worker() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let (mut victim, id) = start_slow_job(&env, &api).await;
    let _rescuer = env.worker().await;
    let killed = kill_and_check_no_orphan(&mut victim, &id).await;
    let job = check_recovered(&env, &api, &id).await;
    let recovered_after = killed.elapsed();
    assert!(recovered_after < Duration::from_secs(60), "recovered in {recovered_after:?}: {job}");
}

#[tokio::test]
async fn a_killed_workers_job_is_rerun_by_a_worker_started_later() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let (mut victim, id) = start_slow_job(&env, &api).await;
    kill_and_check_no_orphan(&mut victim, &id).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let job = api.job(&id).await;
    assert_eq!(job["status"], "processing", "nobody has it yet: {job}");
    let _late = env.worker().await;
    check_recovered(&env, &api, &id).await;
}
