//! `DELETE /v1/jobs/{id}`: cancels queued and processing jobs (the child dies within 2 s),
//! deletes a finished job's files, and is idempotent.

use std::time::{Duration, Instant};

use mediaq_e2e::{files_under, fixtures, Api, TestEnv};
use serde_json::Value;

async fn delete(api: &Api, id: &str) -> (u16, Value) {
    let resp = api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn upload(api: &Api, recipe: &fixtures::Recipe) -> String {
    let job: Value = api.upload(fixtures::bytes(recipe), "video/webm", None).await.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

fn transcoder_running(job_id: &str) -> bool {
    !mediaq_e2e::transcoders_of(job_id).is_empty()
}

#[tokio::test]
async fn a_queued_job_is_canceled_at_once_and_stays_canceled() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let id = upload(&api, &fixtures::VP8_VORBIS).await;
    let (status, job) = delete(&api, &id).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "canceled", "{job}");
    assert!(job["files_deleted_at"].is_string());
    assert!(files_under(&env.storage_dir().join("inputs")).is_empty(), "input deleted");
    let (status, again) = delete(&api, &id).await;
    assert_eq!((status, &again["status"]), (200, &job["status"]), "idempotent");
    assert_eq!(again["files_deleted_at"], job["files_deleted_at"]);
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'job.canceled'")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(audits, 1);
    // A worker that comes later leaves it alone.
    let _worker = env.worker().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = api.job(&id).await;
    assert_eq!(job["status"], "canceled");
    assert_eq!(job["attempts"], 0);

    let (status, body) = delete(&api, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("job_not_found")));
    let (status, body) = delete(&api, "nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_job_id")));
}

#[tokio::test]
async fn a_processing_job_is_canceled_and_its_child_killed_within_two_seconds() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker_with(&[("MEDIAQ_X264_PRESET", "veryslow"), ("MEDIAQ_TRANSCODE_THREADS", "1")]).await;
    let id = upload(&api, &fixtures::LONG_VP8).await;
    let id2 = id.clone();
    mediaq_e2e::wait_for(Duration::from_secs(30), "the transcoder to start", || {
        let running = transcoder_running(&id2);
        async move { running.then_some(()) }
    })
    .await;
    let (status, job) = delete(&api, &id).await;
    let canceled_at = Instant::now();
    assert_eq!((status, job["status"].as_str()), (200, Some("canceled")), "{job}");
    while transcoder_running(&id) {
        assert!(canceled_at.elapsed() < Duration::from_secs(2), "the child outlived the cancellation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The attempt is recorded as canceled, nothing is stored, the job stays canceled.
    let history = mediaq_e2e::wait_for(Duration::from_secs(5), "the attempt to be recorded", || {
        let api = &api;
        let id = id.clone();
        async move {
            let job = api.job(&id).await;
            let last = job["attempt_history"].as_array()?.last()?.clone();
            (last["outcome"] == "canceled").then_some(job)
        }
    })
    .await;
    assert_eq!(history["status"], "canceled");
    assert!(files_under(&env.storage_dir().join("outputs")).is_empty());
    assert!(files_under(&env.storage_dir().join("work")).is_empty());
}

#[tokio::test]
async fn deleting_a_finished_job_deletes_its_files() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let id = upload(&api, &fixtures::VP8_VORBIS).await;
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(files_under(&env.storage_dir().join("outputs")).len(), 2, "the MP4 and its poster");
    let (status, job) = delete(&api, &id).await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded", "a finished job keeps its status: {job}");
    assert!(job["files_deleted_at"].is_string(), "and says its files are gone: {job}");
    assert!(job["links"]["output"].is_null());
    assert!(files_under(&env.storage_dir().join("outputs")).is_empty());
    assert!(files_under(&env.storage_dir().join("inputs")).is_empty());
    let resp = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "output_gone");
    let (status, again) = delete(&api, &id).await;
    assert_eq!((status, &again["files_deleted_at"]), (200, &job["files_deleted_at"]));
}
