//! Process lifecycle: SIGTERM stops the worker and the API cleanly; the API finishes the
//! requests in flight before it exits.

use std::time::Duration;

use mediaq_e2e::{fixtures, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn sigterm_stops_an_idle_worker_cleanly() {
    let env = TestEnv::new().await;
    let mut worker = env.worker().await;
    worker.service.signal(libc::SIGTERM);
    let status = worker.service.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", worker.service.log_text());
    assert!(worker.service.log_text().contains("mediaq-worker stopped"));
}

#[tokio::test]
async fn sigterm_lets_the_api_finish_an_upload_in_flight() {
    let env = TestEnv::new().await;
    let mut api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut stream = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: video/webm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        webm.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&webm[..webm.len() / 2]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    api.service.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the upload in flight continues.
    assert!(
        tokio::net::TcpStream::connect(api.addr()).await.is_err(),
        "listener closed on SIGTERM"
    );
    stream.write_all(&webm[webm.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    let status = api.service.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(jobs, 1, "the drained upload was recorded");
}
