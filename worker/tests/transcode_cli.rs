//! Integration tests of the `mediaq-transcode` child binary.
//!
//! Fixtures are generated at test time with the ffmpeg CLI into temporary directories; ffprobe is
//! the independent oracle for the outputs. When the shared corpus (`../../shared/corpus`) exists,
//! every file in it is also run and checked against `MANIFEST.tsv`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_mediaq-transcode");
const EXIT_FAILED: i32 = 2;
const EXIT_USAGE: i32 = 64;
const TIMEOUT: Duration = Duration::from_secs(60);

// Fixture sources and encoders (ffmpeg arguments, split on whitespace).
const AV_2S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=2 -f lavfi -i sine=f=440:d=2";
const AV_3S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=3 -f lavfi -i sine=f=440:d=3";
const V_1S: &str = "-f lavfi -i testsrc2=s=320x240:r=30:d=1";
const A_2S: &str = "-f lavfi -i sine=f=440:d=2";
const VP8: &str = "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 400k";
const VP9: &str = "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 400k";
const CLI_REFERENCE: &str = "-i in.webm -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p \
    -c:a aac -b:a 128k -ar 48000 -ac 2 -movflags +faststart cli.mp4";

// ---------------------------------------------------------------- helpers

/// Runs ffmpeg in `dir` with whitespace-separated arguments.
fn ffmpeg(dir: &Path, args: &str) {
    let out = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args.split_whitespace())
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Generates `dir/name` and returns its path.
fn gen(dir: &Path, name: &str, args: &str) -> PathBuf {
    ffmpeg(dir, &format!("{args} {name}"));
    dir.join(name)
}

fn ffprobe(path: &Path, extra: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(extra.split_whitespace())
        .arg(path)
        .output()
        .expect("ffprobe runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn probe(path: &Path) -> Value {
    ffprobe(path, "-show_streams -show_format")
}

/// Streams of a kind, cover art excluded.
fn streams<'a>(probe: &'a Value, kind: &str) -> Vec<&'a Value> {
    let all = probe["streams"].as_array().map(Vec::as_slice).unwrap_or_default();
    all.iter()
        .filter(|s| s["codec_type"] == kind)
        .filter(|s| s["disposition"]["attached_pic"].as_i64() != Some(1))
        .collect()
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The input's duration: the header's, else where its last packet ends.
fn input_duration(path: &Path) -> f64 {
    if let Some(d) = num(&probe(path)["format"]["duration"]) {
        return d;
    }
    let packets = ffprobe(path, "-show_entries packet=pts_time,duration_time");
    let packets = packets["packets"].as_array().expect("packets");
    let ends = packets.iter().filter_map(|p| Some(num(&p["pts_time"])? + num(&p["duration_time"]).unwrap_or(0.0)));
    ends.fold(0.0, f64::max)
}

/// Video packet timestamps (seconds) of a file, sorted.
fn video_pts(path: &Path) -> Vec<f64> {
    let v = ffprobe(path, "-select_streams v:0 -show_entries packet=pts_time");
    let packets = v["packets"].as_array().expect("packets");
    let mut pts: Vec<f64> = packets.iter().filter_map(|p| num(&p["pts_time"])).collect();
    pts.sort_by(f64::total_cmp);
    pts
}

fn rotation(stream: &Value) -> Option<f64> {
    stream["side_data_list"].as_array()?.iter().find_map(|d| num(&d["rotation"]))
}

/// Top-level MP4 box types, in file order.
fn mp4_boxes(path: &Path) -> Vec<String> {
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

struct Run {
    code: i32,
    events: Vec<Value>,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn last(&self) -> &Value {
        self.events.last().unwrap_or(&Value::Null)
    }

    /// The input facts of the `probe` event.
    fn probed(&self) -> &Value {
        let probe = self.events.iter().find(|e| e["type"] == "probe");
        &probe.expect("a probe event")["input"]
    }
}

/// Runs the child with a time limit; a hang fails the test.
fn run_child(args: &[&str]) -> Run {
    run_child_in(None, args)
}

/// Runs the child with a time limit, in `cwd` when given; a hang fails the test.
fn run_child_in(cwd: Option<&Path>, args: &[&str]) -> Run {
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

fn transcode(input: &Path, output: &Path) -> Run {
    transcode_with(input, output, "")
}

/// Runs the child with extra flags (whitespace-separated), such as tightened limits.
fn transcode_with(input: &Path, output: &Path, flags: &str) -> Run {
    let mut args = vec!["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend(flags.split_whitespace());
    run_child(&args)
}

/// The event stream of a successful run: [sandbox,] probe, progress from 0.0 up to 1.0, done.
fn check_events(run: &Run) {
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

struct Expect {
    /// Output video size, or no video.
    video: Option<(u64, u64)>,
    audio: bool,
    /// Maximum difference of output and input duration; None skips the check.
    duration_tolerance: Option<f64>,
}

fn expect(video: Option<(u64, u64)>, audio: bool) -> Expect {
    Expect { video, audio, duration_tolerance: Some(0.1) }
}

/// Converts `input`, which must succeed, and checks the output; returns its probe, path and run.
fn convert_ok(input: &Path, expect: Expect) -> (Value, PathBuf, Run) {
    let output = input.with_extension("out.mp4");
    let run = transcode(input, &output);
    assert_eq!(run.code, 0, "{}: {:?}\n{}", input.display(), run.events, run.stderr);
    check_events(&run);
    let out = check_output(input, &output, &run, &expect);
    (out, output, run)
}

/// Checks an output against ffprobe: codecs, pix_fmt, even size, AAC format, duration, the
/// facts in `done`, and that moov precedes mdat.
fn check_output(input: &Path, output: &Path, run: &Run, expect: &Expect) -> Value {
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
        assert_eq!(a["sample_rate"], "48000");
        assert_eq!(a["channels"], 2);
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
fn convert_err(input: &Path) -> (String, String) {
    refused(input, "")
}

/// Runs a file with extra flags; it must be refused. Checks the failure shape (no output left)
/// and returns the error code and message.
fn refused(input: &Path, flags: &str) -> (String, String) {
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

fn tmp() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Generates `dir/name` through a pipe, as a live recording: no duration, no Cues.
fn gen_live(dir: &Path, name: &str, args: &str) -> PathBuf {
    let args = format!("-nostdin -v error {args} -f webm -live 1 pipe:1");
    let out = Command::new("ffmpeg").args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    assert!(probe(&path)["format"]["duration"].is_null(), "no duration in the fixture");
    path
}

/// Replaces the first occurrence of `from` in `path` by `to` (same length).
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut data = std::fs::read(path).unwrap();
    let at = data.windows(from.len()).position(|w| w == from).expect("bytes to patch");
    data[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------- conversions

#[test]
fn vp8_vorbis_converts() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{AV_2S} {VP8} -c:a libvorbis"));
    let (_, _, run) = convert_ok(&input, expect(Some((320, 240)), true));
    let facts = &run.probed();
    assert_eq!((facts["video_codec"].as_str(), facts["audio_codec"].as_str()), (Some("vp8"), Some("vorbis")));
    assert_eq!((facts["width"].as_u64(), facts["height"].as_u64()), (Some(320), Some(240)));
}

/// Same libx264 settings string and frame-type decisions as the CLI reference command
/// (+cgop kept, libx264 decides frame types itself, CRF and preset passed).
#[test]
fn vp9_opus_matches_cli_reference_settings() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{AV_3S} {VP9} -c:a libopus"));
    let (out, ours, _) = convert_ok(&input, expect(Some((320, 240)), true));
    ffmpeg(dir.path(), CLI_REFERENCE);
    let cli = dir.path().join("cli.mp4");
    let x264_options = |path: &Path| {
        let data = std::fs::read(path).unwrap();
        let at = data.windows(9).position(|w| w == b"options: ").expect("x264 SEI");
        let end = data[at..].iter().position(|b| *b == 0).unwrap() + at;
        String::from_utf8_lossy(&data[at..end]).into_owned()
    };
    let options = x264_options(&ours);
    assert_eq!(options, x264_options(&cli));
    assert!(options.contains("open_gop=0") && options.contains("crf=23.0"), "{options}");
    let frame_types = |path: &Path| {
        let v = ffprobe(path, "-select_streams v -show_entries frame=pict_type");
        let frames = v["frames"].as_array().unwrap().iter();
        frames.map(|f| f["pict_type"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let ours_types = frame_types(&ours);
    assert!(ours_types.iter().any(|t| t == "B"), "libx264 chose B-frames itself");
    assert_eq!(ours_types, frame_types(&cli));
    let v = streams(&out, "video")[0];
    assert!((num(&v["duration"]).unwrap() - 3.0).abs() < 0.02, "video duration {}", v["duration"]);
}

#[test]
fn av1_opus_converts() {
    let dir = tmp();
    let av1 = "-c:v libaom-av1 -cpu-used 8 -usage realtime -b:v 200k -c:a libopus -t 1";
    let input = gen(dir.path(), "in.webm", &format!("{AV_2S} {av1}"));
    let (_, _, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert_eq!(run.probed()["video_codec"], "av1");
}

/// testsrc is RGB, so libvpx-vp9 writes profile 1 gbrp: this also covers RGB -> yuv420p.
#[test]
fn odd_dimensions_without_audio_round_down_to_even() {
    let dir = tmp();
    let args = format!("-f lavfi -i testsrc=s=641x361:r=30:d=1 {VP9}");
    let input = gen(dir.path(), "in.webm", &args);
    assert_eq!(streams(&probe(&input), "video")[0]["width"], 641);
    let (out, _, _) = convert_ok(&input, expect(Some((640, 360)), false));
    assert_eq!(streams(&out, "video")[0]["color_range"], "tv", "RGB becomes limited-range YUV");
}

/// Full-range VP9 stays full range (flagged in the H.264 VUI), exactly as with the CLI.
#[test]
fn full_range_vp9_keeps_its_range_like_the_cli() {
    let dir = tmp();
    let range = "-vf scale=out_range=full,format=yuv420p -color_range pc";
    let input = gen(dir.path(), "in.webm", &format!("{V_1S} {range} {VP9}"));
    assert_eq!(streams(&probe(&input), "video")[0]["color_range"], "pc");
    let output = dir.path().join("out.mp4");
    let run = transcode(&input, &output);
    assert_eq!(run.code, 0, "{:?}\n{}", run.events, run.stderr);
    check_events(&run);
    ffmpeg(dir.path(), "-i in.webm -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p cli.mp4");
    let (ours, cli) = (probe(&output), probe(&dir.path().join("cli.mp4")));
    let (ours, cli) = (streams(&ours, "video")[0], streams(&cli, "video")[0]);
    assert_eq!(ours["color_range"], "pc");
    assert_eq!((&ours["pix_fmt"], &ours["color_range"]), (&cli["pix_fmt"], &cli["color_range"]));
}

#[test]
fn audio_only_opus_gives_aac_only_mp4() {
    let dir = tmp();
    let input = gen(dir.path(), "in.webm", &format!("{A_2S} -c:a libopus"));
    let (out, _, run) = convert_ok(&input, expect(None, true));
    // Opus pre-skip moves the first timestamp (packet time base set): not a sample is lost.
    let a = streams(&out, "audio")[0];
    assert!((num(&a["duration"]).unwrap() - 2.0).abs() < 0.004, "audio duration {}", a["duration"]);
    assert!(!run.stderr.contains("Could not update timestamps"), "{}", run.stderr);
}

#[test]
fn opus_5_1_is_downmixed_to_stereo() {
    let dir = tmp();
    let pan = "-af pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0 -c:a libopus";
    let input = gen(dir.path(), "in.webm", &format!("{A_2S} {pan}"));
    assert_eq!(streams(&probe(&input), "audio")[0]["channels"], 6);
    convert_ok(&input, expect(None, true));
}

#[test]
fn vp9_10bit_profile2_becomes_8bit_yuv420p() {
    let dir = tmp();
    let args = format!("{AV_2S} {VP9} -pix_fmt yuv420p10le -profile:v 2 -c:a libopus -t 1");
    let input = gen(dir.path(), "in.webm", &args);
    assert_eq!(streams(&probe(&input), "video")[0]["pix_fmt"], "yuv420p10le");
    convert_ok(&input, expect(Some((320, 240)), true));
}

#[test]
fn resolution_change_mid_stream_keeps_first_size() {
    let dir = tmp();
    gen(dir.path(), "a.webm", &format!("{V_1S} {VP8}"));
    gen(dir.path(), "b.webm", &format!("-f lavfi -i testsrc2=s=480x360:r=30:d=1 {VP8}"));
    std::fs::write(dir.path().join("list.txt"), "file 'a.webm'\nfile 'b.webm'\n").unwrap();
    let input = gen(dir.path(), "in.webm", "-f concat -safe 0 -i list.txt -c copy");
    let frames = ffprobe(&input, "-select_streams v -show_entries frame=width,height");
    let frames = frames["frames"].as_array().unwrap();
    let sizes: BTreeSet<String> = frames.iter().map(|f| format!("{}x{}", f["width"], f["height"])).collect();
    assert_eq!(sizes.len(), 2, "the fixture changes size: {sizes:?}");
    convert_ok(&input, expect(Some((320, 240)), false));
}

/// A MediaRecorder-like live recording: no duration, no Cues, dropped frames (VFR), video
/// starting 0.25 s after the audio. Timestamps and the A/V offset must survive.
#[test]
fn live_recording_without_duration_keeps_vfr_timestamps_and_av_offset() {
    let dir = tmp();
    let vf = "-vf select='gt(random(1),0.25)',setpts='PTS+0.25/TB' -fps_mode vfr";
    let live = "-enc_time_base:v 1:1000 -c:a libopus -f webm -live 1 -cluster_time_limit 500";
    let args = format!("-nostdin -v error {AV_3S} {vf} {VP8} {live} pipe:1");
    let out = Command::new("ffmpeg").args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let input = dir.path().join("live.webm");
    std::fs::write(&input, &out.stdout).unwrap();
    let in_probe = probe(&input);
    assert!(in_probe["format"]["duration"].is_null(), "no duration in the fixture");
    assert!(!out.stdout.windows(4).any(|w| w == [0x1c, 0x53, 0xbb, 0x6b]), "no Cues");
    let in_pts = video_pts(&input);
    let gaps: BTreeSet<i64> = in_pts.windows(2).map(|w| ((w[1] - w[0]) * 1000.0).round() as i64).collect();
    assert!(gaps.len() > 2, "the fixture is VFR: {gaps:?}");

    let (out_probe, output, run) = convert_ok(&input, expect(Some((320, 240)), true));
    assert!(run.probed()["duration_s"].is_null());
    assert_eq!(video_pts(&output), in_pts, "video timestamps pass through unchanged");
    let start = |p: &Value, kind: &str| num(&streams(p, kind)[0]["start_time"]).unwrap();
    let in_offset = start(&in_probe, "video") - start(&in_probe, "audio").max(0.0);
    let out_offset = start(&out_probe, "video") - start(&out_probe, "audio");
    assert!((in_offset - out_offset).abs() < 0.03, "A/V offset {in_offset} -> {out_offset}");
}

#[test]
fn rotation_display_matrix_is_kept() {
    let dir = tmp();
    let colour = "-color_range tv -colorspace bt709 -color_primaries bt709 -color_trc bt709";
    let src = gen(dir.path(), "src.webm", &format!("{V_1S} {VP8} {colour}"));
    // ffmpeg 5.1 cannot write a rotation into Matroska: swap the 19-byte Colour element for a
    // Projection with ProjectionPoseRoll = 90 (padded with an EBML Void to the same size).
    let mut data = std::fs::read(&src).unwrap();
    let at = data.windows(3).position(|w| w == [0x55, 0xb0, 0x90]).expect("Colour element");
    let mut projection = vec![0x76, 0x70, 0x90, 0x76, 0x75, 0x84];
    projection.extend_from_slice(&90f32.to_be_bytes());
    projection.extend_from_slice(&[0xec, 0x87, 0, 0, 0, 0, 0, 0, 0]);
    data.splice(at..at + 19, projection);
    let input = dir.path().join("in.webm");
    std::fs::write(&input, data).unwrap();
    let in_rotation = rotation(streams(&probe(&input), "video")[0]).expect("fixture has rotation");
    let (out, _, _) = convert_ok(&input, expect(Some((320, 240)), false));
    assert_eq!(rotation(streams(&out, "video")[0]), Some(in_rotation));
}

#[test]
fn vp9_alpha_is_dropped() {
    let dir = tmp();
    let args = format!("{V_1S},format=yuva420p {VP9} -pix_fmt yuva420p");
    let input = gen(dir.path(), "in.webm", &args);
    let in_probe = probe(&input);
    assert_eq!(streams(&in_probe, "video")[0]["tags"]["alpha_mode"], "1", "fixture has alpha");
    convert_ok(&input, expect(Some((320, 240)), false));
}

#[test]
fn subtitles_and_cover_art_are_ignored() {
    let dir = tmp();
    std::fs::write(dir.path().join("s.srt"), "1\n00:00:00,000 --> 00:00:01,000\nhello\n").unwrap();
    ffmpeg(dir.path(), "-f lavfi -i testsrc2=s=64x64 -frames:v 1 cover.png");
    let attach = "-attach cover.png -metadata:s:t mimetype=image/png -metadata:s:t filename=cover.png";
    let args = format!("{AV_2S} -i s.srt -map 0 -map 1 -map 2 {VP8} -c:a libopus -c:s webvtt {attach}");
    let input = gen(dir.path(), "in.mkv", &args);
    let in_probe = probe(&input);
    let all = in_probe["streams"].as_array().unwrap();
    let kinds: Vec<&str> = all.iter().map(|s| s["codec_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["video", "audio", "subtitle", "video"], "fixture streams");
    assert_eq!(all[3]["disposition"]["attached_pic"], 1, "the second video is cover art");
    convert_ok(&input, expect(Some((320, 240)), true));
}

#[test]
fn truncated_webm_finishes_cleanly() {
    let dir = tmp();
    let full = gen(dir.path(), "full.webm", &format!("{AV_3S} {VP9} -c:a libopus"));
    let data = std::fs::read(full).unwrap();
    let input = dir.path().join("in.webm");
    std::fs::write(&input, &data[..data.len() * 6 / 10]).unwrap();
    let output = dir.path().join("out.mp4");
    let run = transcode(&input, &output);
    assert!(run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
    if run.code == 0 {
        check_events(&run);
        let e = Expect { video: Some((320, 240)), audio: true, duration_tolerance: None };
        check_output(&input, &output, &run, &e);
    } else {
        assert_eq!(run.code, EXIT_FAILED);
        assert_eq!(run.last()["type"], "error");
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn non_webm_inputs_are_invalid_media() {
    let dir = tmp();
    let d = dir.path();
    ffmpeg(d, "-f lavfi -i testsrc2=s=64x64 -frames:v 1 image.png");
    std::fs::write(d.join("text.webm"), "this is not a video\n").unwrap();
    gen(d, "clip.mp4", &format!("{AV_2S} -c:v libx264 -c:a aac -t 1"));
    for name in ["image.png", "text.webm", "clip.mp4", "missing.webm"] {
        assert_eq!(convert_err(&d.join(name)).0, "invalid_media", "{name}");
    }
}

#[test]
fn h264_in_matroska_is_unsupported_codec() {
    let dir = tmp();
    let args = format!("{AV_2S} -c:v libx264 -c:a libopus -t 1 -f matroska");
    let (code, message) = convert_err(&gen(dir.path(), "in.mkv", &args));
    assert_eq!(code, "unsupported_codec");
    assert!(message.contains("h264"), "{message}");
}

#[test]
fn webm_without_audio_or_video_is_invalid_media() {
    let dir = tmp();
    std::fs::write(dir.path().join("s.srt"), "1\n00:00:00,000 --> 00:00:01,000\nhello\n").unwrap();
    let (code, message) = convert_err(&gen(dir.path(), "in.webm", "-i s.srt -c:s webvtt"));
    assert_eq!(code, "invalid_media");
    assert!(message.contains("no audio or video"), "{message}");
}

#[test]
fn bad_command_line_exits_with_usage_status() {
    for args in [
        "",
        "--input a.webm",
        "--input a.webm --output b.mp4 --crf 52",
        "--input a.webm --output b.mp4 --preset warp",
        "--input a.webm --output b.mp4 --threads zero",
        "--input a.webm --output b.mp4 --cpu-per-media-second nan",
        "--input a.webm --output b.mp4 --max-width wide",
    ] {
        let run = run_child(&args.split_whitespace().collect::<Vec<_>>());
        assert_eq!(run.code, EXIT_USAGE, "{args:?}");
        assert!(run.events.is_empty(), "no protocol lines for a usage error");
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--preset"));
}

// ---------------------------------------------------------------- probe gate

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

/// Every corpus file against MANIFEST.tsv: ACCEPT must convert and pass the ffprobe checks
/// (duration relaxed for edge/truncated files), REJECT must fail with a stable code, the rest
/// (FAIL or partial, ACCEPT or FAIL, POLICY) must end cleanly either way. Nothing may hang.
#[test]
fn corpus_files_match_manifest() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let Ok(manifest) = std::fs::read_to_string(corpus.join("MANIFEST.tsv")) else {
        eprintln!("no corpus at {}: skipped", corpus.display());
        return;
    };
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file_col, expected_col) = (col("filename"), col("expected"));
    let dir = tmp();
    let mut checked = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, expected) = (fields[file_col], fields[expected_col]);
        if !["webm", "mkv", "weba", "mp4"].iter().any(|e| name.ends_with(&format!(".{e}"))) {
            continue;
        }
        let input = corpus.join(name);
        let output = dir.path().join(format!("{name}.mp4"));
        let run = transcode(&input, &output);
        let context = format!("{name} [{expected}]: {:?}\n{}", run.events, run.stderr);
        let must_fail = expected.starts_with("REJECT") && !expected.starts_with("REJECT or POLICY");
        let may_fail = ["FAIL", "ACCEPT or FAIL", "POLICY", "REJECT or POLICY"].iter().any(|p| expected.starts_with(p));
        if must_fail || run.code != 0 && may_fail {
            assert_eq!(run.code, EXIT_FAILED, "{context}");
            let code = run.last()["code"].as_str().unwrap_or("");
            let known = [
                "invalid_media",
                "unsupported_codec",
                "transcode_error",
                "dimensions_exceeded",
                "pixels_exceeded",
                "duration_exceeded",
                "streams_exceeded",
                "frame_rate_exceeded",
                "output_size_exceeded",
            ];
            assert!(known.contains(&code), "{context}");
            if name == "libwebm__invalid_vp9_bitstream-bug_1416.webm" {
                assert_eq!(code, "dimensions_exceeded", "12336x12336: {context}");
            }
            assert!(!output.exists(), "{context}");
        } else {
            assert!(expected.starts_with("ACCEPT") || may_fail, "unknown row: {context}");
            assert_eq!(run.code, 0, "{context}");
            check_events(&run);
            check_corpus_output(&input, &output, &run, expected, may_fail, &context);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} corpus files checked");
}

fn check_corpus_output(input: &Path, output: &Path, run: &Run, expected: &str, may_fail: bool, context: &str) {
    let (in_probe, out) = (probe(input), probe(output));
    // A track that decodes to nothing is left out, and the log says so.
    for kind in ["video", "audio"] {
        if !streams(&in_probe, kind).is_empty() && streams(&out, kind).is_empty() {
            assert!(expected.contains("edge") || may_fail, "{kind} missing: {context}");
            assert!(run.stderr.contains("leaving out a track"), "{context}");
        }
    }
    let in_video = streams(&in_probe, "video").first().copied();
    let video = in_video.filter(|_| !streams(&out, "video").is_empty()).map(|v| {
        let even = |k: &str| v[k].as_u64().unwrap() & !1;
        (even("width"), even("height"))
    });
    let strict = expected.starts_with("ACCEPT") && !expected.starts_with("ACCEPT or") && !expected.contains("edge");
    let audio = !streams(&out, "audio").is_empty();
    let e = Expect { video, audio, duration_tolerance: strict.then_some(0.1) };
    check_output(input, output, run, &e);
    if let Some(r) = in_video.and_then(rotation) {
        assert_eq!(rotation(streams(&out, "video")[0]), Some(r), "{context}");
    }
}
