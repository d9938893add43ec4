//! Rate limits per client address and per key (failed authentications included), with 429,
//! Retry-After and an audit row; X-Forwarded-For believed only from trusted proxies; per-key
//! quotas on unfinished jobs and daily bytes.

use std::time::Duration;

use mediaq_e2e::{
    error_code, files_under, fixtures,
    services::{client_with_key, create_key},
    TestEnv,
};
use serde_json::Value;

async fn statuses(n: usize, send: impl Fn() -> reqwest::RequestBuilder) -> Vec<reqwest::Response> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send().send().await.unwrap());
    }
    out
}

#[tokio::test]
async fn bursts_over_the_limit_get_429_with_retry_after() {
    let env = TestEnv::new().await;
    // 2 per second per key (bursts of 4); the address limit is high.
    let api = env.api_with(&[("MEDIAQ_RATE_LIMIT_KEY", "2"), ("MEDIAQ_RATE_LIMIT_IP", "1000")]).await;
    let url = api.url("/v1/jobs");
    let replies = statuses(8, || api.client.get(&url)).await;
    let limited: Vec<&reqwest::Response> = replies.iter().filter(|r| r.status() == 429).collect();
    assert!(
        !limited.is_empty() && replies[0].status() == 200,
        "{:?}",
        replies.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    let retry: u64 = limited[0].headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    // Another key is not affected.
    let other = client_with_key(&create_key(&env.database_url, "other", "jobs:read", "other"));
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    // Failed authentications count too (per presented key id).
    let forged =
        format!("{}0000000000000000000000000000000000000000000000000000000000000000deadbeef", &env.api_key[..20]);
    let bad = client_with_key(&forged);
    let replies = statuses(8, || bad.get(&url)).await;
    assert!(replies.iter().any(|r| r.status() == 429), "{:?}", replies.iter().map(|r| r.status()).collect::<Vec<_>>());
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'rate_limit.hit'")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert!(hits >= 2);
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let env = TestEnv::new().await;
    // 2 per second per address; loopback is a trusted proxy in the first API only.
    let limits = [("MEDIAQ_RATE_LIMIT_IP", "2"), ("MEDIAQ_RATE_LIMIT_KEY", "1000")];
    let behind_proxy = env.api_with(&[limits[0], limits[1], ("MEDIAQ_TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let url = behind_proxy.url("/v1/jobs");
    // Different forwarded clients each get their own budget.
    for i in 0..6 {
        let r = behind_proxy.client.get(&url).header("x-forwarded-for", format!("203.0.113.{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "client {i}");
    }
    // Without trust, the header is ignored: one address, one budget.
    let direct = env.api_with(&limits).await;
    let url = direct.url("/v1/jobs");
    let mut codes = Vec::new();
    for i in 0..8 {
        codes.push(
            direct.client.get(&url).header("x-forwarded-for", format!("203.0.113.{i}")).send().await.unwrap().status(),
        );
    }
    assert!(codes.contains(&reqwest::StatusCode::TOO_MANY_REQUESTS), "{codes:?}");
}

#[tokio::test]
async fn quotas_on_unfinished_jobs_and_daily_bytes() {
    let env = TestEnv::new().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let api = env.api_with(&[("MEDIAQ_QUOTA_ACTIVE_JOBS", "2")]).await;
    for _ in 0..2 {
        assert_eq!(api.upload(webm.clone(), "video/webm", None).await.status(), 202);
    }
    let resp = api.upload(webm.clone(), "video/webm", None).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");

    let bytes = (webm.len() * 3 / 2).to_string();
    let api = env.api_with(&[("MEDIAQ_QUOTA_DAILY_BYTES", &bytes)]).await;
    let fresh = client_with_key(&create_key(&env.database_url, "fresh", "jobs:write,jobs:read", "fresh"));
    let post = || fresh.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send();
    assert_eq!(post().await.unwrap().status(), 202);
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
}

/// A sample's value in the API's `/metrics` text (no metrics token is configured here).
async fn metric(api: &mediaq_e2e::services::Api, name: &str) -> f64 {
    let text = api.client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

#[tokio::test]
async fn uploads_past_the_concurrency_cap_get_503_server_busy_and_store_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_MAX_CONCURRENT_UPLOADS", "2")]).await;
    let webm = fixtures::bytes(&fixtures::LONG_VP8);
    // Two slow clients: headers and half of the body each, then silence.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(api.start_partial_upload(&webm, webm.len() / 2, "").await);
    }
    let tmp = env.storage_dir().join("tmp");
    mediaq_e2e::wait_for(Duration::from_secs(5), "two uploads in flight", || {
        let n = files_under(&tmp).len();
        async move { (n == 2).then_some(()) }
    })
    .await;
    assert_eq!(metric(&api, "mediaq_uploads_in_flight").await, 2.0);

    // A third is refused at once, with a retry hint, and nothing of it is stored.
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (503, "server_busy"));
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(files_under(&tmp).len(), 2);
    assert_eq!(files_under(&env.storage_dir().join("inputs")).len(), 0);
    assert_eq!(metric(&api, "mediaq_uploads_refused_busy_total").await, 1.0);

    // One slow client finishes (202); its place is free again.
    let mut done = slow.pop().unwrap();
    done.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = vec![0u8; 12];
    done.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 202");
    assert_eq!(api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.status(), 202);
    // The other hangs up: its place comes back too, and its temp file goes.
    drop(slow);
    mediaq_e2e::wait_for(Duration::from_secs(5), "no upload in flight", || {
        let (api, tmp) = (&api, &tmp);
        async move { (metric(api, "mediaq_uploads_in_flight").await == 0.0 && files_under(tmp).is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(files_under(&env.storage_dir().join("inputs")).len(), 2);
}
