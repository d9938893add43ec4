//! Upload ingest, end to end: the real mediaq-api on port 0, a database per test.

use std::time::Duration;

use mediaq_e2e::{error_code, files_under, fixtures, sha256_hex, TestEnv};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Nothing of a refused upload stays: no file anywhere in storage, no job, no task.
async fn assert_nothing_left(env: &TestEnv) {
    // The temp file is removed when the request ends; give the server a moment after a disconnect.
    let storage = env.storage_dir().to_path_buf();
    mediaq_e2e::wait_for(Duration::from_secs(5), "storage to be empty", || {
        let files = files_under(&storage);
        async move { files.is_empty().then_some(()) }
    })
    .await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!((jobs, tasks), (0, 0), "no job row and no queue task");
}

#[tokio::test]
async fn raw_upload_is_stored_recorded_and_enqueued_in_one_go() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let bytes = fixtures::bytes(&fixtures::VP9_OPUS);

    let resp = api.upload(bytes.clone(), "video/webm", Some("holiday.webm")).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(resp.headers().contains_key("etag"));
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(job["status"], "queued");
    assert_eq!(job["progress"], 0.0);
    assert_eq!(job["input"]["filename"], "holiday.webm");
    assert_eq!(job["input"]["size_bytes"], bytes.len());
    assert_eq!(job["input"]["sha256"], sha256_hex(&bytes));
    assert_eq!(job["input"]["content_type"], "video/webm");
    assert_eq!(job["links"]["self"], location);

    // The stored input is byte-identical, under a server-generated name.
    let stored = env.storage_dir().join(format!("inputs/{id}.webm"));
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    assert!(files_under(&env.storage_dir().join("tmp")).is_empty());

    let audit: (String, String, Option<String>) =
        sqlx::query_as("SELECT actor, action, request_id FROM audit_events WHERE job_id = $1::uuid")
            .bind(id)
            .fetch_one(env.pool())
            .await
            .unwrap();
    let key_id = &env.api_key[3..19];
    assert_eq!((audit.0.as_str(), audit.1.as_str()), (format!("key:{key_id}").as_str(), "job.created"));
    assert!(audit.2.is_some());
    let task: (String, String) = sqlx::query_as("SELECT job_type, convert_from(job, 'UTF8') FROM apalis.jobs")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(task.0, "mediaq.transcode");
    let args: Value = serde_json::from_str(&task.1).unwrap();
    assert_eq!(args["job_id"], id);
}

#[tokio::test]
async fn multipart_upload_from_a_browser_form() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let bytes = fixtures::bytes(&fixtures::VP8_VORBIS);
    let resp = api.upload_form(bytes.clone(), "My Clip.webm", "video/webm").await;
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["input"]["filename"], "My Clip.webm");
    assert_eq!(job["input"]["sha256"], sha256_hex(&bytes));
    // Browsers may not know the type; octet-stream is judged by the bytes.
    let resp = api.upload_form(bytes, "rec.webm", "application/octet-stream").await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn status_polling_with_etags() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    let job: Value = resp.json().await.unwrap();
    let url = api.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()));

    let first = api.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["retry-after"], "1", "not terminal: poll again in a second");
    assert_eq!(first.headers()["cache-control"], "no-store");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["input"]["filename"], "upload.webm");

    let again = api.client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    // A change to the job changes the ETag.
    sqlx::query("UPDATE jobs SET progress = 0.5").execute(env.pool()).await.unwrap();
    let changed = api.client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    let (status, code, _) = error_code(api.client.get(api.url("/v1/jobs/not-a-uuid")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_job_id"));
    let unknown = uuid::Uuid::now_v7();
    let (status, code, _) =
        error_code(api.client.get(api.url(&format!("/v1/jobs/{unknown}"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "job_not_found"));
    let (status, code, _) =
        error_code(api.client.get(api.url(&format!("/v1/jobs/{unknown}/output"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "job_not_found"));
    let (status, code, _) = error_code(api.client.get(api.url("/nope")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = error_code(api.client.delete(api.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn output_before_success_is_a_conflict() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let resp =
        api.client.get(api.url(&format!("/v1/jobs/{}/output", job["id"].as_str().unwrap()))).send().await.unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (409, "job_not_ready"));
}

#[tokio::test]
async fn files_that_are_not_webm_are_refused_and_leave_nothing() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("png", fixtures::bytes(&fixtures::PNG), "not_webm"),
        // ISO-BMFF is accepted for MP4/MOV brands only (issue 31): a HEIF picture is not.
        ("heif", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08meta".to_vec(), "not_webm"),
        ("ogg", b"OggS\0\x02\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead".to_vec(), "not_webm"),
        ("text", b"just some text, not a video at all".to_vec(), "not_webm"),
        ("html", b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec(), "not_webm"),
        ("other doctype", b"\x1a\x45\xdf\xa3\x88\x42\x82\x85mkv3d".to_vec(), "not_webm"),
        ("truncated header", webm[..20].to_vec(), "not_webm"),
    ];
    for (what, bytes, expected) in cases {
        let (status, code, body) = error_code(api.upload(bytes.clone(), "video/webm", Some("x.webm")).await).await;
        assert_eq!((status, code.as_str()), (415, expected), "raw {what}: {body}");
        let (status, code, body) = error_code(api.upload_form(bytes, "x.webm", "video/webm").await).await;
        assert_eq!((status, code.as_str()), (415, expected), "form {what}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains(env.storage_dir().to_str().unwrap()), "no paths in errors: {message}");
    }
    // Declared types and names must be on their lists (the bytes decide between WebM and MP4).
    let (status, code, _) = error_code(api.upload(webm.clone(), "text/plain", None).await).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let (status, code, _) = error_code(api.upload(webm.clone(), "audio/ogg", None).await).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let (status, code, _) = error_code(api.upload_form(webm.clone(), "x.webm", "image/png").await).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let (status, code, _) = error_code(api.upload_form(webm.clone(), "clip.ogg", "video/webm").await).await;
    assert_eq!((status, code.as_str()), (415, "extension_mismatch"));
    let (status, code, _) = error_code(api.upload(webm, "video/webm", Some("clip.png")).await).await;
    assert_eq!((status, code.as_str()), (415, "extension_mismatch"));
    let resp = api.client.post(api.url("/v1/jobs")).body(b"no content type".to_vec()).send().await.unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn malformed_requests_get_clear_400s_and_leave_nothing() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);

    let (status, code, _) = error_code(api.upload(Vec::new(), "video/webm", None).await).await;
    assert_eq!((status, code.as_str()), (400, "empty_upload"));
    let (status, code, _) = error_code(api.upload_form(Vec::new(), "x.webm", "video/webm").await).await;
    assert_eq!((status, code.as_str()), (400, "empty_upload"));

    // No `file` field.
    let form = reqwest::multipart::Form::new().text("title", "hello");
    let (status, code, _) =
        error_code(api.client.post(api.url("/v1/jobs")).multipart(form).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "missing_file"));
    let part = reqwest::multipart::Part::bytes(webm.clone()).file_name("a.webm");
    let form = reqwest::multipart::Form::new().part("video", part);
    let (status, code, _) =
        error_code(api.client.post(api.url("/v1/jobs")).multipart(form).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "missing_file"));

    // Two files.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(webm.clone()).file_name("a.webm"))
        .part("file", reqwest::multipart::Part::bytes(webm.clone()).file_name("b.webm"));
    let (status, code, _) =
        error_code(api.client.post(api.url("/v1/jobs")).multipart(form).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "too_many_files"));

    // Truncated multipart: the closing boundary never comes.
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.webm\"\r\nContent-Type: video/webm\r\n\r\n".to_vec();
    body.extend_from_slice(&webm);
    let resp = api
        .client
        .post(api.url("/v1/jobs"))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "malformed_multipart"));

    // Multipart without a boundary.
    let resp = api
        .client
        .post(api.url("/v1/jobs"))
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "malformed_multipart"));
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn one_byte_over_the_limit_is_413_without_reading_the_rest() {
    let env = TestEnv::new().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let limit = webm.len() - 1;
    let api = env.api_with(&[("MEDIAQ_MAX_UPLOAD_BYTES", &limit.to_string())]).await;

    // Declared length over the limit: refused before any byte is read.
    let (status, code, _) = error_code(api.upload(webm.clone(), "video/webm", None).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Chunked (no Content-Length): refused when the byte over the limit arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = webm.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp =
        api.client.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(body).send().await.unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let (status, code, _) = error_code(api.upload_form(webm.clone(), "a.webm", "video/webm").await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Exactly at the limit is fine.
    let exact = api.upload(webm[..limit].to_vec(), "video/webm", None).await;
    assert_eq!(exact.status(), 202);

    // A huge declared body: the server answers 413 at once instead of draining it.
    let mut stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: video/webm\r\nContent-Length: {}\r\n\r\n",
        api.key,
        10u64 << 30
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut stream, &mut reply))
        .await
        .expect("413 comes without the body being sent")
        .unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 413"));
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_temp_file() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::LONG_VP8);
    let stream = api.start_partial_upload(&webm, webm.len() / 2, "").await;
    // The server is receiving: a temp file exists.
    let tmp = env.storage_dir().join("tmp");
    mediaq_e2e::wait_for(Duration::from_secs(5), "the upload's temp file", || {
        let n = files_under(&tmp).len();
        async move { (n == 1).then_some(()) }
    })
    .await;
    drop(stream);
    assert_nothing_left(&env).await;
    // The API keeps serving.
    assert_eq!(api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.status(), 202);
}

#[tokio::test]
async fn hostile_filenames_are_sanitized() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let long = format!("{}.webm", "x".repeat(1000));
    let cases: Vec<(&str, String)> = vec![
        ("../../etc/passwd.webm", "passwd.webm".into()),
        ("a\0b.webm", "ab.webm".into()),
        ("evil\r\nX-Injected: 1.webm", "evilX-Injected_ 1.webm".into()),
        ("видео 🎬.webm", "видео 🎬.webm".into()),
    ];
    for (raw, expected) in cases {
        let resp = api.upload(webm.clone(), "video/webm", Some(raw)).await;
        assert_eq!(resp.status(), 202, "{raw:?}");
        let job: Value = resp.json().await.unwrap();
        assert_eq!(job["input"]["filename"], expected.as_str(), "{raw:?}");
    }
    // Multipart filenames (no NUL or CRLF possible in a header; traversal and length are).
    let job: Value = api.upload_form(webm.clone(), "../../x.webm", "video/webm").await.json().await.unwrap();
    assert_eq!(job["input"]["filename"], "x.webm");
    let job: Value = api.upload(webm.clone(), "video/webm", Some(&long)).await.json().await.unwrap();
    let name = job["input"]["filename"].as_str().unwrap();
    assert!(name.chars().count() <= 200 && name.ends_with(".webm"), "{name}");
    // Stored names are ours: only `{uuid}.webm` files in inputs/.
    for f in files_under(&env.storage_dir().join("inputs")) {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        assert!(uuid::Uuid::parse_str(stem).is_ok(), "{}", f.display());
    }
}

#[tokio::test]
async fn corpus_files_meet_the_manifest_at_upload() {
    let entries = mediaq_e2e::corpus();
    if entries.is_empty() {
        return;
    }
    let env = TestEnv::new().await;
    let api = env.api().await;
    for entry in entries {
        let bytes = std::fs::read(&entry.path).unwrap();
        let name = entry.filename.split_once("__").map_or(entry.filename.as_str(), |(_, n)| n);
        let resp = api.upload_form(bytes, name, "application/octet-stream").await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        let expected = entry.expected.as_str();
        if expected.starts_with("ACCEPT") {
            assert_eq!(status, 202, "{}: {expected}: {body}", entry.filename);
        } else {
            // POLICY / REJECT / FAIL: WebM and Matroska (Chrome's H.264 recordings) headers, and
            // MP4s (issue 31), are accepted here and the worker judges the codecs; anything else
            // is refused (415).
            let accepted_doctype = matches!(entry.doc_type.trim_end_matches("\\0"), "webm" | "matroska");
            let want = if accepted_doctype || entry.filename.ends_with(".mp4") { 202 } else { 415 };
            assert_eq!(status, want, "{}: {expected}, DocType {:?}: {body}", entry.filename, entry.doc_type);
        }
        if status == 415 {
            let code = body["error"]["code"].as_str().unwrap();
            assert!(matches!(code, "not_webm" | "extension_mismatch"), "{}: {body}", entry.filename);
        }
    }
}
