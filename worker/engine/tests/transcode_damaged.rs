//! Item 7 of issue 31: a damaged recording is not a success. A recording's first kilobytes
//! followed by noise fail `damaged_input` (saying how much was readable); a recording merely cut
//! short (a browser closed mid-recording) still converts what it holds.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;

/// 10 s of 640x480 VP9 + Opus (about 1.2 MB), a keyframe a second (fragments of 1 s in MP4, as
/// the recorders write them): a recording large enough for its noise to matter.
const REC_10S: &str = "-f lavfi -i testsrc2=s=640x480:r=30:d=10 -f lavfi -i sine=f=440:d=10 \
    -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 1M -g 30 -c:a libopus";
const FRAGMENTED: &str = "-movflags +frag_keyframe+empty_moov+default_base_moof -f mp4";

/// The first `keep` bytes of `source` followed by `noise` bytes from /dev/urandom.
fn with_noise(source: &Path, keep: usize, noise: usize, name: &str) -> PathBuf {
    let mut data = std::fs::read(source).unwrap();
    data.truncate(keep);
    let mut random = vec![0u8; noise];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut random).unwrap();
    data.extend(random);
    let path = source.with_file_name(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn cut(source: &Path, share: f64, name: &str) -> PathBuf {
    let data = std::fs::read(source).unwrap();
    let path = source.with_file_name(name);
    std::fs::write(&path, &data[..(data.len() as f64 * share) as usize]).unwrap();
    path
}

fn assert_damaged(input: &Path) {
    let (code, message) = convert_err(input);
    assert_eq!(code, "damaged_input", "{}: {message}", input.display());
    assert!(message.contains('%') && message.contains("bytes"), "says how much was readable: {message}");
}

#[test]
fn a_recording_head_followed_by_noise_is_damaged() {
    let dir = tmp();
    let webm = gen(dir.path(), "rec.webm", REC_10S);
    // The case (3 KB + 200 KB) and the notes' (4 KiB + 100 KB).
    assert_damaged(&with_noise(&webm, 3000, 200_000, "a.webm"));
    assert_damaged(&with_noise(&webm, 4096, 100_000, "b.webm"));
    // A fragmented MP4's first fragment header promises samples that are noise.
    let mp4 = gen(dir.path(), "rec.mp4", &format!("{REC_10S} {FRAGMENTED}"));
    assert_damaged(&with_noise(&mp4, 3000, 200_000, "c.mp4"));
}

#[test]
fn a_recording_cut_short_still_converts_what_it_holds() {
    let dir = tmp();
    let webm = gen(dir.path(), "rec.webm", REC_10S);
    let mp4 = gen(dir.path(), "rec.mp4", &format!("{REC_10S} {FRAGMENTED}"));
    for input in [cut(&webm, 0.4, "cut.webm"), cut(&mp4, 0.4, "cut.mp4")] {
        let output = input.with_extension("out.mp4");
        let run = transcode(&input, &output);
        assert_eq!(run.code, 0, "{}: {:?}\n{}", input.display(), run.events, run.stderr);
        check_events(&run);
        let e = Expect { video: Some((640, 480)), audio: true, duration_tolerance: None };
        let out = check_output(&input, &output, &run, &e);
        let duration = num(&out["format"]["duration"]).unwrap();
        assert!((3.0..=4.6).contains(&duration), "about 40 % of 10 s: {duration}");
    }
}

/// Noise in the middle of a long recording (a damaged stretch) costs that stretch, not the job,
/// as long as most of the file reads.
#[test]
fn a_damaged_stretch_inside_a_readable_recording_converts() {
    let dir = tmp();
    let webm = gen(dir.path(), "rec.webm", REC_10S);
    let mut data = std::fs::read(&webm).unwrap();
    let at = data.len() / 2;
    let mut random = vec![0u8; data.len() / 10];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut random).unwrap();
    data[at..at + random.len()].copy_from_slice(&random);
    let input = dir.path().join("stretch.webm");
    std::fs::write(&input, data).unwrap();
    let output = dir.path().join("stretch.mp4");
    let run = transcode(&input, &output);
    assert_eq!(run.code, 0, "{:?}\n{}", run.events, run.stderr);
}
