//! API keys, scopes and tenancy: opaque bearer keys from the real CLI, 401/403/404 as due.

use mediaq_e2e::{
    bin_dir, fixtures,
    services::{client_with_key, create_key},
    TestEnv,
};
use serde_json::Value;

async fn code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_AUDIT_FAILURE_WINDOW", "1s")]).await;
    let anonymous = reqwest::Client::new();
    let url = api.url("/v1/jobs");

    let resp = anonymous
        .post(&url)
        .header("content-type", "video/webm")
        .body(fixtures::bytes(&fixtures::VP8_VORBIS))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"mediaq\"");
    assert_eq!(code(resp).await, (401, "unauthorized".into()));
    for bad in ["Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer mq_0123456789abcdef_00"] {
        let resp = anonymous.get(&url).header("authorization", bad).send().await.unwrap();
        assert_eq!(code(resp).await, (401, "unauthorized".into()), "{bad}");
    }
    // A well-formed key with a wrong secret (checksum recomputed is not possible without the
    // secret, so flip one digit of a real key: the checksum catches it before the database).
    let mut forged = env.api_key.clone().into_bytes();
    forged[30] = if forged[30] == b'0' { b'1' } else { b'0' };
    let resp = anonymous.get(&url).bearer_auth(String::from_utf8(forged).unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Credentials in the URL are refused outright, even valid ones.
    let resp = anonymous.get(format!("{url}?api_key={}", env.api_key)).send().await.unwrap();
    assert_eq!(code(resp).await, (400, "credentials_in_url".into()));
    // Health endpoints are open.
    assert_eq!(anonymous.get(api.url("/healthz")).send().await.unwrap().status(), 200);

    // Revocation takes effect at once: the API's cache of verified keys drops it on the NOTIFY
    // sent in the revoking transaction (allow the notification a moment to arrive).
    let key = create_key(&env.database_url, "temp", "jobs:read", "tester");
    let client = client_with_key(&key);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["keys", "revoke", &key[3..19]])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(out.status.success());
    mediaq_e2e::wait_for(std::time::Duration::from_secs(2), "the revoked key to be refused", || async {
        (client.get(&url).send().await.unwrap().status() == 401).then_some(())
    })
    .await;
    assert!(api.service.log_text().contains("revoked key dropped from the cache"), "the cache heard the revocation");

    // Failures are audited aggregated (one row per address and window, with a count).
    let pool = env.pool().clone();
    mediaq_e2e::wait_for(std::time::Duration::from_secs(10), "every failed authentication audited", || {
        let pool = pool.clone();
        async move {
            let failures: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum((details->>'count')::bigint), 0)::bigint FROM audit_events
                 WHERE action = 'auth.failed'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (failures >= 6).then_some(())
        }
    })
    .await;
    // Listing keys never shows a secret.
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["keys", "list"])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(&key[3..19]) && !listing.contains(&key[20..]), "{listing}");
    assert!(listing.contains("\"revoked_at\":\"20"), "{listing}");
}

#[tokio::test]
async fn scopes_and_owners_decide_who_sees_what() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let alice = client_with_key(&create_key(&env.database_url, "alice", "jobs:write,jobs:read", "alice"));
    let bob = client_with_key(&create_key(&env.database_url, "bob", "jobs:write,jobs:read", "bob"));
    let reader = client_with_key(&create_key(&env.database_url, "reader", "jobs:read", "alice"));
    let admin = client_with_key(&create_key(&env.database_url, "ops", "admin", "ops"));
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);

    let resp =
        alice.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let resp =
        reader.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(code(resp).await, (403, "insufficient_scope".into()));

    // Bob cannot see, download or cancel Alice's job: 404, as if it did not exist.
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/output")] {
        assert_eq!(code(bob.get(api.url(&path)).send().await.unwrap()).await, (404, "job_not_found".into()), "{path}");
    }
    assert_eq!(
        code(bob.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()).await,
        (404, "job_not_found".into())
    );
    // Alice's read-only key (same owner) and the admin can.
    assert_eq!(reader.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);
    assert_eq!(admin.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);
    assert_eq!(
        code(reader.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()).await,
        (403, "insufficient_scope".into())
    );

    // Listings: own jobs only, newest first, paginated, filtered.
    for _ in 0..4 {
        let r =
            bob.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let page: Value = bob.get(api.url("/v1/jobs?limit=3")).send().await.unwrap().json().await.unwrap();
    let first: Vec<&str> = page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first: {first:?}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2: Value =
        bob.get(api.url(&format!("/v1/jobs?limit=3&cursor={cursor}"))).send().await.unwrap().json().await.unwrap();
    let second = page2["jobs"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert!(page2["next_cursor"].is_null());
    assert!(!first.contains(&id) && second[0]["id"] != id, "Bob never sees Alice's job");
    let all: Value = admin.get(api.url("/v1/jobs?limit=200")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 5);
    let queued: Value = alice.get(api.url("/v1/jobs?status=queued")).send().await.unwrap().json().await.unwrap();
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 1);
    let none: Value = alice.get(api.url("/v1/jobs?status=succeeded")).send().await.unwrap().json().await.unwrap();
    assert!(none["jobs"].as_array().unwrap().is_empty());
    let resp = alice.get(api.url("/v1/jobs?status=bogus")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
