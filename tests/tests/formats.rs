//! Every shape `MediaRecorder` writes in Chrome/Edge and Firefox converts: VP8, VP9, AV1 and H.264
//! video, Opus and PCM audio, including Chrome's H.264 recordings (DocType `matroska`, labelled
//! `video/x-matroska;codecs=avc1`, often saved as `.webm`). Anything else still fails with
//! `unsupported_codec`. Each shape is generated with the ffmpeg CLI; outputs are checked by ffprobe.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mediaq_e2e::{
    bin_dir, fixtures,
    fixtures::Recipe,
    live::{slices, TusUpload},
    probe, TestEnv,
};
use serde_json::Value;

const VIDEO: &str = "testsrc2=size=320x240:rate=30";
const TONE: &str = "sine=frequency=440:sample_rate=48000";

macro_rules! av {
    ($name:literal, [$($codec:expr),* $(,)?]) => {
        Recipe {
            name: $name,
            args: &["-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", TONE, "-t", "1", "-ac", "2", $($codec),*],
            parts: &[],
        }
    };
}

/// Chrome's `video/x-matroska;codecs=avc1,opus`: H.264 (constrained baseline, as Chrome's
/// encoders write it) + Opus, DocType "matroska", saved as .webm.
pub const H264_OPUS_MKV: Recipe = av!(
    "chrome_h264_opus.webm",
    [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-f",
        "matroska",
    ]
);
/// Chrome's `video/x-matroska;codecs=avc1,pcm`: H.264 + 32-bit float PCM.
const H264_PCM_MKV: Recipe = av!(
    "chrome_h264_pcm.webm",
    [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "pcm_f32le",
        "-f",
        "matroska",
    ]
);
/// `video/webm;codecs=vp9,pcm` (written as Matroska: ffmpeg's WebM muxer refuses PCM).
const VP9_PCM: Recipe = av!(
    "chrome_vp9_pcm.mkv",
    ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "pcm_f32le", "-f", "matroska",]
);
/// `audio/webm;codecs=pcm`: PCM only.
const PCM_ONLY: Recipe = Recipe {
    name: "chrome_pcm_only.mka",
    args: &["-f", "lavfi", "-i", TONE, "-t", "1", "-ac", "2", "-c:a", "pcm_f32le", "-f", "matroska"],
    parts: &[],
};
/// 16-bit PCM (Matroska's A_PCM/INT/LIT).
const VP8_PCM16: Recipe = av!(
    "vp8_pcm16.mkv",
    ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "pcm_s16le", "-f", "matroska",]
);
/// Not a browser shape: MPEG-4 Part 2 video.
const MPEG4_OPUS: Recipe = av!("mpeg4_opus.mkv", ["-c:v", "mpeg4", "-c:a", "libopus", "-f", "matroska"]);
/// Not a browser shape: H.264 with AAC audio.
const H264_MP3: Recipe = av!(
    "h264_mp3.mkv",
    ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "libmp3lame", "-f", "matroska",]
);

/// Runs the child; returns its exit status, its events and the output path.
/// Runs the child as the worker does (with `--poster`, written as `<output>.jpg`).
fn convert(input: &Path, dir: &Path) -> (bool, Vec<Value>, PathBuf) {
    let output = dir.join(format!("{}.mp4", input.file_name().unwrap().to_string_lossy()));
    let out = Command::new(bin_dir().join("mediaq-transcode"))
        .args(["--preset", "ultrafast", "--input"])
        .arg(input)
        .arg("--output")
        .arg(&output)
        .arg("--poster")
        .arg(output.with_extension("jpg"))
        .output()
        .expect("run mediaq-transcode");
    let events = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.success(), events, output)
}

fn doc_type(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(2).position(|w| w == [0x42, 0x82]).expect("DocType element");
    let len = (bytes[at + 2] & 0x7f) as usize;
    String::from_utf8_lossy(&bytes[at + 3..at + 3 + len]).into_owned()
}

#[test]
fn every_browser_recording_shape_converts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&Recipe, Option<&str>, Option<&str>); 10] = [
        (&fixtures::VP8_VORBIS, Some("vp8"), Some("vorbis")),
        (&fixtures::VP9_OPUS, Some("vp9"), Some("opus")),
        (&fixtures::AV1_OPUS, Some("av1"), Some("opus")),
        (&fixtures::AUDIO_ONLY, None, Some("opus")),
        (&H264_OPUS_MKV, Some("h264"), Some("opus")),
        (&H264_PCM_MKV, Some("h264"), Some("pcm_f32le")),
        (&VP9_PCM, Some("vp9"), Some("pcm_f32le")),
        (&PCM_ONLY, None, Some("pcm_f32le")),
        (&VP8_PCM16, Some("vp8"), Some("pcm_s16le")),
        (&fixtures::MATROSKA_VP8, Some("vp8"), None),
    ];
    for (recipe, video, audio) in cases {
        let input = fixtures::path(recipe);
        let inp = probe::ffprobe(&input);
        // The fixture has the shape it claims (ffprobe, input side).
        assert_eq!(probe::stream(&inp, "video").map(|s| s["codec_name"].as_str().unwrap()), video, "{}", recipe.name);
        assert_eq!(probe::stream(&inp, "audio").map(|s| s["codec_name"].as_str().unwrap()), audio, "{}", recipe.name);
        let (ok, events, output) = convert(&input, dir.path());
        assert!(ok, "{}: {events:?}", recipe.name);
        let out = probe::ffprobe(&output);
        assert_eq!(probe::stream(&out, "video").is_some(), video.is_some(), "{}", recipe.name);
        // Every shape with video gets a poster (ffprobe: mjpeg); sound only gets none.
        let poster = output.with_extension("jpg");
        assert_eq!(poster.exists(), video.is_some(), "{}: poster", recipe.name);
        if poster.exists() {
            assert_eq!(
                probe::stream(&probe::ffprobe(&poster), "video").unwrap()["codec_name"],
                "mjpeg",
                "{}",
                recipe.name
            );
        }
        if video.is_some() {
            assert_eq!(probe::stream(&out, "video").unwrap()["codec_name"], "h264");
        }
        assert_eq!(probe::stream(&out, "audio").is_some(), audio.is_some(), "{}", recipe.name);
        if audio.is_some() {
            assert_eq!(probe::stream(&out, "audio").unwrap()["codec_name"], "aac", "{}", recipe.name);
        }
        let (in_d, out_d) = (probe::duration(&inp), probe::duration(&out));
        assert!((in_d - out_d).abs() < 0.1, "{}: duration in {in_d} out {out_d}", recipe.name);
    }
    assert_eq!(doc_type(&fixtures::path(&H264_OPUS_MKV)), "matroska");
}

/// The SHA-256 of every video packet, in order (ffprobe).
fn video_packet_hashes(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=data_hash", "-show_data_hash"])
        .args(["sha256", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn h264_video_is_copied_packet_for_packet_and_other_video_is_transcoded() {
    let dir = tempfile::tempdir().unwrap();
    for recipe in [&H264_OPUS_MKV, &H264_PCM_MKV] {
        let input = fixtures::path(recipe);
        let (ok, events, output) = convert(&input, dir.path());
        assert!(ok, "{}: {events:?}", recipe.name);
        let done = events.last().unwrap();
        assert_eq!(done["output"]["video_path"], "remuxed", "{done}");
        let (inp, out) = (video_packet_hashes(&input), video_packet_hashes(&output));
        assert!(inp.len() >= 30, "{}: {} packets", recipe.name, inp.len());
        assert_eq!(inp, out, "{}: the MP4's video packets are the input's", recipe.name);
        // The copy decodes cleanly (ffprobe decodes every frame without an error).
        let decoded = probe::frame_times(&output, probe::stream_index(&output, "video").unwrap(), None);
        assert_eq!(decoded.len(), inp.len());
    }
    let (ok, events, _) = convert(&fixtures::path(&fixtures::VP9_OPUS), dir.path());
    assert!(ok);
    assert_eq!(events.last().unwrap()["output"]["video_path"], "transcoded");
    let (ok, events, _) = convert(&fixtures::path(&fixtures::AUDIO_ONLY), dir.path());
    assert!(ok);
    assert!(events.last().unwrap()["output"].get("video_path").is_none());
}

/// An H.264 stream with a damaged packet is not copied: the video is transcoded instead (the
/// whole file again; a damaged picture costs its frame, as for every transcode).
#[test]
fn damaged_h264_is_transcoded_instead_of_copied() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures::path(&H264_OPUS_MKV);
    // Scramble the middle half of the 11th video packet (a P-frame), found by ffprobe.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pos,size", "-of", "json"])
        .arg(&source)
        .output()
        .unwrap();
    let packets: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packet = &packets["packets"][10];
    let pos: usize = packet["pos"].as_str().unwrap().parse().unwrap();
    let size: usize = packet["size"].as_str().unwrap().parse().unwrap();
    let mut bytes = std::fs::read(&source).unwrap();
    let mut x: u32 = 12345;
    for b in &mut bytes[pos + size / 4..pos + size * 3 / 4] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345) & 0x7fff_ffff;
        *b = (x >> 16) as u8;
    }
    let input = dir.path().join("damaged.webm");
    std::fs::write(&input, &bytes).unwrap();
    let (ok, events, output) = convert(&input, dir.path());
    assert!(ok, "{events:?}");
    assert_eq!(events.last().unwrap()["output"]["video_path"], "transcoded");
    assert_eq!(probe::stream(&probe::ffprobe(&output), "video").unwrap()["codec_name"], "h264");
    // The discarded copy pass's poster was removed; the transcode pass made its own.
    let poster = probe::ffprobe(&output.with_extension("jpg"));
    assert_eq!(probe::stream(&poster, "video").unwrap()["codec_name"], "mjpeg", "{poster}");
}

#[test]
fn other_codecs_still_fail_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    // (AAC in Matroska converts since MP4 recordings are accepted: its decoder is on the list.)
    for recipe in [&MPEG4_OPUS, &H264_MP3] {
        let (ok, events, output) = convert(&fixtures::path(recipe), dir.path());
        assert!(!ok, "{}", recipe.name);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "error", "{}: {events:?}", recipe.name);
        assert_eq!(last["code"], "unsupported_codec", "{}: {last}", recipe.name);
        assert!(!output.exists());
    }
}

#[tokio::test]
async fn chrome_h264_recordings_are_accepted_at_upload_and_convert() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let bytes = fixtures::bytes(&H264_OPUS_MKV);
    let mut ids = Vec::new();
    // Raw body with Chrome's label, and a form upload of the saved .webm file.
    let resp = api.upload(bytes.clone(), "video/x-matroska;codecs=avc1,opus", Some("recording.webm")).await;
    assert_eq!(resp.status(), 202);
    ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    let resp = api.upload_form(bytes, "recording.webm", "video/x-matroska;codecs=avc1").await;
    assert_eq!(resp.status(), 202);
    ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    // Matroska with a DocType mediaq never accepts is still refused.
    let (status, code, _) = mediaq_e2e::error_code(
        api.upload(b"\x1a\x45\xdf\xa3\x88\x42\x82\x85mkv3d".to_vec(), "video/x-matroska", None).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "not_webm"));
    for id in ids {
        let (_, job) = api.wait_terminal(&id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["input"]["content_type"], "video/x-matroska", "{job}");
        assert_eq!(job["output"]["video_codec"], "h264");
        assert_eq!(job["output"]["video_path"], "remuxed", "{job}");
    }
}

/// A picked Chrome H.264 file sent through tus (the upload page sends picked files that way) is
/// complete before a worker takes it: its segments are put together into a file and its video
/// is copied, packet for packet, as for `POST /v1/jobs`.
#[tokio::test]
async fn a_complete_tus_upload_of_a_chrome_h264_recording_is_remuxed() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let input = fixtures::path(&H264_OPUS_MKV);
    let bytes = std::fs::read(&input).unwrap();
    let mut upload = TusUpload::create_typed(&api, Some(bytes.len() as u64), "video/x-matroska").await;
    for part in slices(&bytes, 3) {
        upload.append(part).await;
    }
    upload.finish().await;
    let _worker = env.worker().await;
    let (_, job) = api.wait_terminal(&upload.id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["output"]["video_path"], "remuxed", "{job}");
    let resp = api.client.get(api.url(&format!("/v1/jobs/{}/output", upload.id))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    std::fs::write(&output, resp.bytes().await.unwrap()).unwrap();
    let (ours, theirs) = (video_packet_hashes(&output), video_packet_hashes(&input));
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs, "the video packets are the input's");
}
