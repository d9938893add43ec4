//! Process lifecycle: SIGTERM stops the worker and the API cleanly; the API finishes the
//! requests in flight before it exits.

use std::time::Duration;

use mediaq_e2e::{fixtures, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn sigterm_stops_an_idle_worker_cleanly() {
    let env = TestEnv::new().await;
    let mut worker = env.worker().await;
    worker.service.signal(libc::SIGTERM);
    let status = worker.service.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", worker.service.log_text());
    assert!(worker.service.log_text().contains("mediaq-worker stopped"));
}

#[tokio::test]
async fn sigterm_lets_the_api_finish_an_upload_in_flight() {
    let env = TestEnv::new().await;
    let mut api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut stream = api.start_partial_upload(&webm, webm.len() / 2, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    api.service.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the upload in flight continues.
    assert!(tokio::net::TcpStream::connect(api.addr()).await.is_err(), "listener closed on SIGTERM");
    stream.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply)).await.unwrap().unwrap();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    let status = api.service.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 1, "the drained upload was recorded");
}

fn transcoder_running(job_id: &str) -> bool {
    !mediaq_e2e::transcoders_of(job_id).is_empty()
}

async fn upload_long_and_wait_running(api: &mediaq_e2e::Api) -> String {
    let resp = api.upload(fixtures::bytes(&fixtures::LONG_VP8), "video/webm", None).await;
    let job: serde_json::Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let id2 = id.clone();
    mediaq_e2e::wait_for(Duration::from_secs(30), "the transcoder to start", || {
        let running = transcoder_running(&id2);
        async move { running.then_some(()) }
    })
    .await;
    id
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let mut worker = env.worker().await;
    let id = upload_long_and_wait_running(&api).await;
    worker.service.signal(libc::SIGTERM);
    let status = worker.service.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{status}");
    let job = api.job(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1);
}

#[tokio::test]
async fn sigterm_past_the_grace_period_hands_the_job_back_for_immediate_reclaim() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let slow = [("MEDIAQ_X264_PRESET", "veryslow"), ("MEDIAQ_TRANSCODE_THREADS", "1"), ("MEDIAQ_SHUTDOWN_GRACE", "1s")];
    let mut worker = env.worker_with(&slow).await;
    let id = upload_long_and_wait_running(&api).await;
    worker.service.signal(libc::SIGTERM);
    let status = worker.service.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", worker.service.log_text());
    assert!(!transcoder_running(&id), "no transcoder outlives its worker");
    let job = api.job(&id).await;
    assert_eq!(job["status"], "queued", "handed back: {job}");
    assert_eq!(job["attempt_history"][0]["outcome"], "interrupted", "{job}");
    assert!(mediaq_e2e::files_under(&env.storage_dir().join("work")).is_empty());

    // Another worker takes it at once (not after the orphan timeout) and finishes it.
    let started = std::time::Instant::now();
    let _next = env.worker().await;
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    assert!(started.elapsed() < Duration::from_secs(10), "re-claimed in {:?}: {job}", started.elapsed());
}
