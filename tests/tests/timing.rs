//! A/V timing kept exactly: the offset between the first video and the first audio frame that a
//! player of the MP4 presents equals the input's, within 10 ms, and does not drift.
//!
//! The oracle is ffprobe on both files: the presentation time of each stream's first decoded
//! frame (ffprobe applies MP4 edit lists, AAC priming and Opus pre-skip as a player does), and
//! for the drift check the end of the audio and the last video frame.

use std::path::{Path, PathBuf};
use std::process::Command;

use mediaq_e2e::{bin_dir, fixtures, fixtures::Recipe, probe};

/// Largest accepted difference between the input's A/V offset and the output's, seconds.
const TOLERANCE_S: f64 = 0.010;

const VIDEO: &str = "testsrc2=size=160x120:rate=30";
const TONE: &str = "sine=frequency=440:sample_rate=48000";

macro_rules! offset_recipe {
    ($name:literal, $video_delay:literal, $audio_delay:literal, [$($codec:expr),* $(,)?]) => {
        Recipe {
            name: $name,
            args: &[
                "-itsoffset", $video_delay, "-f", "lavfi", "-i", VIDEO,
                "-itsoffset", $audio_delay, "-f", "lavfi", "-i", TONE,
                "-t", "1.5", "-map", "0:v", "-map", "1:a",
                $($codec),*
            ],
            parts: &[],
        }
    };
}

/// Recordings whose audio starts 0, 40 or 120 ms after the video, or the video after the audio.
const OFFSETS: &[Recipe] = &[
    offset_recipe!(
        "timing_a0.webm",
        "0",
        "0",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    offset_recipe!(
        "timing_a40.webm",
        "0",
        "0.04",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    offset_recipe!(
        "timing_a120.webm",
        "0",
        "0.12",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    offset_recipe!(
        "timing_a10.webm",
        "0",
        "0.01",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    offset_recipe!(
        "timing_v40.webm",
        "0.04",
        "0",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    offset_recipe!(
        "timing_v120.webm",
        "0.12",
        "0",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"]
    ),
    // Vorbis (no pre-skip, 44.1 kHz) starting 40 ms late.
    offset_recipe!(
        "timing_vorbis_a40.webm",
        "0",
        "0.04",
        ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libvorbis", "-ar", "44100", "-f", "webm",]
    ),
    // A live recording (no sizes, no duration, no cues) with variable frame timing, audio 50 ms late.
    offset_recipe!(
        "timing_live_vfr_a50.webm",
        "0",
        "0.05",
        [
            "-vf",
            "select='not(between(n,10,20))*not(between(n,35,38))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-c:a",
            "libopus",
            "-live",
            "1",
            "-f",
            "webm",
        ]
    ),
];

/// Ten minutes at 64x48 and 10 fps with frames 1-4 of every 50 dropped (variable frame timing),
/// audio starting 40 ms after the video, a steady tone with a 0.5 s dip at 295 s and at 595 s
/// (where the sound comes back marks the audio's content): small enough to make and convert in
/// seconds.
const LONG_VFR: Recipe = Recipe {
    name: "timing_long_vfr_dips.webm",
    args: &[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10",
        "-itsoffset",
        "0.04",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "600",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-af",
        "volume=volume=0.001:enable='between(mod(t,300),295,295.5)'",
        "-vf",
        "select='not(between(mod(n,50),1,4))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "16",
        "-b:v",
        "20k",
        "-c:a",
        "libopus",
        "-b:a",
        "16k",
        "-ac",
        "1",
        "-f",
        "webm",
    ],
    parts: &[],
};

/// Runs the child on `input`; returns the MP4.
fn convert(input: &Path, dir: &Path) -> PathBuf {
    let output = dir.join(format!("{}.mp4", input.file_name().unwrap().to_string_lossy()));
    let out = Command::new(bin_dir().join("mediaq-transcode"))
        .args(["--preset", "ultrafast", "--input"])
        .arg(input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("run mediaq-transcode");
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        input.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    output
}

/// Audio start minus video start of the first decoded frames, by ffprobe.
fn av_offset(path: &Path) -> f64 {
    match probe::first_frames(path) {
        (Some(video), Some(audio)) => audio - video,
        other => panic!("{}: expected a video and an audio frame, got {other:?}", path.display()),
    }
}

fn assert_offset_kept(input: &Path, output: &Path) -> (f64, f64) {
    let (inp, out) = (av_offset(input), av_offset(output));
    let name = input.file_name().unwrap().to_string_lossy();
    eprintln!("{name}: A/V offset in {:+.1} ms, out {:+.1} ms", inp * 1e3, out * 1e3);
    assert!((out - inp).abs() <= TOLERANCE_S, "{name}: A/V offset in {inp:.4} s, out {out:.4} s");
    (inp, out)
}

#[test]
fn audio_video_offsets_survive_conversion() {
    let dir = tempfile::tempdir().unwrap();
    for recipe in OFFSETS {
        let input = fixtures::path(recipe);
        let output = convert(&input, dir.path());
        assert_offset_kept(&input, &output);
    }
    // The fixtures really have the offsets they are named after (ffprobe, input side).
    let offset = |name: &str| av_offset(&fixtures::path(OFFSETS.iter().find(|r| r.name == name).unwrap()));
    assert!(offset("timing_a120.webm") - offset("timing_a0.webm") > 0.1);
    assert!(offset("timing_v120.webm") - offset("timing_a0.webm") < -0.1);
}

#[test]
fn a_long_vfr_recording_does_not_drift() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures::path(&LONG_VFR);
    let output = convert(&input, dir.path());
    assert_offset_kept(&input, &output);
    // At the end: where the sound comes back after the last dip (the audio's content, as played)
    // against the last video frame, both by ffprobe.
    let end_offset = |path: &Path| {
        let video = probe::frame_times(path, probe::stream_index(path, "video").unwrap(), None);
        let last_video = video.iter().map(|f| f.0).fold(f64::MIN, f64::max);
        assert!(last_video > 599.0, "{}: {last_video}", path.display());
        let onsets = probe::sound_onsets(path);
        assert_eq!(onsets.len(), 2, "{}: the sound comes back after each dip: {onsets:?}", path.display());
        onsets.last().unwrap() - last_video
    };
    let (end_in, end_out) = (end_offset(&input), end_offset(&output));
    eprintln!(
        "end: sound back after the last dip - last video frame: in {:+.1} ms, out {:+.1} ms",
        end_in * 1e3,
        end_out * 1e3
    );
    assert!((end_out - end_in).abs() <= TOLERANCE_S, "A/V offset after 10 min: in {end_in:.4} s, out {end_out:.4} s");
}

#[test]
fn corpus_files_keep_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in mediaq_e2e::corpus() {
        if !entry.expected.starts_with("ACCEPT") {
            continue;
        }
        let (Some(_), Some(_)) = probe::first_frames(&entry.path) else { continue };
        let output = convert(&entry.path, dir.path());
        assert_offset_kept(&entry.path, &output);
        checked += 1;
    }
    eprintln!("{checked} corpus files with audio and video checked");
}
