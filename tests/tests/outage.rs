//! A database outage (PostgreSQL stopped and restarted with pg_ctl, on a private server):
//! requests fail fast with 503, readiness says so, and everything recovers by itself; every
//! accepted job reaches a terminal state exactly once.

use std::time::{Duration, Instant};

use mediaq_e2e::{fixtures, pg::PrivatePg, TestEnv};
use serde_json::Value;

#[tokio::test]
async fn a_database_outage_gives_fast_503s_and_everything_recovers() {
    let pg = PrivatePg::start();
    let env = TestEnv::on_server(&pg.url).await;
    let fast_fail = [("MEDIAQ_DB_TIMEOUT", "1s")];
    let api = env.api_with(&fast_fail).await;
    let _worker = env.worker_with(&fast_fail).await;
    let small = fixtures::bytes(&fixtures::VP8_VORBIS);

    let mut accepted = Vec::new();
    let job: Value = api.upload(small.clone(), "video/webm", None).await.json().await.unwrap();
    accepted.push(job["id"].as_str().unwrap().to_owned());
    // One job is transcoding when the database goes away.
    let job: Value = api.upload(fixtures::bytes(&fixtures::LONG_VP8), "video/webm", None).await.json().await.unwrap();
    let in_flight = job["id"].as_str().unwrap().to_owned();
    accepted.push(in_flight.clone());
    api.wait_terminal(&accepted[0], Duration::from_secs(60)).await;
    mediaq_e2e::wait_for(Duration::from_secs(30), "the long job to start", || {
        let api = &api;
        let id = in_flight.clone();
        async move { (api.job(&id).await["status"] == "processing").then_some(()) }
    })
    .await;

    pg.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let resp = api.upload(small.clone(), "video/webm", None).await;
        assert_eq!(resp.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(5), "fails fast: {:?}", started.elapsed());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "database_unavailable");
    }
    let resp = api.client.get(api.url(&format!("/v1/jobs/{in_flight}"))).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let resp = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(api.client.get(api.url("/healthz")).send().await.unwrap().status(), 200);
    // Give the in-flight transcode time to finish while the database is away.
    tokio::time::sleep(Duration::from_secs(3)).await;

    pg.resume();
    mediaq_e2e::wait_for(Duration::from_secs(30), "readiness after the outage", || {
        let api = &api;
        async move { (api.client.get(api.url("/readyz")).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let job: Value = api.upload(small.clone(), "video/webm", None).await.json().await.unwrap();
    accepted.push(job["id"].as_str().unwrap().to_owned());

    for id in &accepted {
        let (_, job) = api.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        // The in-flight job finishes and is recorded once the database is back (or, had its
        // worker died, is re-run): either way one terminal state and one output.
        assert!(job["attempts"].as_i64().unwrap() <= 2, "{job}");
    }
    // The refused uploads left nothing; one input and one output per accepted job.
    assert_eq!(mediaq_e2e::files_under(&env.storage_dir().join("inputs")).len(), accepted.len());
    assert_eq!(mediaq_e2e::mp4s_under(&env.storage_dir().join("outputs")).len(), accepted.len());
    assert!(mediaq_e2e::files_under(&env.storage_dir().join("tmp")).is_empty());
}
