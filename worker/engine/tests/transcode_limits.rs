//! The transcoder's probe gate and limits, test by test: each limit flag tightened on a small
//! generated input ends with its own error code, and the CPU limit follows the media.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

#[test]
fn max_width_and_height_give_dimensions_exceeded() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{V_1S} {VP8}"));
    let (code, message) = refused(&input, "--max-width 100");
    assert_eq!(code, "dimensions_exceeded");
    assert!(message.contains("320x240") && message.contains("100 pixels wide"), "{message}");
    assert_eq!(refused(&input, "--max-height 200").0, "dimensions_exceeded");
    assert_eq!(
        refused(&input, "--max-width 200 --max-height 200").1,
        "the video is 320x240 pixels; at most 200 pixels per side are accepted"
    );
}

/// Headers lie: a PixelWidth patched to 12336 is refused on the header, before any probing.
#[test]
fn patched_header_width_gives_dimensions_exceeded() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{V_1S} {VP8}"));
    // PixelWidth (0xB0), 2-byte value 320 -> 12336.
    patch(&input, &[0xb0, 0x82, 0x01, 0x40], &[0xb0, 0x82, 0x30, 0x30]);
    assert_eq!(streams(&probe(&input), "video")[0]["width"], 12336);
    let (code, message) = convert_err(&input);
    assert_eq!(code, "dimensions_exceeded");
    assert_eq!(message, "the video is 12336x240 pixels; at most 4096 pixels per side are accepted");
}

#[test]
fn max_pixels_gives_pixels_exceeded() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{V_1S} {VP8}"));
    let (code, message) = refused(&input, "--max-pixels 1000");
    assert_eq!(code, "pixels_exceeded");
    assert!(message.contains("76800") && message.contains("at most 1000"), "{message}");
}

/// The header's duration is refused before decoding; without one (a live recording), the
/// timestamps are while decoding.
#[test]
fn max_duration_gives_duration_exceeded() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{AV_3S} {VP8} -c:a libopus"));
    let (code, message) = refused(&input, "--max-duration 1");
    assert_eq!(code, "duration_exceeded");
    assert!(message.contains("lasts 3.0") && message.contains("at most 1 s"), "{message}");

    let live = gen_live(dir.path(), "live.webm", &format!("{AV_3S} {VP8} -c:a libopus"));
    let (code, message) = refused(&live, "--max-duration 1");
    assert_eq!(code, "duration_exceeded");
    assert!(message.contains("timestamp at 1.0"), "{message}");
}

/// Three streams (video and two audio tracks): over --max-streams 2, and far over --max-streams 1
/// (where libav's own cap refuses to open the file), the code is the same; 3 are accepted.
#[test]
fn max_streams_gives_streams_exceeded() {
    let dir = tmp();
    let map = "-map 0:v -map 1:a -map 1:a";
    let input = gen(dir.path(), "in.webm", &format!("{AV_2S} {map} {VP8} -c:a libopus -t 1"));
    assert_eq!(probe(&input)["streams"].as_array().unwrap().len(), 3);
    for flag in ["--max-streams 2", "--max-streams 1"] {
        let (code, message) = refused(&input, flag);
        assert_eq!(code, "streams_exceeded", "{flag}");
        assert!(message.contains("has 3 streams"), "{flag}: {message}");
    }
    let output = dir.path().join("out.mp4");
    let run = transcode_with(&input, &output, "--max-streams 3");
    assert_eq!(run.code, 0, "{:?}\n{}", run.events, run.stderr);
}

#[test]
fn max_fps_gives_frame_rate_exceeded() {
    let dir = tmp();
    let args = format!("-f lavfi -i testsrc2=s=160x120:r=60:d=2 {VP8}");
    let input = gen(dir.path(), "in.webm", &args);
    let (code, message) = refused(&input, "--max-fps 30");
    assert_eq!(code, "frame_rate_exceeded");
    assert!(message.contains("60.00 frames per second"), "{message}");
}

/// Headers lie: 4 s at 10 fps (what the header and the prober see), then 3 s at 100 fps. The
/// rate measured while decoding refuses it.
#[test]
fn frame_rate_rising_after_the_probe_gives_frame_rate_exceeded() {
    let dir = tmp();
    gen(dir.path(), "slow.webm", &format!("-f lavfi -i testsrc2=s=160x120:r=10:d=4 {VP8}"));
    gen(dir.path(), "fast.webm", &format!("-f lavfi -i testsrc2=s=160x120:r=100:d=3 {VP8}"));
    std::fs::write(dir.path().join("list.txt"), "file 'slow.webm'\nfile 'fast.webm'\n").unwrap();
    let input = gen(dir.path(), "in.webm", "-f concat -safe 0 -i list.txt -c copy");
    let v = &streams(&probe(&input), "video")[0].clone();
    assert_eq!((&v["avg_frame_rate"], &v["r_frame_rate"]), (&"10/1".into(), &"10/1".into()));
    let (code, message) = refused(&input, "--max-fps 30");
    assert_eq!(code, "frame_rate_exceeded");
    assert!(message.contains("within"), "measured while decoding: {message}");
}

/// A browser-like VFR recording averaging 30 fps, with two frames of every three 1 ms apart,
/// passes --max-fps 30 and keeps its timestamps.
#[test]
fn vfr_bursts_pass_max_fps() {
    let dir = tmp();
    let bursts = "-vf setpts='if(lt(mod(N,3),2),floor(N/3)*0.1+mod(N,3)*0.001,N/30)/TB' -fps_mode vfr";
    let args = format!("-f lavfi -i testsrc2=s=320x240:r=30:d=3 {bursts} -enc_time_base:v 1:1000 {VP8}");
    let input = gen_live(dir.path(), "in.webm", &args);
    let in_pts = video_pts(&input);
    assert!((in_pts[1] - in_pts[0] - 0.001).abs() < 1e-6, "bursts in the fixture: {in_pts:?}");
    let output = dir.path().join("out.mp4");
    let run = transcode_with(&input, &output, "--max-fps 30");
    assert_eq!(run.code, 0, "{:?}\n{}", run.events, run.stderr);
    check_events(&run);
    assert_eq!(video_pts(&output), in_pts);
}

#[test]
fn max_output_bytes_gives_output_size_exceeded() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{AV_2S} {VP8} -c:a libopus"));
    // `refused` also checks that no partial output is left.
    let (code, message) = refused(&input, "--max-output-bytes 10000");
    assert_eq!(code, "output_size_exceeded");
    assert!(message.contains("at most 10000 bytes"), "{message}");
}

/// RLIMIT_CPU is lowered to 60 s + cpu-per-media-second x the duration once probed (hard limit
/// 5 s above); without a duration, the file size stands in for it (10,000 bytes a second).
#[test]
fn cpu_limit_is_scaled_to_the_media() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{AV_3S} {VP8} -c:a libopus"));
    let live = gen_live(dir.path(), "live.webm", &format!("{AV_3S} {VP8} -c:a libopus"));
    for (input, per_second) in [(input, 2.0), (live, 0.5)] {
        let output = dir.path().join("out.mp4");
        let mut child = Command::new(BIN)
            .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
            .args(["--cpu-per-media-second", &per_second.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let probe: Value = lines
            .by_ref()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .find(|e| e["type"] == "probe")
            .expect("a probe event");
        // Not reaped yet, so /proc/<pid> is still there even if the child has finished.
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let cpu: Vec<String> = limits
            .lines()
            .find(|l| l.starts_with("Max cpu time"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(String::from)
            .collect();
        let media_s = match probe["input"]["duration_s"].as_f64() {
            Some(d) => d,
            None => std::fs::metadata(&input).unwrap().len() as f64 / 10_000.0,
        };
        let soft = (60.0 + per_second * media_s).ceil() as u64;
        assert_eq!(cpu, [soft.to_string(), (soft + 5).to_string()], "{}", input.display());
        let rest: Vec<_> = lines.map(Result::unwrap).collect();
        assert!(rest.last().is_some_and(|l| l.contains("\"done\"")), "{rest:?}");
        assert!(child.wait().unwrap().success());
    }
}

/// A bare relative output name: the job directory is the current one (Landlock gets a real
/// directory instead of an empty path).
#[test]
fn relative_output_is_written_in_the_current_directory() {
    let dir = tmp();
    gen(dir.path(), "in.webm", &format!("{V_1S} {VP8}"));
    let run = run_child_in(Some(dir.path()), &["--input", "in.webm", "--output", "out.mp4"]);
    assert_eq!(run.code, 0, "{:?}\n{}", run.events, run.stderr);
    check_events(&run);
    assert!(!run.stderr.contains("landlock not applied"), "{}", run.stderr);
    let layers = &run.events[0]["layers"];
    assert_eq!(run.events[0]["type"], "sandbox");
    if layers["landlock_abi"].as_i64() > Some(0) {
        assert_ne!(layers["landlock"], "none", "{layers}");
    }
    let input = dir.path().join("in.webm");
    check_output(&input, &dir.path().join("out.mp4"), &run, &expect(Some((320, 240)), false));
}

// ---------------------------------------------------------------- shared corpus
