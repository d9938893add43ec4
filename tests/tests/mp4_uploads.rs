//! MP4 and MOV recordings through the API (issue 31): Chrome's `video/mp4` (fragmented VP9 +
//! Opus), Safari's fragmented H.264 + AAC (a remux only), a phone's rotated HEVC MOV, each sent
//! as a raw body, a form or a resumable upload, converted by the real worker and checked with
//! ffprobe. Other ISO-BMFF files (a HEIF picture) are refused at upload.

use std::path::Path;
use std::time::Duration;

use mediaq_e2e::{fixtures, fixtures::Recipe, live::slices, live::TusUpload, probe, TestEnv};
use serde_json::Value;

const FRAG: &str = "+frag_keyframe+empty_moov+default_base_moof";

/// Chrome's `MediaRecorder` with `mimeType: 'video/mp4'`: VP9 + Opus in fragmented MP4.
#[rustfmt::skip]
const CHROME_MP4: Recipe = Recipe { name: "chrome_vp9_opus.mp4", parts: &[], args: &[
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "2", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus",
    "-movflags", FRAG, "-f", "mp4",
]};
/// Safari's recorder: H.264 (no B-frames) + AAC-LC in fragmented MP4.
#[rustfmt::skip]
const SAFARI_MP4: Recipe = Recipe { name: "safari_h264_aac.mp4", parts: &[], args: &[
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-c:a", "aac", "-ac", "2", "-ar", "48000",
    "-movflags", FRAG, "-f", "mp4",
]};
/// A phone's clip before its rotation is written in: HEVC + AAC in QuickTime MOV.
#[rustfmt::skip]
const PHONE_MOV: Recipe = Recipe { name: "phone_hevc_aac.mov", parts: &[], args: &[
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "2", "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-x265-params", "log-level=error",
    "-c:a", "aac", "-ac", "2", "-f", "mov",
]};

/// The recipe's bytes with a phone's "held upright" display matrix in the first track's `tkhd`
/// (ffmpeg 5.1 cannot write one itself): ffprobe's rotation -90, shown 240x320.
fn rotated(bytes: &[u8]) -> Vec<u8> {
    let mut data = bytes.to_vec();
    let at = data.windows(4).position(|w| w == b"tkhd").expect("tkhd");
    let matrix: [i32; 9] = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x4000_0000];
    let matrix: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
    data[at + 44..at + 80].copy_from_slice(&matrix);
    data
}

async fn id_of(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 202, "upload accepted");
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// Downloads the job's MP4 into `dir` and returns its ffprobe.
async fn output_probe(api: &mediaq_e2e::Api, id: &str, dir: &Path) -> Value {
    let resp = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let path = dir.join(format!("{id}.mp4"));
    std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
    probe::ffprobe(&path)
}

fn rotation(stream: &Value) -> Option<f64> {
    stream["side_data_list"].as_array()?.iter().find_map(|d| d["rotation"].as_f64())
}

#[tokio::test]
async fn mp4_and_mov_recordings_upload_and_convert() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let dir = tempfile::tempdir().unwrap();

    let chrome =
        id_of(api.upload(fixtures::bytes(&CHROME_MP4), "video/mp4;codecs=vp9,opus", Some("rec.mp4")).await).await;
    let safari = id_of(api.upload_form(fixtures::bytes(&SAFARI_MP4), "recording.mp4", "video/mp4").await).await;
    let phone = rotated(&fixtures::bytes(&PHONE_MOV));
    let phone = id_of(api.upload(phone, "video/quicktime", Some("IMG_0001.MOV")).await).await;

    // ISO-BMFF that is not a recording (a HEIF picture's brands) is refused from its first bytes.
    let heif = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08meta".to_vec();
    let (status, code, _) = mediaq_e2e::error_code(api.upload(heif, "video/mp4", Some("p.mp4")).await).await;
    assert_eq!((status, code.as_str()), (415, "not_webm"));

    for (id, content_type, video_path) in [
        (&chrome, "video/mp4", "transcoded"),
        (&safari, "video/mp4", "remuxed"),
        (&phone, "video/quicktime", "transcoded"),
    ] {
        let (_, job) = api.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["input"]["content_type"], content_type, "{job}");
        assert_eq!(
            (job["output"]["video_codec"].as_str(), job["output"]["audio_codec"].as_str()),
            (Some("h264"), Some("aac"))
        );
        assert_eq!(job["output"]["video_path"], video_path, "{job}");
        let out = output_probe(&api, id, dir.path()).await;
        assert!((probe::duration(&out) - 2.0).abs() <= 0.1, "{id}: {out}");
        let video = probe::stream(&out, "video").unwrap();
        assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(320), Some(240)));
        let expected_rotation = if id == &phone { Some(-90.0) } else { None };
        assert_eq!(rotation(video), expected_rotation, "{id}: the display matrix is kept");
    }
}

/// A Chrome `video/mp4` recording sent through tus in parts converts like a classic upload.
#[tokio::test]
async fn a_tus_upload_of_a_chrome_mp4_recording_converts() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let bytes = fixtures::bytes(&CHROME_MP4);
    let mut upload = TusUpload::create_typed(&api, Some(bytes.len() as u64), "video/mp4").await;
    for part in slices(&bytes, 3) {
        upload.append(part).await;
    }
    upload.finish().await;
    let _worker = env.worker().await;
    let (_, job) = api.wait_terminal(&upload.id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["input"]["content_type"], "video/mp4", "{job}");
    assert_eq!(job["output"]["video_codec"], "h264");
}

/// 8 s fragmented MP4s with a keyframe (so a fragment) a second, as the recorders send them.
#[rustfmt::skip]
const CHROME_LIVE: Recipe = Recipe { name: "chrome_vp9_opus_live_8s.mp4", parts: &[], args: &[
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "8", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-g", "30",
    "-c:a", "libopus", "-movflags", FRAG, "-f", "mp4",
]};
#[rustfmt::skip]
const SAFARI_LIVE: Recipe = Recipe { name: "safari_h264_aac_live_8s.mp4", parts: &[], args: &[
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "30", "-c:a", "aac", "-ac", "2",
    "-ar", "48000", "-movflags", FRAG, "-f", "mp4",
]};

/// Sends the recording through tus with its length deferred, one part a second, and checks that
/// it converts while it arrives (processing before the last part, done shortly after it).
async fn send_live(api: &mediaq_e2e::Api, recipe: &Recipe, dir: &Path) {
    let bytes = fixtures::bytes(recipe);
    let mut upload = TusUpload::create_typed(api, None, "video/mp4").await;
    let parts = slices(&bytes, 8);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for (i, part) in parts.iter().enumerate() {
        tick.tick().await;
        if i + 1 == parts.len() {
            let job = api.job(&upload.id).await;
            assert_eq!(job["status"], "processing", "{}: converting before the last part: {job}", recipe.name);
            upload.append_last(part).await;
        } else {
            upload.append(part).await;
        }
    }
    let last_byte = std::time::Instant::now();
    let (_, job) = api.wait_terminal(&upload.id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{}: {job}", recipe.name);
    assert!(
        last_byte.elapsed() < Duration::from_secs(6),
        "{}: {:?} after the last byte",
        recipe.name,
        last_byte.elapsed()
    );
    let out = output_probe(api, &upload.id, dir).await;
    let input = probe::ffprobe(&fixtures::path(recipe));
    assert!((probe::duration(&out) - probe::duration(&input)).abs() <= 0.1, "{}: {out}", recipe.name);
    assert_eq!(probe::stream(&out, "audio").unwrap()["codec_name"], "aac");
}

/// Item 4: fragmented MP4 arriving through tus converts while it arrives, as WebM does.
#[tokio::test]
async fn fragmented_mp4_recordings_convert_while_they_arrive() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let dir = tempfile::tempdir().unwrap();
    // One after the other: the worker runs one job at a time (MEDIAQ_WORKER_CONCURRENCY).
    send_live(&api, &CHROME_LIVE, dir.path()).await;
    send_live(&api, &SAFARI_LIVE, dir.path()).await;
}
