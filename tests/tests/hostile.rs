//! Hostile files: refused at upload, refused again by the transcoder child when handed to it
//! directly (bypassing the API), and a header that lies about its size ends in a limit error.
//! The worker survives all of them.

use std::{path::Path, process::Command, time::Duration};

use mediaq_e2e::{bin_dir, fixtures, TestEnv};
use serde_json::Value;

/// The CVE-2017-9993 pattern: an AVI whose GAB2 subtitle chunk carries an HLS playlist that
/// points at a local file.
fn avi_with_hls_in_gab2() -> Vec<u8> {
    let playlist = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    let mut gab2 = b"GAB2\0\x02\0".to_vec();
    gab2.extend_from_slice(&(playlist.len() as u32).to_le_bytes());
    gab2.extend_from_slice(playlist);
    let chunk = |id: &[u8; 4], body: &[u8]| {
        let mut c = id.to_vec();
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let mut movi = b"movi".to_vec();
    movi.extend(chunk(b"00tx", &gab2));
    let mut hdrl = b"hdrl".to_vec();
    hdrl.extend(chunk(b"avih", &[0u8; 56]));
    let mut strl = b"strl".to_vec();
    let mut strh = b"txts".to_vec();
    strh.extend_from_slice(&[0u8; 52]);
    strl.extend(chunk(b"strh", &strh));
    hdrl.extend(chunk(b"LIST", &strl));
    let mut avi = b"AVI ".to_vec();
    avi.extend(chunk(b"LIST", &hdrl));
    avi.extend(chunk(b"LIST", &movi));
    chunk(b"RIFF", &avi)
}

fn hostile_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("avi-gab2-hls", avi_with_hls_in_gab2()),
        (
            "hls-playlist",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n".to_vec(),
        ),
        ("concat-list", b"ffconcat version 1.0\nfile /etc/passwd\nfile 'http://127.0.0.1:1/x'\n".to_vec()),
        // ISO-BMFF with a picture's brands (HEIF): MP4/MOV recordings are accepted (issue 31), this is not.
        ("heif", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08meta".to_vec()),
    ]
}

/// Runs the real transcoder binary on a file, outside the worker.
fn transcode_directly(input: &Path, dir: &Path) -> (i32, Vec<Value>) {
    let output = dir.join("out.mp4");
    let out = Command::new(bin_dir().join("mediaq-transcode"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("run mediaq-transcode");
    let events = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!output.exists(), "no output is left for a refused file");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:"), "nothing of /etc/passwd leaks");
    (out.status.code().unwrap_or(-1), events)
}

#[tokio::test]
async fn hostile_files_are_refused_at_upload_and_by_the_child() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in hostile_files() {
        let resp = api.upload(bytes.clone(), "video/webm", Some("clip.webm")).await;
        assert_eq!(resp.status(), 415, "{name}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_webm", "{name}: {body}");
        let resp = api.upload_form(bytes.clone(), "clip.webm", "video/webm").await;
        assert_eq!(resp.status(), 415, "{name}");

        let path = dir.path().join(format!("{name}.webm"));
        std::fs::write(&path, &bytes).unwrap();
        let (status, events) = transcode_directly(&path, dir.path());
        assert_eq!(status, 2, "{name}: {events:?}");
        let last = events.last().unwrap();
        assert_eq!(last["type"], "error", "{name}");
        assert_eq!(last["code"], "invalid_media", "{name}: {last}");
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(jobs, 0);
}

/// Rewrites the PixelWidth element (a 2-byte value in ffmpeg's 320x240 fixture) of a WebM header.
fn declare_width(mut webm: Vec<u8>, width: u16) -> Vec<u8> {
    let at = webm.windows(2).position(|w| w == [0xB0, 0x82]).expect("PixelWidth element");
    webm[at + 2..at + 4].copy_from_slice(&width.to_be_bytes());
    webm
}

#[tokio::test]
async fn a_webm_declaring_huge_frames_fails_on_limits_and_the_worker_goes_on() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let bomb = declare_width(fixtures::bytes(&fixtures::VP8_VORBIS), 12336);
    let resp = api.upload(bomb, "video/webm", Some("bomb.webm")).await;
    assert_eq!(resp.status(), 202, "the header is WebM; the child judges the rest");
    let job: Value = resp.json().await.unwrap();
    let (_, job) = api.wait_terminal(job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    let code = job["error"]["code"].as_str().unwrap();
    assert_eq!(code, "dimensions_exceeded", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("12336"), "{job}");
    let history = job["attempt_history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["outcome"], "failed");
    assert!(history[0]["peak_rss_bytes"].as_i64().unwrap() > 0);
    assert!(history[0]["wall_s"].as_f64().unwrap() > 0.0);

    // The worker keeps processing other jobs.
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    let job: Value = resp.json().await.unwrap();
    let (_, job) = api.wait_terminal(job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let history = job["attempt_history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "succeeded");
    assert_eq!(history[0]["exit_status"], "exit 0");
    assert!(history[0]["user_cpu_s"].as_f64().unwrap() > 0.0);
}
