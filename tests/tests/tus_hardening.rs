//! Resumable uploads under attack (issue 26): one PATCH at a time per upload, the running hash
//! kept on every path, the segment cap, and what an expired upload token may still do. Real API
//! process, raw HTTP over loopback.

use std::time::Duration;

use mediaq_e2e::{fixtures, sha256_hex, Api, TestEnv};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OCTETS: &str = "application/offset+octet-stream";

/// Creates an upload of `length` bytes (or deferred) with `credential`; its URL.
async fn create(api: &Api, credential: &str, length: Option<usize>) -> String {
    let mut req = reqwest::Client::new()
        .post(api.url("/v1/uploads"))
        .bearer_auth(credential)
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", "filename Y2xpcC53ZWJt");
    req = match length {
        Some(n) => req.header("upload-length", n.to_string()),
        None => req.header("upload-defer-length", "1"),
    };
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 201);
    api.url(resp.headers()["location"].to_str().unwrap())
}

async fn patch(credential: &str, url: &str, offset: usize, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .patch(url)
        .bearer_auth(credential)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", OCTETS)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn metric(api: &Api, name: &str) -> f64 {
    let text = api.client.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

/// The status and body of a reply on a raw connection, or 0 if none came within `timeout`.
async fn raw_reply(stream: &mut tokio::net::TcpStream, timeout: Duration) -> (u16, String) {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let _ = tokio::time::timeout(timeout, async {
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&reply).contains("\"request_id\"") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&reply).into_owned();
    (text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0), text)
}

/// Eight slow PATCHes to one upload (one upload token's) hold one upload slot, not eight: the
/// seven others get 423 `upload_busy` before their bodies are read, and the key's other upload
/// still goes through. (Before: they took all the key's slots, and its own upload got 429.)
#[tokio::test]
async fn one_patch_at_a_time_per_upload() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_MAX_UPLOADS_PER_KEY", "2")]).await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let url = create(&api, &token, Some(webm.len())).await;
    let path = url.trim_start_matches(&api.base_url).to_owned();
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Offset: 0\r\nContent-Type: {OCTETS}\r\nContent-Length: {}\r\n\r\n",
            webm.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&webm[..8192]).await.unwrap();
        slow.push(stream);
    }
    let mut busy = 0;
    for stream in &mut slow {
        let (status, text) = raw_reply(stream, Duration::from_millis(1500)).await;
        match status {
            423 => {
                assert!(text.contains("\"code\":\"upload_busy\""), "{text}");
                busy += 1;
            }
            0 => {}
            other => panic!("a concurrent PATCH got {other}: {text}"),
        }
    }
    assert_eq!(busy, 7, "one PATCH holds the upload, the seven others are refused");
    assert_eq!(metric(&api, "mediaq_uploads_in_flight").await, 1.0, "one slot held, not eight");
    // The key's own upload still goes through.
    let other = create(&api, &api.key, Some(webm.len())).await;
    let resp = patch(&api.key, &other, 0, webm.clone()).await;
    assert_eq!(resp.status(), 204, "{:?}", resp.text().await);
    drop(slow);
    mediaq_e2e::wait_for(Duration::from_secs(10), "the slow PATCH ended", || {
        let api = &api;
        async move { (metric(api, "mediaq_uploads_in_flight").await == 0.0).then_some(()) }
    })
    .await;
}

/// An empty PATCH keeps the running hash: the next PATCH does not re-read the upload. Proven by
/// taking the stored segment away after the empty PATCH (a re-read would fail), and by the
/// API's log (no rebuild); the completed upload's hash is still the file's.
#[tokio::test]
async fn an_empty_patch_keeps_the_running_hash() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    let url = create(&api, &api.key, Some(webm.len())).await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(patch(&api.key, &url, 0, webm[..100_000].to_vec()).await.status(), 204);
    assert_eq!(patch(&api.key, &url, 100_000, Vec::new()).await.status(), 204, "an empty PATCH");
    let key: String = sqlx::query_scalar("SELECT key FROM upload_segments WHERE job_id = $1::uuid")
        .bind(&id)
        .fetch_one(env.pool())
        .await
        .unwrap();
    let stored = env.storage_dir().join(&key);
    let hidden = stored.with_extension("hidden");
    std::fs::rename(&stored, &hidden).unwrap();
    let resp = patch(&api.key, &url, 100_000, webm[100_000..100_001].to_vec()).await;
    assert_eq!(resp.status(), 204, "the 1-byte PATCH read nothing stored: {:?}", resp.text().await);
    std::fs::rename(&hidden, &stored).unwrap();
    assert_eq!(patch(&api.key, &url, 100_001, webm[100_001..].to_vec()).await.status(), 204);
    let log = api.service.log_text();
    assert!(!log.contains("rebuilding an upload's hash"), "no PATCH re-read the upload");
    let job: Value = api.client.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["input"]["sha256"], sha256_hex(&webm));
}

/// An upload token past its expiry may finish the recording it started (PATCH and HEAD of its
/// own upload) until the upload's own lifetime (MEDIAQ_UPLOAD_MAX_LIFETIME) ends, and do
/// nothing else: every other request with it gets 401. (Before: it kept every right of a token
/// for 24 h after its expiry.)
#[tokio::test]
async fn an_expired_token_may_only_finish_its_upload_within_the_upload_lifetime() {
    let env = TestEnv::new().await;
    let lifetime = Duration::from_secs(4);
    let api = env.api_with(&[("MEDIAQ_UPLOAD_MAX_LIFETIME", "4s")]).await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let created = std::time::Instant::now();
    let url = create(&api, &token, None).await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(patch(&token, &url, 0, webm[..100_000].to_vec()).await.status(), 204);
    sqlx::query("UPDATE upload_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(minted["token_id"].as_str().unwrap())
        .execute(env.pool())
        .await
        .unwrap();
    let with_token = |method: reqwest::Method, path: &str| {
        reqwest::Client::new().request(method, api.url(path)).bearer_auth(&token).header("tus-resumable", "1.0.0")
    };
    // It finishes its own upload: PATCH and HEAD.
    assert_eq!(patch(&token, &url, 100_000, webm[100_000..200_000].to_vec()).await.status(), 204);
    let head = with_token(reqwest::Method::HEAD, &format!("/v1/uploads/{id}")).send().await.unwrap();
    assert_eq!((head.status().as_u16(), head.headers()["upload-offset"].to_str().unwrap()), (200, "200000"));
    // Nothing else.
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/jobs/{id}")),
        (reqwest::Method::GET, format!("/v1/jobs/{id}/links")),
        (reqwest::Method::DELETE, format!("/v1/uploads/{id}")),
        (reqwest::Method::DELETE, format!("/v1/jobs/{id}")),
        (reqwest::Method::POST, "/v1/uploads".to_owned()),
    ] {
        let (status, code, _) = mediaq_e2e::error_code(
            with_token(method.clone(), &path).header("upload-length", "10").send().await.unwrap(),
        )
        .await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{method} {path}");
    }
    // Until the upload's own lifetime ends: then it is gone, for the token as for anyone.
    tokio::time::sleep((lifetime + Duration::from_millis(500)).saturating_sub(created.elapsed())).await;
    let (status, code, _) = mediaq_e2e::error_code(patch(&token, &url, 200_000, webm[200_000..].to_vec()).await).await;
    assert_eq!((status, code.as_str()), (404, "upload_not_found"));
    let head = with_token(reqwest::Method::HEAD, &format!("/v1/uploads/{id}")).send().await.unwrap();
    assert_eq!(head.status(), 404);
    let owner = api.client.head(&url).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(owner.status(), 404, "the key that minted it sees it gone too");
}

/// An upload is stored in at most MEDIAQ_MAX_UPLOAD_SEGMENTS segments: past that a PATCH gets
/// 409 `too_many_segments` and stores nothing. (Before: any number of 1-byte PATCHes, each an
/// object and a row.)
#[tokio::test]
async fn segments_per_upload_are_capped() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_MAX_UPLOAD_SEGMENTS", "3")]).await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    let url = create(&api, &api.key, Some(webm.len())).await;
    let id = url.rsplit('/').next().unwrap().to_owned();
    for (from, to) in [(0, 10_000), (10_000, 10_001), (10_001, 10_002)] {
        assert_eq!(patch(&api.key, &url, from, webm[from..to].to_vec()).await.status(), 204);
    }
    let (status, code, _) = mediaq_e2e::error_code(patch(&api.key, &url, 10_002, webm[10_002..].to_vec()).await).await;
    assert_eq!((status, code.as_str()), (409, "too_many_segments"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM upload_segments WHERE job_id = $1::uuid")
        .bind(&id)
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3, "nothing more stored");
    let files = mediaq_e2e::files_under(&env.storage_dir().join("uploads"));
    assert_eq!(files.len(), 3, "{files:?}");
}
