//! Several worker hosts for real: each worker runs in its own network namespace and reaches
//! PostgreSQL and the S3 store (moto) only through its veth link. 30 jobs spread over 3 hosts;
//! then one host's link is cut mid-job: another host finishes the job, and the cut host's late
//! result is discarded when its link comes back.

use std::{collections::BTreeMap, time::Duration};

use mediaq_e2e::{
    fixtures,
    hosts::{self, Cluster},
    probe,
    s3::{pairs, S3Server},
    wait_for, Api, TestEnv,
};
use serde_json::Value;

async fn upload(api: &Api, recipe: &fixtures::Recipe) -> String {
    let resp = api.upload(fixtures::bytes(recipe), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn attempts_of(env: &TestEnv, id: &str) -> Vec<(i32, String, Option<String>)> {
    sqlx::query_as("SELECT attempt, worker, outcome FROM job_attempts WHERE job_id = $1::uuid ORDER BY attempt")
        .bind(id)
        .fetch_all(env.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn thirty_jobs_spread_over_three_hosts_and_a_cut_hosts_job_is_finished_elsewhere() {
    hosts::assert_prerequisites();
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let api = env.api_with(&pairs(&s3.env())).await;
    let cluster = Cluster::start(&env, &s3, 3, &[("MEDIAQ_HEARTBEAT", "1s"), ("MEDIAQ_TRANSCODE_THREADS", "1")]).await;

    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(upload(&api, &fixtures::VP8_VORBIS).await);
    }
    for id in &ids {
        let (_, job) = api.wait_terminal(id, Duration::from_secs(240)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let workers: Vec<String> = sqlx::query_scalar("SELECT worker FROM job_attempts WHERE outcome = 'succeeded'")
        .fetch_all(env.pool())
        .await
        .unwrap();
    assert_eq!(workers.len(), 30);
    let mut per_host = BTreeMap::new();
    for w in &workers {
        *per_host.entry(cluster.host_of(w)).or_insert(0) += 1;
    }
    eprintln!("jobs per host: {per_host:?}");
    assert_eq!(per_host.len(), 3, "every host ran jobs: {per_host:?}");
    // MEDIAQ_WORKER_CONCURRENCY=1 (the default): no worker ran two attempts at once.
    let overlapping: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.job_id::text, b.job_id::text FROM job_attempts a JOIN job_attempts b
           ON a.worker = b.worker AND a.job_id < b.job_id
          AND a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    .fetch_all(env.pool())
    .await
    .unwrap();
    assert!(overlapping.is_empty(), "attempts of one worker overlapped: {overlapping:?}");

    // Cut the link of the host that runs a 20 s clip, mid-job.
    let id = upload(&api, &fixtures::LONG_VP8).await;
    let first = wait_for(Duration::from_secs(60), "the long job to start", || async {
        let attempts = attempts_of(&env, &id).await;
        let job = api.job(&id).await;
        (job["status"] == "processing" && job["progress"].as_f64().unwrap_or(0.0) > 0.0)
            .then(|| attempts.first().cloned())
            .flatten()
    })
    .await;
    let cut = cluster.host_of(&first.1);
    cluster.hosts[cut].cut();
    let done = wait_for(Duration::from_secs(180), "another host to finish the job", || async {
        let attempts = attempts_of(&env, &id).await;
        attempts.iter().find(|a| a.2.as_deref() == Some("succeeded")).cloned()
    })
    .await;
    assert!(done.0 > first.0, "a later attempt finished it: {done:?}");
    assert_ne!(cluster.host_of(&done.1), cut, "on another host");
    let job = api.job(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The link comes back: the cut host's late result is recorded as superseded and changes nothing.
    cluster.hosts[cut].restore();
    wait_for(Duration::from_secs(240), "the cut host's late result", || async {
        let attempts = attempts_of(&env, &id).await;
        (attempts[0].2.as_deref() == Some("superseded")).then_some(())
    })
    .await;
    let after = api.job(&id).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["output"], job["output"], "the late result did not replace the output");
    let bytes = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap().bytes().await.unwrap();
    let file = env.logs.path().join("long.mp4");
    std::fs::write(&file, &bytes).unwrap();
    let duration = probe::duration(&probe::ffprobe(&file));
    assert!((duration - 20.0).abs() < 0.5, "the MP4 holds the whole clip: {duration}");
    assert!(
        cluster.workers[cut].service.log_text().contains("superseded"),
        "the cut host says it discarded its output"
    );
}
