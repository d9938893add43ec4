//! Idempotency-Key on POST /v1/jobs, with Stripe's semantics.

use std::time::Duration;

use mediaq_e2e::{fixtures, Api, TestEnv};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(api: &Api, key: &str, bytes: Vec<u8>) -> reqwest::Response {
    api.client
        .post(api.url("/v1/jobs"))
        .header("content-type", "video/webm")
        .header("idempotency-key", key)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn count_jobs(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap()
}

#[tokio::test]
async fn a_replay_returns_the_same_job_and_a_different_request_is_refused() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);

    let first = post(&api, "key-1", webm.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let replay = post(&api, "key-1", webm.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.headers()["location"].to_str().unwrap(), format!("/v1/jobs/{}", first["id"].as_str().unwrap()));
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(count_jobs(&env).await, 1, "no second job");
    assert_eq!(mediaq_e2e::files_under(&env.storage_dir().join("inputs")).len(), 1);
    assert!(mediaq_e2e::files_under(&env.storage_dir().join("tmp")).is_empty());

    let other = post(&api, "key-1", fixtures::bytes(&fixtures::VP9_OPUS)).await;
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!(count_jobs(&env).await, 1);

    // Another key is another job; a request that fails releases its key.
    assert_eq!(post(&api, "key-2", webm.clone()).await.status(), 202);
    assert_eq!(post(&api, "key-3", b"not a video".to_vec()).await.status(), 415);
    assert_eq!(post(&api, "key-3", webm.clone()).await.status(), 202, "a failed request does not burn its key");
    let bad =
        api.client.post(api.url("/v1/jobs")).header("idempotency-key", "a b").body(webm.clone()).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // Keys expire after 24 hours.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'key-1'")
        .execute(env.pool())
        .await
        .unwrap();
    let fresh = post(&api, "key-1", fixtures::bytes(&fixtures::VP9_OPUS)).await;
    assert_eq!(fresh.status(), 202);
    let fresh: Value = fresh.json().await.unwrap();
    assert_ne!(fresh["id"], first["id"]);
}

#[tokio::test]
async fn a_concurrent_duplicate_is_a_conflict() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    // The first request sends half its body and holds the key.
    let mut slow = api.start_partial_upload(&webm, webm.len() / 2, "Idempotency-Key: dup\r\n").await;
    let pool = env.pool().clone();
    mediaq_e2e::wait_for(Duration::from_secs(5), "the key to be claimed", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'dup'")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n == 1).then_some(())
        }
    })
    .await;

    let dup = post(&api, "dup", webm.clone()).await;
    assert_eq!(dup.status(), 409);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_request_in_progress");

    slow.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    // Now the same request replays.
    let replay = post(&api, "dup", webm).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(count_jobs(&env).await, 1);
}

/// Keys belong to their owner: another tenant's use of the same key string neither replays nor
/// refuses, blocks or reveals anything of the first.
#[tokio::test]
async fn keys_belong_to_their_owner() {
    use mediaq_e2e::services::{client_with_key, create_key};
    let env = TestEnv::new().await;
    let api = env.api().await;
    let bob = client_with_key(&create_key(&env.database_url, "bob", "jobs:write,jobs:read", "bob"));
    let bob_post = |bytes: Vec<u8>| {
        bob.post(api.url("/v1/jobs"))
            .header("content-type", "video/webm")
            .header("idempotency-key", "shared")
            .body(bytes)
            .send()
    };
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let alice: Value = post(&api, "shared", webm.clone()).await.json().await.unwrap();

    // Different content under the same key string: Bob's own new job, not 422.
    let resp = bob_post(fixtures::bytes(&fixtures::VP9_OPUS)).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let bobs: Value = resp.json().await.unwrap();
    assert_ne!(bobs["id"], alice["id"]);
    // Bob's replay is his own job; Alice's replay is still hers.
    let again = bob_post(fixtures::bytes(&fixtures::VP9_OPUS)).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], bobs["id"]);
    let replay = post(&api, "shared", webm.clone()).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], alice["id"]);

    // Alice holding a key mid-upload does not make Bob's use of the same string a 409.
    let mut slow = api.start_partial_upload(&webm, webm.len() / 2, "Idempotency-Key: held\r\n").await;
    let pool = env.pool().clone();
    mediaq_e2e::wait_for(Duration::from_secs(5), "the key to be claimed", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'held'")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n == 1).then_some(())
        }
    })
    .await;
    let resp = bob
        .post(api.url("/v1/jobs"))
        .header("content-type", "video/webm")
        .header("idempotency-key", "held")
        .body(webm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "another owner's request in progress is not Bob's conflict");
    slow.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert_eq!(count_jobs(&env).await, 4);
}

/// A request whose lease ran out (an upload slower than the lease) and was taken over by a retry
/// cannot complete the key: one key, one job.
#[tokio::test]
async fn a_lease_taken_over_cannot_complete_a_second_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut slow = api.start_partial_upload(&webm, webm.len() / 2, "Idempotency-Key: long\r\n").await;
    let pool = env.pool().clone();
    mediaq_e2e::wait_for(Duration::from_secs(5), "the key to be claimed", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'long'")
                .fetch_one(&pool)
                .await
                .unwrap();
            (n == 1).then_some(())
        }
    })
    .await;
    // The lease runs out while the first upload is still arriving; a retry takes the key over.
    sqlx::query("UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE key = 'long'")
        .execute(env.pool())
        .await
        .unwrap();
    let retry = post(&api, "long", webm.clone()).await;
    assert_eq!(retry.status(), 202);
    let retry: Value = retry.json().await.unwrap();
    // The first upload now ends: it may not make a second job for the key.
    slow.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 409"), "{reply}");
    assert!(reply.contains("idempotency_request_in_progress"), "{reply}");
    assert_eq!(count_jobs(&env).await, 1);
    let replay = post(&api, "long", webm).await;
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], retry["id"]);
    mediaq_e2e::wait_for(Duration::from_secs(5), "the loser's input removed", || {
        let n = mediaq_e2e::files_under(&env.storage_dir().join("inputs")).len();
        async move { (n == 1).then_some(()) }
    })
    .await;
}
