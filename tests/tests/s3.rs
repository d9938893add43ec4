//! Storage in an S3-compatible store (moto's server on loopback, one per test): upload,
//! transcode, download and Range through it; a refused upload leaves no object and no part;
//! deleting a job deletes its objects; wrong credentials make /readyz fail with a clear reason
//! and uploads answer 503.

use std::time::Duration;

use mediaq_e2e::{
    bin_dir, files_under, fixtures, probe,
    s3::{pairs, S3Server, PREFIX},
    sha256_hex, TestEnv,
};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until the bucket holds exactly `want` (sorted) and no unfinished multipart upload.
async fn wait_bucket(s3: &S3Server, want: &[String]) {
    let mut want = want.to_vec();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (mut keys, uploads) = s3.list();
        keys.sort();
        if keys == want && uploads == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "bucket: {keys:?} ({uploads} uploads), want {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn upload_transcode_download_and_range_through_s3() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let s3_env = s3.env();
    let api = env.api_with(&pairs(&s3_env)).await;
    let _worker = env.worker_with(&pairs(&s3_env)).await;

    let ready = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    let input = fixtures::bytes(&fixtures::VP9_OPUS);
    let resp = api.upload(input.clone(), "video/webm", Some("clip.webm")).await;
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["input"]["sha256"], sha256_hex(&input), "hashed while streaming");

    let (_, job) = api.wait_terminal(&id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let input_key = format!("{PREFIX}/inputs/{id}.webm");
    let output_key = format!("{PREFIX}/outputs/{id}-a1.mp4");
    let poster_key = format!("{PREFIX}/outputs/{id}-a1.jpg");
    wait_bucket(&s3, &[input_key, output_key, poster_key]).await;
    // Media went through the store: nothing stored on local disk, no job directory left.
    assert!(files_under(env.storage_dir()).is_empty(), "{:?}", files_under(env.storage_dir()));

    let url = api.url(&format!("/v1/jobs/{id}/output"));
    let resp = api.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("last-modified"));
    assert_eq!(
        headers["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"clip.mp4\"; filename*=UTF-8''clip.mp4"
    );
    let full = resp.bytes().await.unwrap();
    assert_eq!(job["output"]["size_bytes"], full.len());
    assert_eq!(job["output"]["sha256"], sha256_hex(&full));
    let out_dir = tempfile::tempdir().unwrap();
    let path = out_dir.path().join("out.mp4");
    std::fs::write(&path, &full).unwrap();
    let probed = probe::ffprobe(&path);
    assert_eq!(probe::stream(&probed, "video").unwrap()["codec_name"], "h264", "{probed}");
    assert_eq!(probe::stream(&probed, "audio").unwrap()["codec_name"], "aac", "{probed}");

    api.check_ranges(&url, &full).await;

    // The poster is stored beside the MP4 in the bucket and served from it.
    assert_eq!(job["links"]["poster"], format!("/v1/jobs/{id}/poster"), "{job}");
    let poster_url = api.url(&format!("/v1/jobs/{id}/poster"));
    let resp = api.client.get(&poster_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let poster = resp.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&poster)));
    assert_eq!(&poster[..3], b"\xff\xd8\xff", "a JPEG");
    let resp = api.client.get(&poster_url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), 304);

    // DELETE of a finished job deletes its objects.
    let resp = api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    wait_bucket(&s3, &[]).await;
    let resp = api.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert_eq!(api.client.get(&poster_url).send().await.unwrap().status(), 410);
}

#[tokio::test]
async fn refused_uploads_leave_no_object_and_no_part() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let mut s3_env = s3.env();
    s3_env.push(("MEDIAQ_MAX_UPLOAD_BYTES".into(), "7MiB".into()));
    let api = env.api_with(&pairs(&s3_env)).await;

    // Not WebM: refused after the first 4 KiB.
    let resp = api.upload(fixtures::bytes(&fixtures::PNG), "video/webm", Some("x.webm")).await;
    assert_eq!(resp.status(), 415);
    // Over the limit (no Content-Length: found while streaming) after a whole 5 MiB part was
    // uploaded: the multipart upload is aborted.
    let mut big = fixtures::bytes(&fixtures::VP8_VORBIS);
    big.resize(8 << 20, 0);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(256 << 10).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = api.client.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(body).send().await;
    // The server answers 413 and closes the connection; the client may see either.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    let log = api.service.log_text();
    assert!(log.contains("payload_too_large"), "{log}");
    wait_bucket(&s3, &[]).await;
    // A part went up before the refusal, and the upload was aborted (moto logs each request).
    let moto_log = std::fs::read_to_string(&s3.log).unwrap();
    assert!(moto_log.contains("partNumber=1"), "{moto_log}");
    let part = moto_log.lines().position(|l| l.contains("partNumber=1")).unwrap();
    let lines: Vec<&str> = moto_log.lines().collect();
    let abort = lines.iter().rposition(|l| l.contains("DELETE /") && l.contains("uploadId=")).unwrap();
    assert!(abort > part, "the abort comes after the part in flight ended: {moto_log}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 0);
}

#[tokio::test]
async fn wrong_credentials_make_readyz_fail_and_uploads_answer_503() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let secret = "definitely-not-the-secret";
    let api = env.api_with(&pairs(&s3.env_with_secret(secret))).await;

    let resp = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["storage"], "unavailable", "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("AWS_SECRET_ACCESS_KEY") && message.contains("403"), "{message}");
    assert!(!body.to_string().contains(secret), "no secret in the answer: {body}");

    let resp = api.upload(fixtures::bytes(&fixtures::VP9_OPUS), "video/webm", Some("clip.webm")).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");

    let log = api.service.log_text();
    assert!(log.contains("readiness: storage check failed"), "{log}");
    assert!(!log.contains(secret), "no secret in the log");
    wait_bucket(&s3, &[]).await;
}

#[tokio::test]
async fn the_janitor_removes_objects_no_job_references() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let orphan = format!("{PREFIX}/inputs/{}.webm", uuid::Uuid::now_v7());
    s3.put(&orphan);
    wait_bucket(&s3, std::slice::from_ref(&orphan)).await;
    // Stored times have one-second resolution: let the orphan be older than the 1 ms threshold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = std::process::Command::new(bin_dir().join("mediaq-worker"))
        .arg("janitor")
        .envs(s3.env())
        .env("DATABASE_URL", &env.database_url)
        .env("MEDIAQ_STORAGE_DIR", env.storage_dir())
        .env("MEDIAQ_TEMP_MAX_AGE", "1ms")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep["orphans"], 1, "{sweep}");
    wait_bucket(&s3, &[]).await;
}

#[tokio::test]
async fn a_worker_the_store_refuses_fails_the_attempt_as_storage_error() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let api = env.api_with(&pairs(&s3.env())).await;
    let mut worker_env = s3.env_with_secret("wrong-secret");
    worker_env.push(("MEDIAQ_MAX_ATTEMPTS".into(), "1".into()));
    let _worker = env.worker_with(&pairs(&worker_env)).await;

    // The same upload twice under one Idempotency-Key: one job, one stored input (the
    // replayed upload's object is deleted).
    let input = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = api
            .client
            .post(api.url("/v1/jobs"))
            .header("content-type", "video/webm")
            .header("idempotency-key", "s3-replay-1")
            .body(input.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let job: Value = resp.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let id = &ids[0];

    let (_, job) = api.wait_terminal(id, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "storage_error", "{job}");
    assert!(files_under(env.storage_dir()).is_empty(), "the job directory is gone");
    wait_bucket(&s3, &[format!("{PREFIX}/inputs/{id}.webm")]).await;
}

/// `/readyz` needs no credential, and its storage check writes a probe object: the outcome is
/// reused for a few seconds, so a burst of probes makes one PUT and one DELETE, not one each.
#[tokio::test]
async fn readyz_checks_storage_at_most_every_few_seconds() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let api = env.api_with(&pairs(&s3.env())).await;
    for _ in 0..30 {
        assert_eq!(reqwest::get(api.url("/readyz")).await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moto_log = std::fs::read_to_string(&s3.log).unwrap();
    let probes = moto_log.lines().filter(|l| l.contains("PUT /") && l.contains(".mediaq-ready")).count();
    assert!((1..=2).contains(&probes), "{probes} probe writes for 30 readiness checks:\n{moto_log}");
}
