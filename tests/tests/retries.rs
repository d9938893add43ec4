//! Transient failures are retried with persistent backoff up to MEDIAQ_MAX_ATTEMPTS; permanent
//! ones are not; every job ends terminal with at most one output. Faults are injected by a
//! stand-in transcoder that crashes a job's first N attempts (N from the job id).

use std::time::Duration;

use mediaq_e2e::{bin_dir, fixtures, TestEnv};
use serde_json::Value;

/// Mirrors `failures()` in worker/engine/src/bin/mediaq-flaky-transcode.rs.
fn injected_failures(job_id: &str) -> i64 {
    (job_id.bytes().map(u32::from).sum::<u32>() % 4) as i64
}

#[tokio::test]
async fn three_workers_sixty_jobs_with_injected_crashes() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let flaky = bin_dir().join("mediaq-flaky-transcode");
    let flaky = flaky.to_str().unwrap();
    let worker_env = [("MEDIAQ_TRANSCODE_BIN", flaky), ("MEDIAQ_RETRY_BASE", "200ms"), ("MEDIAQ_MAX_ATTEMPTS", "3")];
    let _workers =
        [env.worker_with(&worker_env).await, env.worker_with(&worker_env).await, env.worker_with(&worker_env).await];
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut ids = Vec::new();
    for _ in 0..60 {
        let job: Value = api.upload(webm.clone(), "video/webm", None).await.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let (mut succeeded, mut exhausted) = (0, 0);
    for id in &ids {
        let (_, job) = api.wait_terminal(id, Duration::from_secs(240)).await;
        let failures = injected_failures(id);
        let retries: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE job_id = $1::uuid AND action = 'job.retry_scheduled'",
        )
        .bind(id)
        .fetch_one(env.pool())
        .await
        .unwrap();
        if failures < 3 {
            assert_eq!(job["status"], "succeeded", "{failures} injected: {job}");
            assert_eq!(job["attempts"], failures + 1, "{job}");
            assert_eq!(retries, failures, "{job}");
            assert!(job["error"].is_null(), "{job}");
            succeeded += 1;
        } else {
            assert_eq!(job["status"], "failed", "{job}");
            assert_eq!(job["attempts"], 3, "{job}");
            assert_eq!(job["error"]["code"], "transcoder_crashed", "{job}");
            assert_eq!(retries, 2, "{job}");
            exhausted += 1;
        }
        let history = job["attempt_history"].as_array().unwrap();
        assert_eq!(history.len() as i64, job["attempts"].as_i64().unwrap());
        for (i, a) in history.iter().enumerate() {
            let crashed = (i as i64) < failures;
            assert_eq!(a["error_code"], if crashed { Value::from("transcoder_crashed") } else { Value::Null }, "{job}");
        }
    }
    assert!(succeeded > 0 && exhausted > 0, "both paths exercised: {succeeded} / {exhausted}");
    // Exactly one output per succeeded job, none for the others.
    let outputs = mediaq_e2e::mp4s_under(&env.storage_dir().join("outputs"));
    assert_eq!(outputs.len(), succeeded, "{outputs:?}");
    // Dead letters list exactly the exhausted jobs.
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(dead, exhausted as i64);
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_an_operator_can_requeue() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker_with(&[("MEDIAQ_RETRY_BASE", "100ms")]).await;
    // A WebM header with nothing decodable after it: invalid media, permanent.
    let mut broken = fixtures::bytes(&fixtures::VP8_VORBIS);
    broken.truncate(400);
    let job: Value = api.upload(broken, "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "permanent: no retry: {job}");

    // The operator's requeue gives it a fresh budget; it fails the same way, once more.
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["jobs", "requeue", &id])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    // Requeueing a job that is not failed is refused.
    let resp: Value =
        api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let ok_id = resp["id"].as_str().unwrap().to_owned();
    let (_, _) = api.wait_terminal(&ok_id, Duration::from_secs(60)).await;
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["jobs", "requeue", &ok_id])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
