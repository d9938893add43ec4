//! The upload page in a real browser: Debian's Chromium driven by playwright-core
//! (tests/browser/page.mjs) against the real API and worker. Screenshots, the downloaded MP4s and
//! each run's observations go to target/browser-screenshots/<test>/.
//!
//! Needs `node`, `/usr/bin/chromium` (or MEDIAQ_CHROMIUM) and tests/browser/node_modules
//! (`npm ci --prefix tests/browser`); scripts/test.sh provides all three. Missing, they fail the
//! test: they are never skipped.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use mediaq_e2e::{bin_dir, fixtures, probe, Api, TestEnv};
use serde_json::{json, Value};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("MEDIAQ_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Node, Chromium and playwright-core must be there: a missing one fails the test.
fn assert_prerequisites() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "browser tests need `node` on PATH (scripts/test.sh installs nodejs when it is missing)"
    );
    assert!(
        chromium().exists(),
        "browser tests need Chromium at {} (Debian package `chromium`, installed by scripts/test.sh; or set \
         MEDIAQ_CHROMIUM)",
        chromium().display()
    );
    assert!(
        browser_dir().join("node_modules/playwright-core/package.json").exists(),
        "browser tests need playwright-core: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
}

/// A clean output folder for one test: target/browser-screenshots/<test>/.
fn output_dir(test: &str) -> PathBuf {
    let dir = bin_dir().parent().expect("target dir").join("browser-screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one scenario of page.mjs; panics with its output (and observations) when it fails.
fn run_page(scenario: &str, out: &Path, env: &[(&str, String)]) -> Value {
    assert_prerequisites();
    let started = std::time::Instant::now();
    let output = Command::new("node")
        .arg(browser_dir().join("page.mjs"))
        .arg(scenario)
        .env("MEDIAQ_OUT", out)
        .env("MEDIAQ_CHROMIUM", chromium())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run node");
    let observations = std::fs::read_to_string(out.join("observations.json")).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("browser scenario {scenario}: {:?}, {stdout}", started.elapsed());
    assert!(
        output.status.success(),
        "browser scenario {scenario} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nobservations: {observations}\n\
         screenshots: {}",
        output.status,
        out.display()
    );
    serde_json::from_str(&observations).expect("observations.json")
}

/// The downloaded file is an MP4 (H.264 + AAC) of about `seconds`.
fn assert_mp4(path: &Path, seconds: f64, tolerance: f64) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no download at {}: {e}", path.display()));
    assert_eq!(&bytes[4..8], b"ftyp", "the download is an MP4");
    let p = probe::ffprobe(path);
    assert_eq!(probe::stream(&p, "video").expect("a video stream")["codec_name"], "h264");
    assert_eq!(probe::stream(&p, "audio").expect("an audio stream")["codec_name"], "aac");
    let d = probe::duration(&p);
    assert!((d - seconds).abs() <= tolerance, "duration {d} is not {seconds} ± {tolerance}");
}

async fn mint_token(api: &Api) -> String {
    let resp = api.client.post(api.url("/v1/upload-tokens")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// The product's path: a backend mints a token and links to `/#token=...`; the person picks a
/// WebM, watches it upload and convert, plays the MP4 and downloads it.
#[tokio::test]
async fn a_webm_picked_on_a_token_link_uploads_converts_plays_and_downloads() {
    assert_prerequisites();
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let token = mint_token(&api).await;
    let out = output_dir("upload");
    let observations = run_page(
        "upload",
        &out,
        &[
            ("MEDIAQ_PAGE_URL", format!("{}/#token={token}", api.base_url)),
            ("MEDIAQ_FIXTURE", fixtures::path(&fixtures::VP8_OPUS_2S).display().to_string()),
            ("MEDIAQ_EXPECT_DURATION", "2".into()),
        ],
    );
    assert_mp4(&out.join("upload.mp4"), 2.0, 0.2);
    assert_eq!(observations["download"], "browser_clip_2s.mp4");
    // The job was made with the token; the page played (and downloaded) it through the job's
    // signed link, issued for the key that minted the token: one audit row for this viewer.
    let (job_id, key_id): (uuid::Uuid, String) =
        sqlx::query_as("SELECT j.id, t.api_key_id FROM upload_tokens t JOIN jobs j ON j.id = t.job_id")
            .fetch_one(env.pool())
            .await
            .unwrap();
    let src = observations["player"]["src"].as_str().unwrap();
    let prefix = format!("{}/v1/play/{job_id}.", api.base_url);
    assert!(src.starts_with(&prefix) && src.ends_with("/output.mp4"), "{src}");
    assert!(src.contains(&format!(".{key_id}.")), "signed for the key behind the token: {src}");
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE job_id = $1 AND action = 'job.downloaded'")
            .bind(job_id)
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(actors, [format!("link:{key_id}@127.0.0.1")], "one row per viewer and window");
    assert!(observations["played"].as_f64().unwrap() > 0.5, "{observations}");
}

/// Five seconds from Chromium's fake camera and microphone, sent while they are recorded (tus,
/// one chunk a second) and converted as they arrive, become a playable MP4.
#[tokio::test]
async fn a_camera_recording_is_converted_while_it_is_recorded() {
    assert_prerequisites();
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let out = output_dir("record");
    let seen = run_page(
        "record",
        &out,
        &[
            ("MEDIAQ_PAGE_URL", format!("{}/", api.base_url)),
            ("MEDIAQ_API_KEY", api.key.clone()),
            ("MEDIAQ_EXPECT_DURATION", "5".into()),
            ("MEDIAQ_DURATION_TOLERANCE", "0.6".into()),
        ],
    );
    // At least 5 s were recorded (more when the machine is loaded and the stop click lands late);
    // the MP4 holds what was recorded.
    let recorded = seen["recordedSeconds"].as_f64().expect("the scenario reports how long it recorded");
    assert!(recorded >= 5.0, "recorded {recorded} s");
    let during = seen["statusWhileRecording"].as_str().unwrap_or_default();
    assert!(during.contains("while you record") || during.contains("as it arrives"), "{during}");
    assert_mp4(&out.join("record.mp4"), recorded, 0.6);
}

/// A picked file whose connection drops mid-upload resumes by itself (tus: HEAD, then the rest)
/// and converts; the row says it is resuming.
#[tokio::test]
async fn a_picked_file_whose_connection_drops_resumes_and_converts() {
    assert_prerequisites();
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let out = output_dir("resume");
    run_page(
        "resume",
        &out,
        &[
            ("MEDIAQ_PAGE_URL", format!("{}/", api.base_url)),
            ("MEDIAQ_API_KEY", api.key.clone()),
            ("MEDIAQ_FIXTURE", fixtures::path(&fixtures::VP8_OPUS_2S).display().to_string()),
            ("MEDIAQ_EXPECT_DURATION", "2".into()),
            ("MEDIAQ_DURATION_TOLERANCE", "0.3".into()),
        ],
    );
    assert_mp4(&out.join("resumed.mp4"), 2.0, 0.3);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 1, "one upload, one job");
}

/// A PNG and a WebM queued together at phone width: the PNG is refused with a sentence, the WebM
/// converts in its own row.
#[tokio::test]
async fn a_png_is_refused_as_not_a_webm_while_a_queued_webm_converts() {
    assert_prerequisites();
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let out = output_dir("png");
    let observations = run_page(
        "png",
        &out,
        &[
            ("MEDIAQ_PAGE_URL", format!("{}/", api.base_url)),
            ("MEDIAQ_API_KEY", api.key.clone()),
            ("MEDIAQ_FIXTURE", fixtures::path(&fixtures::PNG).display().to_string()),
            ("MEDIAQ_SECOND_FIXTURE", fixtures::path(&fixtures::VP8_OPUS_2S).display().to_string()),
            ("MEDIAQ_EXPECT_DURATION", "2".into()),
        ],
    );
    assert!(observations["status"].as_str().unwrap().contains("image.png"));
    assert_mp4(&out.join("second.mp4"), 2.0, 0.2);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 1, "only the WebM made a job");
}

/// With no worker the job waits: the page's polling revalidates (304), honours Retry-After and
/// backs off; its Cancel button cancels the job.
#[tokio::test]
async fn polling_backs_off_and_cancel_cancels_a_waiting_job() {
    assert_prerequisites();
    let env = TestEnv::new().await;
    let api = env.api().await;
    let out = output_dir("cancel");
    run_page(
        "cancel",
        &out,
        &[
            ("MEDIAQ_PAGE_URL", format!("{}/", api.base_url)),
            ("MEDIAQ_API_KEY", api.key.clone()),
            ("MEDIAQ_FIXTURE", fixtures::path(&fixtures::VP8_OPUS_2S).display().to_string()),
        ],
    );
    let status: String = sqlx::query_scalar("SELECT status::text FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(status, "canceled");
}

/// Every error code in the README's table and every job failure code has a sentence on the page.
#[test]
fn every_api_error_and_failure_code_has_a_sentence() {
    assert_prerequisites();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("node")
        .arg(browser_dir().join("messages.mjs"))
        .arg(root.join("README.md"))
        .arg(root.join("web/messages.js"))
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "messages.mjs: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
