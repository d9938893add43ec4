//! Media fixtures generated at test time with the ffmpeg CLI (cached under target/test-fixtures).

use std::{path::PathBuf, process::Command, sync::Mutex};

static LOCK: Mutex<()> = Mutex::new(());

/// A fixture: a file name and the ffmpeg arguments that make it (output path appended).
pub struct Recipe {
    pub name: &'static str,
    pub args: &'static [&'static str],
    /// When set, these fixtures are joined (concat demuxer, stream copy) and `args` are output options.
    pub parts: &'static [&'static Recipe],
}

const VIDEO_SMALL: &str = "testsrc2=size=320x240:rate=25";
const TONE: &str = "sine=frequency=440:sample_rate=48000";

macro_rules! recipe {
    ($name:literal, [$($arg:expr),* $(,)?]) => {
        Recipe { name: $name, args: &[$($arg),*], parts: &[] }
    };
}

/// A 12 s MediaRecorder-style recording: VP8 + Opus written as a stream (no Cues, no Duration,
/// unknown-size clusters, a cluster per second), 640x360.
#[rustfmt::skip]
pub const RECORDING_12S: Recipe = recipe!("live_recording_12s.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "12", "-map", "0:v", "-map", "1:a", "-c:v", "libvpx", "-deadline", "realtime",
    "-cpu-used", "8", "-b:v", "1M", "-c:a", "libopus", "-live", "1", "-cluster_time_limit", "1000",
    "-f", "webm",
]);
/// 1 s VP8 + Vorbis, 320x240.
#[rustfmt::skip]
pub const VP8_VORBIS: Recipe = recipe!("vp8_vorbis.webm", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-f", "lavfi", "-i", TONE, "-t", "1", "-c:v", "libvpx",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libvorbis", "-ac", "2",
    "-f", "webm",
]);
/// 1 s VP9 + Opus, 320x240.
#[rustfmt::skip]
pub const VP9_OPUS: Recipe = recipe!("vp9_opus.webm", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-f", "lavfi", "-i", TONE, "-t", "1", "-c:v", "libvpx-vp9",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus", "-f", "webm",
]);
/// 1 s AV1 + Opus, 320x240.
#[rustfmt::skip]
pub const AV1_OPUS: Recipe = recipe!("av1_opus.webm", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-f", "lavfi", "-i", TONE, "-t", "1", "-c:v", "libaom-av1",
    "-cpu-used", "8", "-usage", "realtime", "-b:v", "200k", "-c:a", "libopus", "-f", "webm",
]);
/// 1 s VP9, odd 641x361, no audio.
#[rustfmt::skip]
pub const ODD_NO_AUDIO: Recipe = recipe!("odd_641x361.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=641x361:rate=25", "-t", "1", "-c:v", "libvpx-vp9",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-f", "webm",
]);
/// 2 s Opus only.
#[rustfmt::skip]
pub const AUDIO_ONLY: Recipe = recipe!("audio_only.webm", [
    "-f", "lavfi", "-i", TONE, "-t", "2", "-c:a", "libopus", "-f", "webm",
]);
/// 1 s VP8 + 5.1 Opus.
#[rustfmt::skip]
pub const OPUS_51: Recipe = recipe!("opus_5_1.webm", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000",
    "-t", "1", "-filter_complex", "[1:a]pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0[a]",
    "-map", "0:v", "-map", "[a]", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
    "-b:v", "300k", "-c:a", "libopus", "-mapping_family", "1", "-f", "webm",
]);
/// A MediaRecorder-like live recording: written as a stream (no Duration, no Cues), with
/// variable frame timing (frames dropped by a select filter), VP8 + Opus.
#[rustfmt::skip]
pub const LIVE_VFR: Recipe = recipe!("live_vfr.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", TONE, "-t", "2",
    "-vf", "select='not(between(n,10,20))*not(between(n,35,38))'", "-fps_mode", "vfr",
    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus",
    "-live", "1", "-cluster_time_limit", "500", "-f", "webm",
]);
/// A video whose frame size changes mid-stream: 1 s of 320x240 then 1 s of 480x360, VP8,
/// joined without re-encoding (as a camera switch in a browser recording does).
pub const RES_CHANGE: Recipe =
    Recipe { name: "res_change.webm", args: &["-c", "copy", "-f", "webm"], parts: &[&RES_PART_A, &RES_PART_B] };
#[rustfmt::skip]
const RES_PART_A: Recipe = recipe!("res_part_a.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "1", "-c:v", "libvpx",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-f", "webm",
]);
#[rustfmt::skip]
const RES_PART_B: Recipe = recipe!("res_part_b.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=480x360:rate=25", "-t", "1", "-c:v", "libvpx",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-f", "webm",
]);
/// Matroska (DocType "matroska") with WebM codecs: not WebM by the spec.
#[rustfmt::skip]
pub const MATROSKA_VP8: Recipe = recipe!("matroska_vp8.mkv", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-t", "0.5", "-c:v", "libvpx", "-deadline", "realtime",
    "-cpu-used", "8", "-f", "matroska",
]);
/// A PNG image.
#[rustfmt::skip]
pub const PNG: Recipe = recipe!("image.png", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-frames:v", "1", "-f", "image2",
]);
/// An MP4 (H.264).
#[rustfmt::skip]
pub const MP4: Recipe = recipe!("clip.mp4", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-t", "0.5", "-c:v", "libx264", "-preset", "ultrafast",
    "-f", "mp4",
]);
/// 2 s of VP8 + Opus at 320x240 (the clip the upload page's browser tests upload).
#[rustfmt::skip]
pub const VP8_OPUS_2S: Recipe = recipe!("browser_clip_2s.webm", [
    "-f", "lavfi", "-i", VIDEO_SMALL, "-f", "lavfi", "-i", TONE, "-t", "2", "-c:v", "libvpx",
    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus", "-f", "webm",
]);
/// The benchmarks' clip: 5 s of 640x480 at 30 fps, VP8 + Opus, like a browser recording.
#[rustfmt::skip]
pub const BENCH_CLIP: Recipe = recipe!("bench_clip.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30", "-f", "lavfi", "-i", TONE, "-t", "5",
    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-c:a", "libopus",
    "-b:a", "96k", "-f", "webm",
]);
/// A longer clip (for cancellation / crash tests): 20 s VP8 640x480.
#[rustfmt::skip]
pub const LONG_VP8: Recipe = recipe!("long_vp8.webm", [
    "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30", "-f", "lavfi", "-i", TONE, "-t", "20",
    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k", "-c:a", "libopus",
    "-f", "webm",
]);

/// The fixture's path, generating it on first use.
pub fn path(recipe: &Recipe) -> PathBuf {
    let parts: Vec<PathBuf> = recipe.parts.iter().map(|p| path(p)).collect();
    let dir = crate::bin_dir().join("test-fixtures");
    let path = dir.join(recipe.name);
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{}.{}", recipe.name, std::process::id()));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if !parts.is_empty() {
        let list = dir.join(format!(".{}.list", recipe.name));
        let text: String = parts.iter().map(|p| format!("file '{}'\n", p.display())).collect();
        std::fs::write(&list, text).unwrap();
        cmd.args(["-f", "concat", "-safe", "0", "-i"]).arg(&list);
    }
    let out = cmd.args(recipe.args).arg(&tmp).output().expect("run ffmpeg (install it: scripts/test.sh does)");
    assert!(out.status.success(), "ffmpeg failed for {}: {}", recipe.name, String::from_utf8_lossy(&out.stderr));
    std::fs::rename(&tmp, &path).unwrap();
    path
}

pub fn bytes(recipe: &Recipe) -> Vec<u8> {
    std::fs::read(path(recipe)).unwrap()
}
