//! Rate limits per client address and per key (failed authentications included), with 429,
//! Retry-After and an audit row; X-Forwarded-For believed only from trusted proxies; per-key
//! quotas on unfinished jobs and daily bytes.

use std::time::Duration;

use mediaq_e2e::{
    fixtures,
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
    let api = env
        .api_with(&[
            ("MEDIAQ_RATE_LIMIT_KEY", "2"),
            ("MEDIAQ_RATE_LIMIT_IP", "1000"),
            ("MEDIAQ_AUDIT_FAILURE_WINDOW", "1s"),
        ])
        .await;
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
    // `bearer` in lower case is the same credential, spending the same budget (it used to skip it).
    let (lower, lower_key) = (reqwest::Client::new(), other_key(&env));
    let replies = statuses(8, || lower.get(&url).header("authorization", format!("bearer {lower_key}"))).await;
    assert!(replies.iter().any(|r| r.status() == 429), "{:?}", replies.iter().map(|r| r.status()).collect::<Vec<_>>());
    // Wrong secrets sent under a key's id do not spend that key's budget (the id is not secret):
    // they are 401s, counted against their address only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let forged =
        format!("{}0000000000000000000000000000000000000000000000000000000000000000deadbeef", &env.api_key[..20]);
    let bad = client_with_key(&forged);
    let replies = statuses(8, || bad.get(&url)).await;
    assert!(replies.iter().all(|r| r.status() == 401), "{:?}", replies.iter().map(|r| r.status()).collect::<Vec<_>>());
    assert_eq!(api.client.get(&url).send().await.unwrap().status(), 200, "the real key still has its budget");
    // Hits are audited aggregated: one row per address and window, with a count.
    let pool = env.pool().clone();
    let hits: i64 = mediaq_e2e::wait_for(Duration::from_secs(10), "rate-limit rows", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum((details->>'count')::bigint), 0)::bigint FROM audit_events
                 WHERE action = 'rate_limit.hit'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (n >= 2).then_some(n)
        }
    })
    .await;
    assert!(hits >= 2);
}

/// A new key of owner `lower`.
fn other_key(env: &TestEnv) -> String {
    create_key(&env.database_url, "lower", "jobs:read", "lower")
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
