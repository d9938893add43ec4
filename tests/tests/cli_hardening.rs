//! The `mediaq` client against hostile surroundings (issue #26, item 9), the real binary: the key
//! stays off the command line (or warns), an `http://` URL to another machine warns, a hostile
//! server cannot drive the terminal nor make the client read an endless error body, and
//! `download` never replaces a file without `--force`.

use std::{
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use mediaq_e2e::{bin_dir, fixtures, TestEnv};
use serde_json::{json, Value};

/// Runs `mediaq ARGS` with only the given environment variables of its own.
async fn mediaq(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(bin_dir().join("mediaq"));
    cmd.args(args).env_remove("MEDIAQ_API_KEY").env_remove("MEDIAQ_URL").envs(envs.iter().copied()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("mediaq finishes").expect("run mediaq")
}

fn text(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// No byte that starts a terminal control sequence: C0 controls but tab and newline, DEL, and
/// C1 controls as UTF-8 (`C2 80..9F`, e.g. CSI `C2 9B`).
fn assert_inert(bytes: &[u8], what: &str) {
    let c0 = bytes.iter().position(|&b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f);
    let c1 = bytes.windows(2).position(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]));
    assert!(
        c0.is_none() && c1.is_none(),
        "{what}: a control character reached the terminal: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test]
async fn the_key_comes_from_the_environment_or_a_file_and_the_flag_warns() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let url = api.base_url.as_str();
    let warned = |out: &Output| String::from_utf8_lossy(&out.stderr).contains("--api-key shows the key");

    let flag = mediaq(&["list", "--url", url, "--api-key", &api.key], &[]).await;
    assert!(flag.status.success(), "{}", text(&flag));
    assert!(warned(&flag), "the flag warns: {}", text(&flag));

    let from_env = mediaq(&["list", "--url", url], &[("MEDIAQ_API_KEY", &api.key)]).await;
    assert!(from_env.status.success() && !warned(&from_env), "{}", text(&from_env));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, format!("{}\n", api.key)).unwrap();
    let from_file = mediaq(&["list", "--url", url, "--api-key-file", file.to_str().unwrap()], &[]).await;
    assert!(from_file.status.success() && !warned(&from_file), "{}", text(&from_file));
    // A wrong key from the file is the server's 401, not silently the environment's key.
    std::fs::write(&file, "mq_wrong\n").unwrap();
    let wrong =
        mediaq(&["list", "--url", url, "--api-key-file", file.to_str().unwrap()], &[("MEDIAQ_API_KEY", &api.key)])
            .await;
    assert_eq!(wrong.status.code(), Some(4), "{}", text(&wrong));

    // http:// to another machine warns (checked before any request: the id is refused locally,
    // so nothing leaves this machine); loopback and https do not.
    let clear = |out: &Output| String::from_utf8_lossy(&out.stderr).contains("is not https");
    let remote =
        mediaq(&["status", "not-an-id", "--url", "http://203.0.113.7:8080"], &[("MEDIAQ_API_KEY", "mq_x")]).await;
    assert_eq!(remote.status.code(), Some(1), "{}", text(&remote));
    assert!(clear(&remote), "{}", text(&remote));
    let tls = mediaq(&["status", "not-an-id", "--url", "https://203.0.113.7"], &[("MEDIAQ_API_KEY", "mq_x")]).await;
    assert!(!clear(&tls), "{}", text(&tls));
    assert!(!clear(&from_env), "loopback: {}", text(&from_env));
}

/// A server that answers job reads with escape sequences everywhere, and lists with a 500 whose
/// body never ends.
async fn hostile_server() -> (String, tokio::task::JoinHandle<()>) {
    const ID: &str = "01938f4e-8b5c-7d3a-9f1e-2c4b6a8d0e1f";
    let job = || {
        json!({
            "id": ID, "status": "failed", "progress": 0.0,
            "input": { "filename": "clip\u{1b}]0;owned\u{7}.webm" },
            "error": { "code": "x\u{9b}2J", "message": "bad\u{1b}[2J\u{1b}[H\r\u{202e}gnp.exe" },
            "links": { "output": "/v1/\u{1b}[31m" },
        })
    };
    let app = Router::new().route("/v1/jobs/{id}", get(move || async move { axum::Json(job()) })).route(
        "/v1/jobs",
        get(|| async {
            let chunk = bytes::Bytes::from("\u{1b}[31mflood ".repeat(4096));
            let endless = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from_stream(endless))
                .unwrap()
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn a_hostile_server_cannot_drive_the_terminal_or_flood_the_client() {
    let (url, server) = hostile_server().await;
    let envs = [("MEDIAQ_URL", url.as_str()), ("MEDIAQ_API_KEY", "mq_x")];
    let id = "01938f4e-8b5c-7d3a-9f1e-2c4b6a8d0e1f";

    let status = mediaq(&["status", id], &envs).await;
    assert!(status.status.success(), "{}", text(&status));
    assert_inert(&status.stdout, "status");
    assert_inert(&status.stderr, "status");
    assert!(String::from_utf8_lossy(&status.stdout).contains("error: x?2J: bad?[2J?[H??gnp.exe"), "{}", text(&status));

    // --json: the same strings to a JSON reader, no raw control character on the way.
    let json_out = mediaq(&["status", id, "--json"], &envs).await;
    assert_inert(&json_out.stdout, "status --json");
    let job: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(job["error"]["message"], "bad\u{1b}[2J\u{1b}[H\r\u{202e}gnp.exe");

    let waited = mediaq(&["wait", id], &envs).await;
    assert_eq!(waited.status.code(), Some(3), "{}", text(&waited));
    assert_inert(&waited.stdout, "wait");
    assert_inert(&waited.stderr, "wait");

    // The download's default name comes from the server: no control character in it either.
    let dir = tempfile::tempdir().unwrap();
    let named = tokio::process::Command::new(bin_dir().join("mediaq"))
        .args(["download", id])
        .env("MEDIAQ_URL", &url)
        .env("MEDIAQ_API_KEY", "mq_x")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_inert(&named.stderr, "download");
    assert!(std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains('\u{1b}')));

    // An error body that never ends: the client reads its start and stops.
    let started = Instant::now();
    let listed = mediaq(&["list"], &envs).await;
    assert_eq!(listed.status.code(), Some(5), "{}", text(&listed));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_inert(&listed.stderr, "list");
    assert!(listed.stderr.len() < 4096, "{} bytes of error", listed.stderr.len());
    server.abort();
}

#[tokio::test]
async fn download_never_replaces_a_file_without_force() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let job: Value = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, done) = api.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded");
    let envs = [("MEDIAQ_URL", api.base_url.as_str()), ("MEDIAQ_API_KEY", api.key.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mine.mp4");
    std::fs::write(&target, b"my own file").unwrap();
    let out = target.to_str().unwrap();

    let refused = mediaq(&["download", &id, "-o", out], &envs).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"), "{}", text(&refused));
    assert_eq!(std::fs::read(&target).unwrap(), b"my own file");
    assert!(!Path::new(&format!("{out}.part")).exists() && !dir.path().join("mine.mp4.part").exists());

    let forced = mediaq(&["download", &id, "-o", out, "--force"], &envs).await;
    assert!(forced.status.success(), "{}", text(&forced));
    let mp4 = std::fs::read(&target).unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");

    // A new name is written without --force.
    let fresh = dir.path().join("fresh.mp4");
    let written = mediaq(&["download", &id, "-o", fresh.to_str().unwrap()], &envs).await;
    assert!(written.status.success(), "{}", text(&written));
    assert_eq!(std::fs::read(&fresh).unwrap(), mp4);
    // upload -o refuses an existing output before uploading anything.
    let input = dir.path().join("clip.webm");
    std::fs::copy(fixtures::path(&fixtures::VP8_VORBIS), &input).unwrap();
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    let upload = mediaq(&["upload", input.to_str().unwrap(), "-o", fresh.to_str().unwrap()], &envs).await;
    assert_eq!(upload.status.code(), Some(1), "{}", text(&upload));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(before, after, "nothing was uploaded");
}
