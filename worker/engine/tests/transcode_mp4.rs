//! MP4 and MOV recordings in (issue 31): what Chrome's `MediaRecorder` writes for `video/mp4`
//! (fragmented MP4: VP9, H.264 or AV1 with Opus; Opus alone for `audio/mp4`), Safari's fragmented
//! H.264 + AAC (a remux only), and a phone's rotated HEVC MOV. Fixtures come from the ffmpeg CLI
//! at test time; ffprobe checks codecs, durations (0.1 s), the A/V offset (10 ms) and that the
//! output displays upright (the CLI's auto-rotation gives a portrait picture).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Fragmented MP4 as the recorders write it: an empty `moov`, then `moof`/`mdat` pairs.
const FRAGMENTED: &str = "-movflags +frag_keyframe+empty_moov+default_base_moof -f mp4";
const OPUS: &str = "-c:a libopus";
/// Safari's and phones' audio: AAC-LC, stereo, 48 kHz.
const AAC: &str = "-c:a aac -ac 2 -ar 48000";
/// H.264 as the browsers' real-time encoders write it: no B-frames.
const H264_RT: &str = "-c:v libx264 -preset ultrafast -bf 0";
const AV1: &str = "-c:v libaom-av1 -cpu-used 8 -usage realtime -b:v 200k";
const HEVC: &str = "-c:v libx265 -preset ultrafast -tag:v hvc1 -x265-params log-level=error";

fn start(probe: &Value, kind: &str) -> f64 {
    num(&streams(probe, kind)[0]["start_time"]).unwrap_or(0.0)
}

/// Audio start minus video start, input and output, within 10 ms.
fn check_av_offset(input: &Path, output: &Path) {
    let (i, o) = (probe(input), probe(output));
    let (in_offset, out_offset) = (start(&i, "audio") - start(&i, "video"), start(&o, "audio") - start(&o, "video"));
    assert!((in_offset - out_offset).abs() <= 0.010, "A/V offset {in_offset} -> {out_offset}");
}

/// MD5 of each packet of the first stream of `kind`.
fn packet_hashes(path: &Path, kind: &str) -> Vec<String> {
    let v = ffprobe(path, &format!("-select_streams {kind}:0 -show_entries packet=data_hash -show_data_hash MD5"));
    let packets = v["packets"].as_array().expect("packets");
    assert!(!packets.is_empty(), "{kind} packets in {}", path.display());
    packets.iter().map(|p| p["data_hash"].as_str().unwrap().to_string()).collect()
}

/// The size of the first picture as the ffmpeg CLI shows it (rotation applied).
fn displayed_size(path: &Path) -> (u64, u64) {
    let png = path.with_extension("first.png");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-update", "1"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = probe(&png);
    let v = streams(&p, "video")[0];
    (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap())
}

/// Writes a phone's "held upright" display matrix ([0 1; -1 0]: ffprobe's rotation -90) into the
/// first track's `tkhd` (ffmpeg 5.1 cannot write a rotation itself).
fn rotate_first_track(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let at = data.windows(4).position(|w| w == b"tkhd").expect("tkhd");
    assert_eq!(data[at + 4], 0, "version 0 tkhd");
    let matrix: [i32; 9] = [0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x4000_0000];
    let bytes: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
    data[at + 44..at + 80].copy_from_slice(&bytes);
    std::fs::write(path, data).unwrap();
}

fn codecs(path: &Path) -> Vec<String> {
    let p = probe(path);
    let all = p["streams"].as_array().unwrap();
    all.iter().map(|s| s["codec_name"].as_str().unwrap().to_string()).collect()
}

fn fixture(dir: &Path, name: &str, args: &str, expected: &[&str]) -> PathBuf {
    let path = gen(dir, name, args);
    assert_eq!(codecs(&path), expected, "fixture {name}");
    path
}

#[test]
fn chrome_default_mp4_vp9_opus_is_converted() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mp4", &format!("{AV_2S} {VP9} {OPUS} {FRAGMENTED}"), &["vp9", "opus"]);
    let (_, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    let done = &run.last()["output"];
    assert_eq!((done["video_path"].as_str(), done["audio_path"].as_str()), (Some("transcoded"), Some("transcoded")));
    assert_eq!(run.probed()["video_codec"], "vp9");
    assert_eq!(done["rotation"], 0);
    check_av_offset(&input, &output);
}

#[test]
fn chrome_avc1_opus_copies_the_video_and_converts_the_audio() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mp4", &format!("{AV_2S} {H264_RT} {OPUS} {FRAGMENTED}"), &["h264", "opus"]);
    let (_, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    let done = &run.last()["output"];
    assert_eq!((done["video_path"].as_str(), done["audio_path"].as_str()), (Some("remuxed"), Some("transcoded")));
    assert_eq!(packet_hashes(&output, "v"), packet_hashes(&input, "v"), "video packets copied");
    check_av_offset(&input, &output);
}

#[test]
fn chrome_av01_opus_is_converted() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mp4", &format!("{AV_2S} {AV1} {OPUS} -t 1 {FRAGMENTED}"), &["av1", "opus"]);
    let (_, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert_eq!(run.probed()["video_codec"], "av1");
    check_av_offset(&input, &output);
}

#[test]
fn chrome_audio_mp4_opus_gives_aac_only() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.m4a", &format!("{A_2S} {OPUS} {FRAGMENTED}"), &["opus"]);
    let (out, _, run) = convert_ok(&input, expect(None, true));
    assert_eq!(run.last()["output"]["audio_path"], "transcoded");
    let a = streams(&out, "audio")[0];
    assert!((num(&a["duration"]).unwrap() - 2.0).abs() < 0.03, "audio duration {}", a["duration"]);
}

/// Safari: fragmented H.264 + AAC. Nothing is encoded: both tracks' packets are copied.
#[test]
fn safari_fragmented_h264_aac_is_a_remux_only() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mp4", &format!("{AV_2S} {H264_RT} {AAC} {FRAGMENTED}"), &["h264", "aac"]);
    let (_, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    let done = &run.last()["output"];
    assert_eq!((done["video_path"].as_str(), done["audio_path"].as_str()), (Some("remuxed"), Some("remuxed")));
    assert_eq!(packet_hashes(&output, "v"), packet_hashes(&input, "v"), "video packets copied");
    assert_eq!(packet_hashes(&output, "a"), packet_hashes(&input, "a"), "audio packets copied");
    check_av_offset(&input, &output);
    assert!(!mp4_boxes(&output).iter().any(|b| b == "moof"), "the output is not fragmented");
}

/// An MP4 whose audio starts 40 ms after its video (an edit list), both copied: the offset
/// and the AAC priming survive.
#[test]
fn mp4_with_late_audio_keeps_its_offset_when_copied() {
    let dir = tmp();
    let src = "-copyts -f lavfi -i testsrc2=s=320x240:r=30:d=2 -itsoffset 0.04 -f lavfi -i sine=f=440:d=2";
    let input = fixture(dir.path(), "in.mp4", &format!("{src} {H264_RT} {AAC} -movflags +faststart"), &["h264", "aac"]);
    assert!(start(&probe(&input), "audio") > 0.01, "the fixture's audio starts late");
    let (_, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert_eq!(run.last()["output"]["audio_path"], "remuxed");
    check_av_offset(&input, &output);
}

/// H.264 with B-frames (a camera's, or libx264's default): MP4 keeps decode timestamps, so the
/// packets are copied with them and the output decodes to the same frames.
#[test]
fn h264_with_b_frames_in_mp4_is_copied_with_its_decode_timestamps() {
    let dir = tmp();
    let h264 = "-c:v libx264 -preset veryfast -bf 3";
    let input = fixture(dir.path(), "in.mp4", &format!("{AV_2S} {h264} {AAC}"), &["h264", "aac"]);
    let (out, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert_eq!(run.last()["output"]["video_path"], "remuxed");
    assert_eq!(packet_hashes(&output, "v"), packet_hashes(&input, "v"));
    let frames = |p: &Path| ffprobe(p, "-count_frames -select_streams v -show_entries stream=nb_read_frames");
    assert_eq!(frames(&output)["streams"][0]["nb_read_frames"], "60", "{out}");
    check_av_offset(&input, &output);
}

/// A phone's portrait video: HEVC in MOV with a display matrix. Converted to H.264, and the
/// matrix is kept: the picture is stored 320x240 and displays 240x320, upright.
#[test]
fn rotated_hevc_mov_is_converted_and_displays_upright() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mov", &format!("{AV_2S} {HEVC} {AAC}"), &["hevc", "aac"]);
    rotate_first_track(&input);
    assert_eq!(rotation(streams(&probe(&input), "video")[0]), Some(-90.0), "fixture rotated");
    assert_eq!(displayed_size(&input), (240, 320));
    let (out, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    let done = &run.last()["output"];
    assert_eq!((done["video_path"].as_str(), done["audio_path"].as_str()), (Some("transcoded"), Some("remuxed")));
    assert_eq!((run.probed()["rotation"].as_u64(), done["rotation"].as_u64()), (Some(90), Some(90)));
    assert_eq!(rotation(streams(&out, "video")[0]), Some(-90.0));
    assert_eq!(displayed_size(&output), (240, 320), "upright");
    check_av_offset(&input, &output);
}

/// The same rule when the video is copied: the matrix goes with the packets.
#[test]
fn rotated_h264_mov_is_copied_and_displays_upright() {
    let dir = tmp();
    let input = fixture(dir.path(), "in.mov", &format!("{AV_2S} {H264_RT} {AAC}"), &["h264", "aac"]);
    rotate_first_track(&input);
    let (out, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert_eq!(run.last()["output"]["video_path"], "remuxed");
    assert_eq!(run.last()["output"]["rotation"], 90);
    assert_eq!(rotation(streams(&out, "video")[0]), Some(-90.0));
    assert_eq!(displayed_size(&output), (240, 320), "upright");
}

/// Anything outside the list still fails with a clear code: MPEG-4 Part 2 in MP4, MP3 audio.
#[test]
fn other_codecs_in_mp4_are_unsupported() {
    let dir = tmp();
    let (code, message) = convert_err(&gen(dir.path(), "v.mp4", &format!("{AV_2S} -c:v mpeg4 {AAC} -t 1")));
    assert_eq!(code, "unsupported_codec");
    assert!(message.contains("mpeg4"), "{message}");
    let (code, message) = convert_err(&gen(dir.path(), "a.mp4", &format!("{A_2S} -c:a libmp3lame -t 1")));
    assert_eq!(code, "unsupported_codec");
    assert!(message.contains("mp3"), "{message}");
}

/// Runs the child on standard input with all of `bytes` (as the worker feeds a finished upload).
fn transcode_stdin(bytes: &[u8], output: &Path) -> (i32, Vec<Value>) {
    let mut child = Command::new(BIN)
        .args(["--input", "-", "--output", output.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        for chunk in bytes.chunks(16 * 1024) {
            if stdin.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let events = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (status.code().unwrap(), events)
}

/// A fragmented MP4 read from a pipe, front to back, as a live upload arrives (Chrome's and
/// Safari's recorders send fragments while they record).
#[test]
fn fragmented_mp4_converts_from_standard_input() {
    let dir = tmp();
    for (name, args, audio_path) in [
        ("chrome.mp4", format!("{AV_2S} {VP9} {OPUS} {FRAGMENTED}"), "transcoded"),
        ("safari.mp4", format!("{AV_2S} {H264_RT} {AAC} {FRAGMENTED}"), "remuxed"),
    ] {
        let input = gen(dir.path(), name, &args);
        let output = dir.path().join(format!("{name}.out.mp4"));
        let (code, events) = transcode_stdin(&std::fs::read(&input).unwrap(), &output);
        assert_eq!(code, 0, "{name}: {events:?}");
        let done = &events.last().unwrap()["output"];
        assert_eq!(done["audio_path"], audio_path, "{name}");
        let out = probe(&output);
        let (v, a) = (streams(&out, "video"), streams(&out, "audio"));
        assert_eq!((v[0]["codec_name"].as_str(), a[0]["codec_name"].as_str()), (Some("h264"), Some("aac")));
        let duration = num(&out["format"]["duration"]).unwrap();
        assert!((duration - input_duration(&input)).abs() <= 0.1, "{name}: {duration}");
        check_av_offset(&input, &output);
    }
}
