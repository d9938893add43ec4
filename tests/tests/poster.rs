//! The poster (issue #19, item 4): every succeeded video job gets a JPEG of a frame near the
//! start that is not black, at the video's display size, made in the sandboxed child run and
//! served at `GET /v1/jobs/{id}/poster` under the output's access rules, with an ETag.
//! Audio-only and unfinished jobs answer 404 `poster_not_available`.
//!
//! The fixtures start with black frames past the 1 s mark (a fade-in, a camera opening), so a
//! poster of the first frame, or of the frame at 1 s, is black. Oracles: ffprobe (codec, size)
//! and the ffmpeg CLI (the poster decoded to gray, its mean luma).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mediaq_e2e::services::{client_with_key, create_key};
use mediaq_e2e::{error_code, files_under, fixtures, fixtures::Recipe, probe, sha256_hex, TestEnv};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// 3 s VP9 + Opus, 480x360 stored with a 4:3 sample aspect ratio (displayed 640x360); the
/// first 1.5 s are black.
#[rustfmt::skip]
const VP9_SAR_BLACK_START: Recipe = Recipe { name: "poster_vp9_sar.webm", parts: &[], args: &[
    "-f", "lavfi", "-i", "color=c=black:size=480x360:rate=25:duration=1.5",
    "-f", "lavfi", "-i", "testsrc2=size=480x360:rate=25:duration=1.5",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
    "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,setsar=4/3[v]", "-map", "[v]", "-map", "2:a",
    "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
    "-c:a", "libopus", "-f", "webm",
] };

/// 2.5 s VP8, 320x240 square pixels, no audio; the first 1.2 s are black.
#[rustfmt::skip]
const VP8_BLACK_START: Recipe = Recipe { name: "poster_vp8.webm", parts: &[], args: &[
    "-f", "lavfi", "-i", "color=c=black:size=320x240:rate=25:duration=1.2",
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1.3",
    "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-f", "webm",
] };

/// 2.5 s H.264 (constrained baseline, Chrome's avc1 shape: remuxed) + Opus in Matroska, 320x240;
/// the first 1.2 s are black.
#[rustfmt::skip]
const H264_BLACK_START: Recipe = Recipe { name: "poster_h264.webm", parts: &[], args: &[
    "-f", "lavfi", "-i", "color=c=black:size=320x240:rate=30:duration=1.2",
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1.3",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2.5",
    "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-map", "2:a",
    "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    "-c:a", "libopus", "-f", "matroska",
] };

/// Mean luma (0-255) of an image, decoded by the ffmpeg CLI to 8-bit gray.
fn mean_luma(path: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success() && !out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.iter().map(|&v| f64::from(v)).sum::<f64>() / out.stdout.len() as f64
}

async fn upload(api: &mediaq_e2e::services::Api, recipe: &Recipe) -> String {
    let resp = api.upload(fixtures::bytes(recipe), "video/webm", Some(recipe.name)).await;
    assert_eq!(resp.status(), 202, "{}", recipe.name);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// Downloads and checks the poster of a succeeded job: JPEG at `size`, not black, ETag/304.
async fn check_poster(api: &mediaq_e2e::services::Api, job: &Value, size: (u64, u64), dir: &Path) -> Vec<u8> {
    let id = job["id"].as_str().unwrap();
    let url = format!("/v1/jobs/{id}/poster");
    assert_eq!(job["links"]["poster"], url.as_str(), "{job}");
    let resp = api.client.get(api.url(&url)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{job}");
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&bytes)));

    let path = dir.join(format!("{id}.jpg"));
    std::fs::write(&path, &bytes).unwrap();
    let probed = probe::ffprobe(&path);
    let video = probe::stream(&probed, "video").expect("the poster is a picture");
    assert_eq!(video["codec_name"], "mjpeg", "{probed}");
    assert_eq!((video["width"].as_u64().unwrap(), video["height"].as_u64().unwrap()), size, "{probed}");
    let luma = mean_luma(&path);
    assert!(luma > 50.0, "{}: the poster is (nearly) black, mean luma {luma:.1}", job["input"]["filename"]);

    let again = api.client.get(api.url(&url)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let other = api.client.get(api.url(&url)).header("if-none-match", "\"0000\"").send().await.unwrap();
    assert_eq!(other.status(), 200);
    bytes
}

#[tokio::test]
async fn video_jobs_get_a_poster_that_is_not_black_at_display_size() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let dir = tempfile::tempdir().unwrap();

    // Before any worker runs, the job is queued: no poster yet.
    let vp9 = upload(&api, &VP9_SAR_BLACK_START).await;
    let (status, code, _) =
        error_code(api.client.get(api.url(&format!("/v1/jobs/{vp9}/poster"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "poster_not_available"));

    let _worker = env.worker().await;
    let vp8 = upload(&api, &VP8_BLACK_START).await;
    let h264 = upload(&api, &H264_BLACK_START).await;
    let audio = upload(&api, &fixtures::AUDIO_ONLY).await;

    for (id, size, path) in
        [(&vp9, (640, 360), "transcoded"), (&vp8, (320, 240), "transcoded"), (&h264, (320, 240), "remuxed")]
    {
        let (_, job) = api.wait_terminal(id, JOB_TIMEOUT).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["output"]["video_path"], path, "{job}");
        check_poster(&api, &job, size, dir.path()).await;
        // Stored beside the MP4, under the attempt's key.
        let stored = env.storage_dir().join(format!("outputs/{id}-a1.jpg"));
        assert!(stored.is_file(), "{}", stored.display());
    }

    // Audio only: succeeded, no poster.
    let (_, job) = api.wait_terminal(&audio, JOB_TIMEOUT).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["links"]["poster"].is_null(), "{job}");
    assert!(job["links"]["output"].is_string(), "{job}");
    let (status, code, _) =
        error_code(api.client.get(api.url(&format!("/v1/jobs/{audio}/poster"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "poster_not_available"));
    assert!(files_under(env.storage_dir()).iter().all(|p| !p.to_string_lossy().contains(&format!("{audio}-a1.jpg"))));

    // Another owner's key sees no such job.
    let other = client_with_key(&create_key(&env.database_url, "other", "jobs:read", "other"));
    let (status, code, _) =
        error_code(other.get(api.url(&format!("/v1/jobs/{vp8}/poster"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "job_not_found"));

    // Deleting the job's files deletes the poster with the MP4.
    let resp = api.client.delete(api.url(&format!("/v1/jobs/{vp8}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert!(job["links"]["poster"].is_null(), "{job}");
    let (status, code, _) =
        error_code(api.client.get(api.url(&format!("/v1/jobs/{vp8}/poster"))).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (410, "output_gone"));
    assert!(!env.storage_dir().join(format!("outputs/{vp8}-a1.jpg")).exists());
}
