//! Resumable uploads (tus 1.0) at /v1/uploads: tus-js-client (Node, tests/browser/tus.mjs) and raw
//! HTTP against the real API. Chunks, a connection cut mid-PATCH, stop and resume (also across
//! an API restart), deferred length, termination, tokens and tenancy, bad first bytes, and the
//! protocol's refusals. Conversion while the upload arrives is tests/tests/live.rs's.

use std::{path::PathBuf, process::Command};

use mediaq_e2e::{
    fixtures,
    proxy::CuttingProxy,
    services::{client_with_key, create_key},
    sha256_hex, Api, TestEnv,
};
use serde_json::{json, Value};

fn node_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/tus.mjs")
}

/// Runs tus-js-client with `opts` (see tus.mjs) and returns its result line.
async fn tus_client(opts: Value) -> Value {
    assert!(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/tus-js-client/package.json").exists(),
        "tus tests need tus-js-client: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(node_script()).arg(opts.to_string()).output().expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tus.mjs failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("tus.mjs said: {stdout}"))
}

fn job_id_of(upload_url: &str) -> String {
    upload_url.rsplit('/').next().unwrap().to_owned()
}

async fn job(api: &Api, id: &str) -> Value {
    api.client.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap().json().await.unwrap()
}

async fn segments(env: &TestEnv, id: &str) -> Vec<(i64, i64, String)> {
    sqlx::query_as("SELECT start, size, key FROM upload_segments WHERE job_id = $1::uuid ORDER BY start")
        .bind(id)
        .fetch_all(env.pool())
        .await
        .unwrap()
}

/// Files left under the storage root's `uploads/` folder.
fn stored_segments(env: &TestEnv) -> Vec<PathBuf> {
    mediaq_e2e::files_under(&env.storage_dir().join("uploads"))
}

/// The complete upload, as stored: every segment, in order.
async fn stored_bytes(env: &TestEnv, id: &str) -> Vec<u8> {
    let mut all = Vec::new();
    for (_, _, key) in segments(env, id).await {
        let path = env.storage_dir().join(key);
        all.extend(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    all
}

#[tokio::test]
async fn tus_js_client_uploads_in_chunks() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::BENCH_CLIP);
    let bytes = std::fs::read(&file).unwrap();
    let out = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "credential": api.key, "file": file, "chunkSize": 64 * 1024,
    }))
    .await;
    assert!(out["error"].is_null(), "{out}");
    let id = job_id_of(out["url"].as_str().unwrap());
    assert!(out["progress"].as_array().unwrap().len() >= bytes.len() / (64 * 1024), "one PATCH per chunk: {out}");
    assert_eq!(segments(&env, &id).await.len(), out["progress"].as_array().unwrap().len());
    assert_eq!(stored_bytes(&env, &id).await, bytes, "the segments hold the file, in order");
    let job = job(&api, &id).await;
    assert_eq!(job["status"], "queued", "complete and waiting for a worker: {job}");
    assert_eq!(job["input"]["size_bytes"], bytes.len());
    assert_eq!(job["input"]["sha256"], sha256_hex(&bytes), "the whole upload's SHA-256");
    assert_eq!(job["input"]["filename"], "bench_clip.webm");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE job_id = $1::uuid ORDER BY id")
            .bind(&id)
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(actions, ["job.created", "upload.completed"]);
}

#[tokio::test]
async fn a_connection_cut_mid_patch_keeps_its_bytes_and_resumes() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::LONG_VP8);
    let bytes = std::fs::read(&file).unwrap();
    // The first connection dies 400 KB into the client's bytes, in the middle of the one PATCH.
    let proxy = CuttingProxy::start(api.addr(), 1, 400 * 1024, || {}).await;
    let out = tus_client(json!({
        "endpoint": format!("{}/v1/uploads", proxy.url), "credential": api.key, "file": file,
    }))
    .await;
    assert!(out["error"].is_null(), "{out}");
    assert_eq!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst), 1, "the connection was cut");
    let id = job_id_of(out["url"].as_str().unwrap());
    let segs = segments(&env, &id).await;
    assert!(segs.len() >= 2 && segs[0].1 > 100 * 1024, "the cut PATCH's bytes were kept, then resumed: {segs:?}");
    assert_eq!(stored_bytes(&env, &id).await, bytes);
    assert_eq!(job(&api, &id).await["input"]["sha256"], sha256_hex(&bytes));
}

#[tokio::test]
async fn an_upload_resumes_after_a_stop_and_an_api_restart() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::LONG_VP8);
    let bytes = std::fs::read(&file).unwrap();
    let first = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "credential": api.key, "file": file,
        "chunkSize": 128 * 1024, "stopAfter": 300 * 1024,
    }))
    .await;
    assert_eq!(first["stopped"], true, "{first}");
    let path = first["url"].as_str().unwrap().trim_start_matches(&api.base_url).to_owned();
    let id = job_id_of(&path);
    assert_eq!(job(&api, &id).await["status"], "receiving");
    // The API process goes away between two PATCHes; another one continues the same upload.
    drop(api);
    let api = env.api().await;
    let head = api.client.head(api.url(&path)).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 200);
    let offset: u64 = head.headers()["upload-offset"].to_str().unwrap().parse().unwrap();
    assert!(offset >= 300 * 1024 && offset < bytes.len() as u64, "{offset}");
    assert_eq!(head.headers()["upload-length"], bytes.len().to_string().as_str());
    assert!(head.headers().contains_key("upload-expires"));
    assert_eq!(head.headers()["cache-control"], "no-store");
    let second = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "uploadUrl": api.url(&path), "credential": api.key,
        "file": file, "chunkSize": 128 * 1024,
    }))
    .await;
    assert!(second["error"].is_null(), "{second}");
    assert_eq!(stored_bytes(&env, &id).await, bytes);
    let job = job(&api, &id).await;
    assert_eq!(job["input"]["sha256"], sha256_hex(&bytes), "the hash spans both processes' PATCHes");
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn a_deferred_length_upload_learns_its_length_at_the_end() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::BENCH_CLIP);
    let bytes = std::fs::read(&file).unwrap();
    let out = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "credential": api.key, "file": file, "deferred": true,
        "chunkSize": 100 * 1024,
    }))
    .await;
    assert!(out["error"].is_null(), "{out}");
    let id = job_id_of(out["url"].as_str().unwrap());
    assert_eq!(stored_bytes(&env, &id).await, bytes);
    let (length, complete): (Option<i64>, bool) =
        sqlx::query_as("SELECT length, completed_at IS NOT NULL FROM uploads WHERE job_id = $1::uuid")
            .bind(&id)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!((length, complete), (Some(bytes.len() as i64), true));
    assert_eq!(job(&api, &id).await["input"]["sha256"], sha256_hex(&bytes));
}

#[tokio::test]
async fn termination_deletes_the_bytes_and_cancels_the_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::LONG_VP8);
    let first = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "credential": api.key, "file": file,
        "chunkSize": 128 * 1024, "stopAfter": 200 * 1024,
    }))
    .await;
    let url = first["url"].as_str().unwrap().to_owned();
    assert!(!stored_segments(&env).is_empty());
    let out = tus_client(json!({ "terminate": true, "uploadUrl": url, "credential": api.key })).await;
    assert_eq!(out["terminated"], true, "{out}");
    let head = api.client.head(&url).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 404);
    let id = job_id_of(&url);
    assert_eq!(job(&api, &id).await["status"], "canceled");
    assert!(stored_segments(&env).is_empty(), "no bytes left: {:?}", stored_segments(&env));
    let resp = api
        .client
        .patch(&url)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "204800")
        .header("content-type", "application/offset+octet-stream")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    let (status, code, _) = mediaq_e2e::error_code(resp).await;
    assert_eq!((status, code.as_str()), (404, "upload_not_found"));
}

#[tokio::test]
async fn upload_tokens_and_tenancy_hold_on_uploads() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let file = fixtures::path(&fixtures::BENCH_CLIP);
    let minted: Value =
        api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap();
    let stopped = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "credential": token, "file": file,
        "chunkSize": 64 * 1024, "stopAfter": 64 * 1024,
    }))
    .await;
    let url = stopped["url"].as_str().unwrap().to_owned();
    // Someone else's key: the upload does not exist for them.
    let stranger = client_with_key(&create_key(&env.database_url, "other", "jobs:write,jobs:read", "someone-else"));
    let head = stranger.head(&url).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.status(), 404);
    let resp = stranger
        .patch(&url)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "65536")
        .header("content-type", "application/offset+octet-stream")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The token finishes its own upload; it was single use, so it cannot create another.
    let done = tus_client(json!({
        "endpoint": api.url("/v1/uploads"), "uploadUrl": url, "credential": token, "file": file, "chunkSize": 64 * 1024,
    }))
    .await;
    assert!(done["error"].is_null(), "{done}");
    let again = tus_client(json!({ "endpoint": api.url("/v1/uploads"), "credential": token, "file": file })).await;
    assert_eq!(again["status"], 401, "{again}");
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE action = 'upload.completed' AND job_id = $1::uuid")
            .bind(job_id_of(&url))
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(actor, format!("token:{}", minted["token_id"].as_str().unwrap()));
}

fn tus_post(api: &Api, length: usize) -> reqwest::RequestBuilder {
    api.client
        .post(api.url("/v1/uploads"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header("upload-metadata", "filename Y2xpcC53ZWJt")
}

#[tokio::test]
async fn bad_first_bytes_discard_the_upload() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let png = fixtures::bytes(&fixtures::PNG);
    let resp = tus_post(&api, png.len()).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let url = api.url(resp.headers()["location"].to_str().unwrap());
    let patch = |offset: usize, body: Vec<u8>| {
        api.client
            .patch(&url)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(body)
            .send()
    };
    let (status, code, _) = mediaq_e2e::error_code(patch(0, png.clone()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "not_webm"));
    let job = job(&api, &job_id_of(&url)).await;
    assert_eq!((job["status"].as_str(), job["error"]["code"].as_str()), (Some("failed"), Some("invalid_media")));
    assert!(stored_segments(&env).is_empty(), "nothing stored");
    let (status, code, _) = mediaq_e2e::error_code(patch(0, png).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "upload_not_found"), "the upload is gone");
}

#[tokio::test]
async fn the_protocol_is_spoken_exactly() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_MAX_UPLOAD_BYTES", "2000000")]).await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    // Discovery.
    let resp = reqwest::Client::new().request(reqwest::Method::OPTIONS, api.url("/v1/uploads")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    assert_eq!(resp.headers()["tus-max-size"], "2000000");
    let extensions = resp.headers()["tus-extension"].to_str().unwrap().to_owned();
    for ext in ["creation", "creation-with-upload", "creation-defer-length", "termination", "expiration"] {
        assert!(extensions.split(',').any(|e| e == ext), "{ext} in {extensions}");
    }
    // Versions, lengths.
    let resp = api.client.post(api.url("/v1/uploads")).header("upload-length", "10").send().await.unwrap();
    assert_eq!(resp.status(), 412);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    let (status, code, _) = mediaq_e2e::error_code(tus_post(&api, 3_000_000).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let (status, ..) = mediaq_e2e::error_code(
        api.client.post(api.url("/v1/uploads")).header("tus-resumable", "1.0.0").send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400, "neither Upload-Length nor Upload-Defer-Length");
    // Creation with upload: the first bytes come with the POST.
    let resp = tus_post(&api, webm.len())
        .header("content-type", "application/offset+octet-stream")
        .body(webm[..50_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["upload-offset"], "50000");
    assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
    let url = api.url(resp.headers()["location"].to_str().unwrap());
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["status"], "receiving");
    assert_eq!(created["input"]["sha256"], Value::Null);
    let patch = |offset: usize, body: Vec<u8>, ct: &'static str| {
        api.client
            .patch(&url)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let octets = "application/offset+octet-stream";
    let (status, code, _) = mediaq_e2e::error_code(patch(0, webm[..10].to_vec(), octets).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "upload_offset_mismatch"));
    let (status, code, _) =
        mediaq_e2e::error_code(patch(50_000, webm[50_000..60_000].to_vec(), "video/webm").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let mut too_much = webm[50_000..].to_vec();
    too_much.extend_from_slice(b"extra");
    let (status, code, _) = mediaq_e2e::error_code(patch(50_000, too_much, octets).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "upload_length_exceeded"));
    let resp = patch(50_000, webm[50_000..].to_vec(), octets).await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["upload-offset"], webm.len().to_string().as_str());
    assert!(!resp.headers().contains_key("upload-expires"), "a complete upload does not expire");
    let job = job(&api, &job_id_of(&url)).await;
    assert_eq!(job["input"]["sha256"], sha256_hex(&webm));
    assert_eq!(job["status"], "queued");
}
