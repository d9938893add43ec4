//! Helpers shared by the transcoder CLI tests: fixtures made by the ffmpeg CLI, runs of the
//! real binary, ffprobe (the independent oracle) and MP4 box checks.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_mediaq-transcode");
pub const EXIT_FAILED: i32 = 2;
pub const EXIT_USAGE: i32 = 64;
pub const TIMEOUT: Duration = Duration::from_secs(60);

// Fixture sources and encoders (ffmpeg arguments, split on whitespace).
pub const AV_2S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=2 -f lavfi -i sine=f=440:d=2";
pub const AV_3S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=3 -f lavfi -i sine=f=440:d=3";
pub const V_1S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=1";
pub const A_2S: &str = "-f lavfi -i sine=f=440:d=2";
pub const VP8: &str = "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 400k";
pub const VP9: &str = "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 400k";
pub const CLI_REFERENCE: &str = "-i in.webm -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p \
    -c:a aac -b:a 128k -ar 48000 -ac 2 -movflags +faststart cli.mp4";

// ---------------------------------------------------------------- helpers

/// Runs ffmpeg in `dir` with whitespace-separated arguments.
pub fn ffmpeg(dir: &Path, args: &str) {
    let out = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args.split_whitespace())
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Generates `dir/name` and returns its path.
pub fn gen(dir: &Path, name: &str, args: &str) -> PathBuf {
    ffmpeg(dir, &format!("{args} {name}"));
    dir.join(name)
}

pub fn ffprobe(path: &Path, extra: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(extra.split_whitespace())
        .arg(path)
        .output()
        .expect("ffprobe runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn probe(path: &Path) -> Value {
    ffprobe(path, "-show_streams -show_format")
}

/// Streams of a kind, cover art excluded.
pub fn streams<'a>(probe: &'a Value, kind: &str) -> Vec<&'a Value> {
    let all = probe["streams"].as_array().map(Vec::as_slice).unwrap_or_default();
    all.iter()
        .filter(|s| s["codec_type"] == kind)
        .filter(|s| s["disposition"]["attached_pic"].as_i64() != Some(1))
        .collect()
}

pub fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The input's duration: the header's, else where its last packet ends.
pub fn input_duration(path: &Path) -> f64 {
    if let Some(d) = num(&probe(path)["format"]["duration"]) {
        return d;
    }
    let packets = ffprobe(path, "-show_entries packet=pts_time,duration_time");
    let packets = packets["packets"].as_array().expect("packets");
    let ends = packets.iter().filter_map(|p| Some(num(&p["pts_time"])? + num(&p["duration_time"]).unwrap_or(0.0)));
    ends.fold(0.0, f64::max)
}

/// Video packet timestamps (seconds) of a file, sorted.
pub fn video_pts(path: &Path) -> Vec<f64> {
    let v = ffprobe(path, "-select_streams v:0 -show_entries packet=pts_time");
    let packets = v["packets"].as_array().expect("packets");
    let mut pts: Vec<f64> = packets.iter().filter_map(|p| num(&p["pts_time"])).collect();
    pts.sort_by(f64::total_cmp);
    pts
}

pub fn rotation(stream: &Value) -> Option<f64> {
    stream["side_data_list"].as_array()?.iter().find_map(|d| num(&d["rotation"]))
}

/// Top-level MP4 box types, in file order.
pub fn mp4_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).expect("output readable");
    let (mut boxes, mut pos) = (Vec::new(), 0usize);
    while pos + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned());
        let size = match size32 {
            0 => data.len() - pos,
            1 => u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize,
            n => n,
        };
        assert!(size >= 8, "corrupt box at {pos} in {}", path.display());
        pos += size;
    }
    boxes
}

pub struct Run {
    pub code: i32,
    pub events: Vec<Value>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn last(&self) -> &Value {
        self.events.last().unwrap_or(&Value::Null)
    }

    /// The input facts of the `probe` event.
    pub fn probed(&self) -> &Value {
        let probe = self.events.iter().find(|e| e["type"] == "probe");
        &probe.expect("a probe event")["input"]
    }
}

/// Runs the child with a time limit; a hang fails the test.
pub fn run_child(args: &[&str]) -> Run {
    run_child_in(None, args)
}

/// Runs the child with a time limit, in `cwd` when given; a hang fails the test.
pub fn run_child_in(cwd: Option<&Path>, args: &[&str]) -> Run {
    let start = Instant::now();
    let mut command = Command::new(BIN);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child starts");
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mediaq-transcode {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap().expect("stdout is UTF-8");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect();
    Run {
        code: status.code().expect("exited, not killed"),
        events,
        stderr: err.join().unwrap().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

pub fn transcode(input: &Path, output: &Path) -> Run {
    transcode_with(input, output, "")
}

/// Runs the child with extra flags (whitespace-separated), such as tightened limits.
pub fn transcode_with(input: &Path, output: &Path, flags: &str) -> Run {
    let mut args = vec!["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend(flags.split_whitespace());
    run_child(&args)
}

/// The event stream of a successful run: [sandbox,] probe, progress from 0.0 up to 1.0, done.
pub fn check_events(run: &Run) {
    let mut types: Vec<&str> = run.events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    if types.first() == Some(&"sandbox") {
        types.remove(0);
    }
    assert_eq!(types.first(), Some(&"probe"), "events: {:?}", run.events);
    assert_eq!(types.last(), Some(&"done"), "events: {:?}", run.events);
    assert_eq!(types[types.len() - 2], "progress", "1.0 comes right before done");
    assert!(!types.contains(&"error"));
    let progress: Vec<f64> = run
        .events
        .iter()
        .filter(|e| e["type"] == "progress")
        .map(|e| e["progress"].as_f64().expect("progress is a number"))
        .collect();
    assert_eq!(progress.first(), Some(&0.0), "first progress is 0.0: {progress:?}");
    assert_eq!(progress.last(), Some(&1.0), "last progress is 1.0: {progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "non-decreasing: {progress:?}");
    assert!(progress.iter().all(|p| (0.0..=1.0).contains(p)), "{progress:?}");
    let allowed = 3 + (run.elapsed.as_secs_f64() * 4.0).ceil() as usize;
    assert!(progress.len() <= allowed, "{} events in {:?}", progress.len(), run.elapsed);
}

pub struct Expect {
    /// Output video size, or no video.
    pub video: Option<(u64, u64)>,
    pub audio: bool,
    /// Maximum difference of output and input duration; None skips the check.
    pub duration_tolerance: Option<f64>,
}

pub fn expect(video: Option<(u64, u64)>, audio: bool) -> Expect {
    Expect { video, audio, duration_tolerance: Some(0.1) }
}

/// Converts `input`, which must succeed, and checks the output; returns its probe, path and run.
pub fn convert_ok(input: &Path, expect: Expect) -> (Value, PathBuf, Run) {
    let output = input.with_extension("out.mp4");
    let run = transcode(input, &output);
    assert_eq!(run.code, 0, "{}: {:?}\n{}", input.display(), run.events, run.stderr);
    check_events(&run);
    let out = check_output(input, &output, &run, &expect);
    (out, output, run)
}

/// Checks an output against ffprobe: codecs, pix_fmt, even size, AAC format, duration, the
/// facts in `done`, and that moov precedes mdat.
pub fn check_output(input: &Path, output: &Path, run: &Run, expect: &Expect) -> Value {
    let out = probe(output);
    let (video, audio) = (streams(&out, "video"), streams(&out, "audio"));
    let all = out["streams"].as_array().expect("streams").len();
    assert_eq!(all, video.len() + audio.len(), "only audio and video in the output: {out}");
    let done = &run.last()["output"];
    match expect.video {
        Some((w, h)) => {
            assert_eq!(video.len(), 1, "one video stream: {out}");
            let v = video[0];
            assert_eq!(v["codec_name"], "h264");
            assert_eq!(v["pix_fmt"], "yuv420p");
            let size = (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap());
            assert_eq!((size.0 % 2, size.1 % 2), (0, 0), "even dimensions {size:?}");
            assert_eq!(size, (w, h));
            assert_eq!((done["width"].as_u64(), done["height"].as_u64()), (Some(w), Some(h)));
            assert_eq!(done["video_codec"], "h264");
        }
        None => {
            assert!(video.is_empty(), "no video stream: {out}");
            assert!(done["video_codec"].is_null());
        }
    }
    if expect.audio {
        assert_eq!(audio.len(), 1, "one audio stream: {out}");
        let a = audio[0];
        assert_eq!(a["codec_name"], "aac");
        assert_eq!(a["profile"], "LC");
        if done["audio_path"] == "remuxed" {
            // Copied AAC-LC keeps its rate and channels (44.1 or 48 kHz, mono or stereo).
            assert!(a["sample_rate"] == "48000" || a["sample_rate"] == "44100", "{a}");
            assert!(a["channels"] == 1 || a["channels"] == 2, "{a}");
        } else {
            assert_eq!(a["sample_rate"], "48000");
            assert_eq!(a["channels"], 2);
        }
        assert_eq!(done["audio_codec"], "aac");
    } else {
        assert!(audio.is_empty(), "no audio stream: {out}");
        assert!(done["audio_codec"].is_null());
    }
    let duration = num(&out["format"]["duration"]).expect("output duration");
    if let Some(tolerance) = expect.duration_tolerance {
        let input = input_duration(input);
        assert!((duration - input).abs() <= tolerance, "duration {duration} vs input {input}");
    }
    let reported = done["duration_s"].as_f64().expect("done reports a duration");
    assert!((reported - duration).abs() <= 0.05, "done {reported} vs ffprobe {duration}");
    let boxes = mp4_boxes(output);
    let at = |name: &str| boxes.iter().position(|b| b == name);
    assert!(at("moov").is_some() && at("moov") < at("mdat"), "moov before mdat: {boxes:?}");
    out
}

/// Runs a file that must be refused; checks the failure shape and returns the error code.
pub fn convert_err(input: &Path) -> (String, String) {
    refused(input, "")
}

/// Runs a file with extra flags; it must be refused. Checks the failure shape (no output left)
/// and returns the error code and message.
pub fn refused(input: &Path, flags: &str) -> (String, String) {
    let output = input.with_extension("out.mp4");
    let run = transcode_with(input, &output, flags);
    assert_eq!(run.code, EXIT_FAILED, "{}: {:?}\n{}", input.display(), run.events, run.stderr);
    let last = run.last();
    assert_eq!(last["type"], "error", "{:?}", run.events);
    assert!(!output.exists(), "no partial output is left behind");
    let message = last["message"].as_str().unwrap_or("").to_string();
    assert!(!message.is_empty());
    (last["code"].as_str().unwrap().to_string(), message)
}

pub fn tmp() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Generates `dir/name` through a pipe, as a live recording: no duration, no Cues.
pub fn gen_live(dir: &Path, name: &str, args: &str) -> PathBuf {
    let args = format!("-nostdin -v error {args} -f webm -live 1 pipe:1");
    let out = Command::new("ffmpeg").args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    assert!(probe(&path)["format"]["duration"].is_null(), "no duration in the fixture");
    path
}

/// Replaces the first occurrence of `from` in `path` by `to` (same length).
pub fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut data = std::fs::read(path).unwrap();
    let at = data.windows(from.len()).position(|w| w == from).expect("bytes to patch");
    data[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------- conversions
