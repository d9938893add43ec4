//! Integration tests of the `mediaq-transcode` child binary.
//!
//! Fixtures are generated at test time with the ffmpeg CLI into temporary directories; ffprobe is
//! the independent oracle for the outputs. When the shared corpus (`../../../shared/corpus`) exists,
//! every file in it is also run and checked against `MANIFEST.tsv`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

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
fn non_media_inputs_are_invalid_media() {
    let dir = tmp();
    let d = dir.path();
    ffmpeg(d, "-f lavfi -i testsrc2=s=64x64 -frames:v 1 image.png");
    std::fs::write(d.join("text.webm"), "this is not a video\n").unwrap();
    // MP3 and Ogg are real media, but neither Matroska nor MP4.
    gen(d, "clip.mp3", &format!("{A_2S} -c:a libmp3lame -t 1"));
    gen(d, "clip.ogg", &format!("{A_2S} -c:a libopus -t 1"));
    for name in ["image.png", "text.webm", "clip.mp3", "clip.ogg", "missing.webm"] {
        assert_eq!(convert_err(&d.join(name)).0, "invalid_media", "{name}");
    }
}

/// The accepted codecs are a closed list: H.264 joined it (Chrome's avc1 recordings, remuxed;
/// tests/tests/formats.rs), MPEG-4 Part 2 video in Matroska did not.
#[test]
fn mpeg4_in_matroska_is_unsupported_codec() {
    let dir = tmp();
    let args = format!("{AV_2S} -c:v mpeg4 -c:a libopus -t 1 -f matroska");
    let (code, message) = convert_err(&gen(dir.path(), "in.mkv", &args));
    assert_eq!(code, "unsupported_codec");
    assert!(message.contains("mpeg4"), "{message}");
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

/// Every corpus file against MANIFEST.tsv: ACCEPT must convert and pass the ffprobe checks
/// (duration relaxed for edge/truncated files), REJECT must fail with a stable code, the rest
/// (FAIL or partial, ACCEPT or FAIL, POLICY) must end cleanly either way. Nothing may hang.
#[test]
fn corpus_files_match_manifest() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
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
        // MP4 joined the accepted containers (issue 31): the corpus's "not WebM" MP4 converts.
        let expected = if name.ends_with(".mp4") && expected == "REJECT (not WebM)" { "ACCEPT" } else { expected };
        let must_fail = expected.starts_with("REJECT") && !expected.starts_with("REJECT or POLICY");
        let may_fail = ["FAIL", "ACCEPT or FAIL", "POLICY", "REJECT or POLICY"].iter().any(|p| expected.starts_with(p));
        if must_fail || run.code != 0 && may_fail {
            assert_eq!(run.code, EXIT_FAILED, "{context}");
            let code = run.last()["code"].as_str().unwrap_or("");
            let known = [
                "invalid_media",
                "unsupported_codec",
                "damaged_input",
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
