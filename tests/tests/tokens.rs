//! Upload tokens: a backend mints one; a browser form uses it once to upload, then may read
//! that one job only; replays, expired and over-size uses are refused.

use mediaq_e2e::{
    fixtures,
    services::{client_with_key, create_key},
    TestEnv,
};
use serde_json::{json, Value};

#[tokio::test]
async fn an_upload_token_uploads_once_and_reads_only_its_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    // Another job of the same owner, made with the key.
    let other: Value = api.upload(webm.clone(), "video/webm", None).await.json().await.unwrap();

    let resp = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .json(&json!({ "metadata": { "ref": "order-42" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let minted: Value = resp.json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mqt_"));
    let browser = client_with_key(&token);

    // The form posts the file with the token.
    let part = reqwest::multipart::Part::bytes(webm.clone()).file_name("clip.webm").mime_str("video/webm").unwrap();
    let resp = browser
        .post(api.url("/v1/jobs"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    // It reads its own job, nothing else, and cannot list.
    assert_eq!(browser.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);
    let theirs = browser.get(api.url(&format!("/v1/jobs/{}", other["id"].as_str().unwrap()))).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    assert_eq!(browser.get(api.url("/v1/jobs")).send().await.unwrap().status(), 403);
    assert_eq!(
        browser.post(api.url("/v1/upload-tokens")).send().await.unwrap().status(),
        403,
        "tokens cannot mint tokens"
    );
    // The job belongs to the key's owner: the key sees it too.
    assert_eq!(api.client.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);

    // Single use: a replay is refused.
    let resp =
        browser.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'token.created'")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(audit, 1);
}

#[tokio::test]
async fn token_limits_failures_and_expiry() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mint = |body: Value| {
        let api = &api;
        async move {
            let minted: Value =
                api.client.post(api.url("/v1/upload-tokens")).json(&body).send().await.unwrap().json().await.unwrap();
            client_with_key(minted["token"].as_str().unwrap())
        }
    };
    // A token's own size limit.
    let small = mint(json!({ "max_bytes": 1000 })).await;
    let resp =
        small.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    // A failed upload gives the token back; it still works once.
    let token = mint(json!({})).await;
    let resp = token
        .post(api.url("/v1/jobs"))
        .header("content-type", "video/webm")
        .body(b"not a video".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp =
        token.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    // Expired tokens are refused.
    let late = mint(json!({ "expires_in": 60 })).await;
    sqlx::query(
        "UPDATE upload_tokens SET expires_at = now() - interval '1 minute' WHERE used_at IS NULL AND max_bytes > 1000",
    )
    .execute(env.pool())
    .await
    .unwrap();
    let resp =
        late.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Only keys with jobs:write mint tokens; bad requests are refused.
    let reader = client_with_key(&create_key(&env.database_url, "reader", "jobs:read", "tester"));
    assert_eq!(reader.post(api.url("/v1/upload-tokens")).send().await.unwrap().status(), 403);
    let resp = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .json(&json!({ "metadata": "not an object" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// What a browser page needs after uploading with a token: poll its job and download its MP4
/// (into a Blob: a `<video>` cannot send the header), and nothing of anyone else's.
#[tokio::test]
async fn an_upload_token_downloads_its_own_output_only() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let other: Value = api.upload(webm.clone(), "video/webm", Some("other.webm")).await.json().await.unwrap();
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let browser = client_with_key(minted["token"].as_str().unwrap());
    let resp = browser
        .post(api.url("/v1/jobs?filename=mine.webm"))
        .header("content-type", "video/webm")
        .body(webm)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let (_, done) = api.wait_terminal(id, std::time::Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded");
    api.wait_terminal(other["id"].as_str().unwrap(), std::time::Duration::from_secs(60)).await;

    let resp = browser.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("mine.mp4"));
    let mp4 = resp.bytes().await.unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");
    let theirs = browser.get(api.url(&format!("/v1/jobs/{}/output", other["id"].as_str().unwrap()))).send().await;
    assert_eq!(theirs.unwrap().status(), 404, "another job's output is not found");
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE action = 'job.downloaded' AND job_id = $1::uuid")
            .bind(id)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(actor, format!("token:{}", minted["token_id"].as_str().unwrap()));
}

/// What an upload token may do, deliberately (docs/SECURITY.md): upload once, then read, poll,
/// download and cancel (which deletes its files) the one job it created; nothing else. And it
/// dies with the key that minted it.
#[tokio::test]
async fn a_token_cancels_only_its_own_job_and_dies_with_its_key() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let minter_key = create_key(&env.database_url, "backend", "jobs:write,jobs:read", "tester");
    let minter = client_with_key(&minter_key);
    let mint = || async {
        let minted: Value =
            minter.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
        client_with_key(minted["token"].as_str().unwrap())
    };
    let other: Value = api.upload(webm.clone(), "video/webm", None).await.json().await.unwrap();
    let other_id = other["id"].as_str().unwrap();
    let browser = mint().await;
    let resp = browser.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm.clone()).send().await;
    let job: Value = resp.unwrap().json().await.unwrap();
    let id = job["id"].as_str().unwrap();

    // Nothing but its own job: another job of the same owner is not found, even to cancel.
    let resp = browser.delete(api.url(&format!("/v1/jobs/{other_id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    for (method, path) in [
        ("GET", "/v1/jobs".to_owned()),
        ("GET", "/v1/audit".to_owned()),
        ("GET", "/v1/webhooks".to_owned()),
        ("POST", "/v1/webhooks".to_owned()),
        ("POST", "/v1/webhooks/secret".to_owned()),
        ("POST", "/v1/upload-tokens".to_owned()),
        ("GET", "/v1/admin/stats".to_owned()),
        ("POST", format!("/v1/admin/jobs/{id}/requeue")),
        ("POST", "/v1/jobs?webhook_url=https://example.com/h".to_owned()),
    ] {
        let mut req = browser.request(method.parse().unwrap(), api.url(&path));
        if path == "/v1/webhooks" {
            req = req.json(&json!({ "url": "https://example.com/h" }));
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!(status == 403 || status == 401, "{method} {path}: {status}");
    }
    assert_eq!(api.job(other_id).await["status"], "queued", "the other job is untouched");
    // Its own job: it reads it and cancels it.
    assert_eq!(browser.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 200);
    let resp = browser.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "canceled");

    // Revoking the key that minted them kills its tokens: an unused one cannot upload, a used
    // one can no longer read its job.
    let unused = mint().await;
    let out = std::process::Command::new(mediaq_e2e::bin_dir().join("mediaq-api"))
        .args(["keys", "revoke", &minter_key[3..19]])
        .env("DATABASE_URL", &env.database_url)
        .output()
        .unwrap();
    assert!(out.status.success());
    let resp = unused.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(webm).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(browser.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().status(), 401);
}

/// Found by the fuzzer (tests/tests/openapi_fuzz.rs): metadata holding U+0000, which PostgreSQL's
/// jsonb refuses, was a 500; it is a 400 and nothing is stored.
#[tokio::test]
async fn metadata_with_a_nul_character_is_refused() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let resp = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .json(&json!({ "metadata": { "k": "a\u{0}b" } }))
        .send()
        .await
        .unwrap();
    let (status, code, _) = mediaq_e2e::error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    // Integers written as floats are integers (JSON Schema's view, and the document's).
    let resp = api.client.post(api.url("/v1/upload-tokens")).json(&json!({ "expires_in": 60.0 })).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let resp = api.client.post(api.url("/v1/upload-tokens")).json(&json!({ "expires_in": 60.5 })).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

/// A client that goes away mid-upload gives back what its upload claimed: the token (single
/// use) and the Idempotency-Key, so that the retry succeeds.
#[tokio::test]
async fn a_dropped_upload_gives_its_token_and_idempotency_key_back() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let addr = api.base_url.trim_start_matches("http://").to_owned();
    // Half of the file, then the connection closes.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: retry-1\r\n\
         Content-Type: video/webm\r\nContent-Length: {}\r\n\r\n",
        webm.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&webm[..webm.len() / 2]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(conn);

    let browser = client_with_key(&token);
    let job: Value = mediaq_e2e::wait_for(std::time::Duration::from_secs(10), "the token and key back", || {
        let (browser, api, webm) = (&browser, &api, webm.clone());
        async move {
            let resp = browser
                .post(api.url("/v1/jobs"))
                .header("content-type", "video/webm")
                .header("idempotency-key", "retry-1")
                .body(webm)
                .send()
                .await
                .unwrap();
            match resp.status().as_u16() {
                202 => Some(resp.json::<Value>().await.unwrap()),
                401 | 409 => None,
                other => panic!("unexpected status {other}"),
            }
        }
    })
    .await;
    assert_eq!(job["status"], "queued");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 1, "the dropped upload made no job");
}
