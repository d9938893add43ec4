//! Upload admission under load: the process-wide cap on uploads in flight (503 server_busy),
//! the per-key cap and the minimum rate (too_many_uploads, upload_too_slow), the body limit of
//! every other route (payload_too_large before reading), and the quota checked again inside the
//! job's transaction so that concurrent uploads cannot exceed it together.

use std::time::Duration;

use mediaq_e2e::{
    error_code, files_under, fixtures,
    services::{client_with_key, create_key},
    TestEnv,
};
use serde_json::Value;

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

/// The status and body of a reply read from a raw connection (until the server closes it or
/// `timeout` passes).
async fn raw_reply(stream: &mut tokio::net::TcpStream, timeout: Duration) -> (u16, String) {
    use tokio::io::AsyncReadExt;
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
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Every body but an upload's is small: a declared length over MEDIAQ_MAX_BODY_BYTES is refused
/// before a byte is read, a chunked one as soon as it crosses the limit, with the JSON 413, and
/// an upload token's huge body does not grow the API's memory.
#[tokio::test]
async fn bodies_of_json_routes_are_limited_before_they_are_read() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let api = env.api().await;
    let minted: Value = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();

    // Declared: 3 GB announced, nothing sent; the answer comes at once.
    for (path, credential) in [("/v1/upload-tokens", &token), ("/v1/webhooks", &api.key)] {
        let mut stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\nContent-Type: application/json\r\nContent-Length: 3000000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (status, text) = raw_reply(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(status, 413, "{path}: {text}");
        assert!(text.contains("\"code\":\"payload_too_large\""), "{path}: {text}");
    }

    // Chunked: 300 MB offered with the token (it may not even use this route); the API reads at
    // most the limit, answers 413 and its peak memory stays where it was.
    let before = peak_rss(api.service.pid());
    let mut stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    let head = format!(
        "POST /v1/upload-tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk[..], b"\r\n"].concat();
        let mut sent = 0u64;
        for _ in 0..300 {
            if writer.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let mut reply = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut reply))
            .await;
    let sent = sender.await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    let grown = peak_rss(api.service.pid()).saturating_sub(before);
    eprintln!("300 MB chunked body offered, {sent} bytes accepted by the socket; API peak RSS grew by {grown} bytes");
    assert!(grown < 16 << 20, "peak RSS grew by {grown} bytes");
    assert!(sent < 100 << 20, "the API stopped reading: {sent} bytes went out");

    // Small bodies still work, with or without a declared length.
    let resp =
        api.client.post(api.url("/v1/upload-tokens")).json(&serde_json::json!({ "max_bytes": 1000 })).send().await;
    assert_eq!(resp.unwrap().status(), 201);
    let stream_body = reqwest::Body::wrap_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
        b"{\"max_bytes\": 1000}".to_vec(),
    )]));
    let resp = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .header("content-type", "application/json")
        .body(stream_body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

/// One key (with its tokens) holds at most MEDIAQ_MAX_UPLOADS_PER_KEY upload slots; other keys
/// still get theirs. A client that trickles bytes is cut off by the minimum average rate.
#[tokio::test]
async fn one_key_cannot_hold_every_upload_slot_and_trickling_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let api = env
        .api_with(&[
            ("MEDIAQ_MAX_UPLOADS_PER_KEY", "2"),
            ("MEDIAQ_UPLOAD_MIN_RATE", "20KB"),
            ("MEDIAQ_UPLOAD_RATE_GRACE", "2s"),
        ])
        .await;
    let webm = fixtures::bytes(&fixtures::LONG_VP8);
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(api.start_partial_upload(&webm, 100, "").await);
    }
    let tmp = env.storage_dir().join("tmp");
    mediaq_e2e::wait_for(Duration::from_secs(5), "two uploads in flight", || {
        let n = files_under(&tmp).len();
        async move { (n == 2).then_some(()) }
    })
    .await;
    let small = fixtures::bytes(&fixtures::VP8_VORBIS);
    let resp = api.upload(small.clone(), "video/webm", None).await;
    assert!(resp.headers().contains_key("retry-after"));
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (429, "too_many_uploads"));
    // The key's upload tokens share its slots.
    let minted: Value = api
        .client
        .post(api.url("/v1/upload-tokens"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = client_with_key(minted["token"].as_str().unwrap());
    let resp = browser.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(small.clone()).send().await;
    assert_eq!(error_code(resp.unwrap()).await.1, "too_many_uploads");
    // Another key is not refused.
    let other = client_with_key(&create_key(&env.database_url, "other", "jobs:write,jobs:read", "other"));
    let resp = other.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(small.clone()).send().await;
    assert_eq!(resp.unwrap().status(), 202);

    // The two slow clients keep sending a byte now and then: well under 20 KB/s on average, so
    // they are cut off once the 2 s grace period is over (the idle timeout alone never would).
    let started = std::time::Instant::now();
    let mut replies = Vec::new();
    for mut stream in slow {
        let body = webm.clone();
        replies.push(tokio::spawn(async move {
            let trickle = async {
                for b in &body[100..200] {
                    if stream.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(6), trickle).await;
            raw_reply(&mut stream, Duration::from_secs(5)).await
        }));
    }
    for reply in replies {
        let (status, text) = reply.await.unwrap();
        assert_eq!(status, 408, "{text}");
        assert!(text.contains("upload_too_slow"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    // Their slots are free again.
    assert_eq!(api.upload(small, "video/webm", None).await.status(), 202);
}

/// The quota is checked again in the job's transaction, under the key's lock: uploads that all
/// passed the early check together cannot exceed it.
#[tokio::test]
async fn concurrent_uploads_cannot_exceed_the_quota_together() {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_QUOTA_ACTIVE_JOBS", "1")]).await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut started = Vec::new();
    for _ in 0..3 {
        started.push(api.start_partial_upload(&webm, webm.len() / 2, "").await);
    }
    let tmp = env.storage_dir().join("tmp");
    mediaq_e2e::wait_for(Duration::from_secs(5), "three uploads past the early check", || {
        let n = files_under(&tmp).len();
        async move { (n == 3).then_some(()) }
    })
    .await;
    let mut statuses = Vec::new();
    for mut stream in started {
        stream.write_all(&webm[webm.len() / 2..]).await.unwrap();
        let (status, text) = raw_reply(&mut stream, Duration::from_secs(10)).await;
        assert!(status == 202 || text.contains("quota_exceeded"), "{text}");
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [202, 429, 429]);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 1);
    mediaq_e2e::wait_for(Duration::from_secs(5), "refused inputs removed", || {
        let n = files_under(&env.storage_dir().join("inputs")).len() + files_under(&tmp).len();
        async move { (n == 1).then_some(()) }
    })
    .await;
}
