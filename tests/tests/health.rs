//! Liveness and readiness: `/healthz` and `/readyz` with pending migrations and a dead database.

use std::time::Duration;

use mediaq_e2e::{error_code, files_under, fixtures, TestEnv};
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let resp = api.client.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["storage"], "ok");

    // Pending migrations: not ready.
    sqlx::query("DELETE FROM _sqlx_migrations").execute(env.pool()).await.unwrap();
    let resp = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "migrations_pending");

    // An unreachable database: alive, not ready, and uploads fail fast with 503.
    let dead =
        env.api_with(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing"), ("MEDIAQ_DB_TIMEOUT", "1s")]).await;
    assert_eq!(dead.client.get(dead.url("/healthz")).send().await.unwrap().status(), 200);
    let resp = dead.client.get(dead.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "unavailable");
    let started = std::time::Instant::now();
    let resp = dead.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    let (status, code, body) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (503, "database_unavailable"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!body.to_string().contains("127.0.0.1:1"), "no internals in errors: {body}");
    // The refused upload's file was removed.
    let inputs = files_under(&env.storage_dir().join("inputs"));
    assert!(inputs.is_empty(), "{inputs:?}");
}
