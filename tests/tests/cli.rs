//! The `mediaq` command-line client, the real binary against the real stack: uploads that wait
//! and download (ffprobe checks the MP4s), a refused upload, a server that dies mid-upload, and
//! a connection cut mid-file that the retry (same Idempotency-Key) completes with one job.

use std::{path::Path, process::Output};

use mediaq_e2e::{bin_dir, fixtures, probe, proxy::CuttingProxy, Api, TestEnv};
use serde_json::Value;

async fn mediaq(url: &str, key: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(bin_dir().join("mediaq"));
    cmd.args(args).env("MEDIAQ_URL", url).env("MEDIAQ_API_KEY", key).kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output())
        .await
        .expect("mediaq finishes")
        .expect("run mediaq")
}

fn text(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn job_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap()
}

#[tokio::test]
async fn uploads_three_files_waits_and_writes_mp4s_named_after_them() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let inputs = tempfile::tempdir().unwrap();
    let mut args = vec!["upload".to_owned(), "--wait".to_owned()];
    for (name, recipe) in [
        ("one.webm", &fixtures::VP8_VORBIS),
        ("two.webm", &fixtures::VP9_OPUS),
        ("three.webm", &fixtures::ODD_NO_AUDIO),
    ] {
        let path = inputs.path().join(name);
        std::fs::copy(fixtures::path(recipe), &path).unwrap();
        args.push(path.display().to_string());
    }
    let out_dir = inputs.path().join("out");
    args.extend(["-o".to_owned(), out_dir.display().to_string(), "--json".to_owned()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = mediaq(&api.base_url, &api.key, &argv).await;
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints the report");
    assert_eq!(report.as_array().unwrap().len(), 3, "{report}");
    for name in ["one", "two", "three"] {
        let mp4 = out_dir.join(format!("{name}.mp4"));
        let probed = probe::ffprobe(&mp4);
        assert_eq!(probe::stream(&probed, "video").unwrap()["codec_name"], "h264", "{name}");
        assert!(probe::duration(&probed) > 0.5, "{name}");
    }
    assert!(report.as_array().unwrap().iter().all(|r| r["job"]["status"] == "succeeded"), "{report}");

    // Running the same command again makes no new job: the key is the file's hash and name.
    let again = mediaq(&api.base_url, &api.key, &["upload", &args[2]]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(job_count(&env).await, 3);

    // status, list and download by id.
    let id = report[0]["job"]["id"].as_str().unwrap();
    let status = mediaq(&api.base_url, &api.key, &["status", id, "--json"]).await;
    let job: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(job["status"], "succeeded");
    let list = mediaq(&api.base_url, &api.key, &["list"]).await;
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3, "{}", text(&list));
    let target = inputs.path().join("again.mp4");
    let download = mediaq(&api.base_url, &api.key, &["download", id, "-o", target.to_str().unwrap()]).await;
    assert!(download.status.success(), "{}", text(&download));
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(out_dir.join("one.mp4")).unwrap());
}

#[tokio::test]
async fn refused_requests_print_the_code_and_exit_apart() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("picture.webm");
    std::fs::copy(fixtures::path(&fixtures::PNG), &png).unwrap();
    let out = mediaq(&api.base_url, &api.key, &["upload", png.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not_webm") && stderr.contains("HTTP 415"), "{stderr}");

    let bad_key = mediaq(&api.base_url, "mq_nope", &["list"]).await;
    assert_eq!(bad_key.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("unauthorized"), "{}", text(&bad_key));

    let missing = mediaq(&api.base_url, &api.key, &["status", "01938f4e-8b5c-7d3a-9f1e-2c4b6a8d0e1f", "--json"]).await;
    assert_eq!(missing.status.code(), Some(4));
    let body: Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(body["error"]["code"], "job_not_found");

    // Nobody listening: exit 5, and the message says so.
    let gone = mediaq("http://127.0.0.1:9", &api.key, &["list"]).await;
    assert_eq!(gone.status.code(), Some(5), "{}", text(&gone));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach the mediaq server"), "{}", text(&gone));
}

/// Kills the API at the first cut.
fn kill_on_cut(api: &Api) -> impl Fn() + Send + Sync + 'static {
    let pid = api.service.pid();
    move || {
        // SAFETY: kill(2) on the test's own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[tokio::test]
async fn a_server_stopped_mid_upload_is_a_clear_error() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let proxy = CuttingProxy::start(api.addr(), usize::MAX, 256 * 1024, kill_on_cut(&api)).await;
    let file = fixtures::path(&fixtures::LONG_VP8);
    assert!(std::fs::metadata(&file).unwrap().len() > 512 * 1024);
    let out = mediaq(&proxy.url, &api.key, &["upload", file.to_str().unwrap(), "--retries", "2"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the mediaq server") && stderr.contains("gave up after 3 attempts"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_connection_cut_mid_file_is_retried_into_one_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let proxy = CuttingProxy::start(api.addr(), 1, 256 * 1024, || {}).await;
    let file = fixtures::path(&fixtures::LONG_VP8);
    let out = mediaq(&proxy.url, &api.key, &["upload", file.to_str().unwrap(), "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst), 1, "the first attempt was cut");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored: (String, i64) =
        sqlx::query_as("SELECT input_sha256, input_size FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(job_count(&env).await, 1);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(stored, (mediaq_e2e::sha256_hex(&bytes), bytes.len() as i64), "the whole file arrived");
    assert_eq!(report[0]["job"]["input"]["size_bytes"], bytes.len());
    assert!(Path::new(&file).exists());
}
