//! The child's seccomp allowlist covers every system call a conversion makes: the transcoder
//! runs under strace (an independent observer) on generated fixtures of each accepted codec and
//! on every corpus file (good, damaged and hostile alike); no call may come back `ENOSYS` from
//! the filter except `clone3` (refused on purpose so that glibc falls back to `clone`, whose
//! flags the kill list can read). A call missing from the list would fail conversions at random
//! in production; this finds it first.

mod common;

use std::{collections::BTreeSet, path::Path, process::Command};

use common::*;

/// Runs the transcoder under `strace -f` and returns the names of the calls that got ENOSYS.
fn enosys_calls(input: &Path, dir: &Path) -> BTreeSet<String> {
    let log = dir.join("strace.log");
    let output = dir.join("out.mp4");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .arg(BIN)
        .args(["--input"])
        .arg(input)
        .args(["--output"])
        .arg(&output)
        .args(["--preset", "ultrafast"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("strace runs (apt-get install strace)");
    assert!(status.code().is_some(), "{}: the transcoder was killed: {status}", input.display());
    let text = std::fs::read_to_string(&log).unwrap();
    text.lines()
        .filter(|l| l.contains("= -1 ENOSYS"))
        .filter_map(|l| {
            // "PID name(args...) = -1 ENOSYS (...)", or "PID <... name resumed>) = -1 ENOSYS (...)"
            // when another thread's call interleaved.
            let mut words = l.split_whitespace().skip(1);
            let call = match words.next()? {
                "<..." => words.next()?,
                call => call,
            };
            Some(call.split('(').next()?.to_owned())
        })
        .collect()
}

#[test]
fn conversions_make_no_call_outside_the_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![
        gen(dir.path(), "vp8.webm", &format!("{AV_2S} {VP8} -c:a libvorbis -shortest")),
        gen(dir.path(), "vp9.webm", &format!("{AV_2S} {VP9} -c:a libopus -shortest")),
        gen(dir.path(), "audio.webm", &format!("{A_2S} -c:a libopus")),
        // Chrome's H.264 recordings (remuxed, not re-encoded) and its PCM audio.
        gen(dir.path(), "h264.mkv", &format!("{AV_2S} -c:v libx264 -preset ultrafast -c:a pcm_s16le -shortest")),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if corpus.join("MANIFEST.tsv").exists() {
        let mut files: Vec<_> = std::fs::read_dir(corpus)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e != "tsv" && e != "md"))
            .collect();
        files.sort();
        inputs.extend(files);
    }
    let mut failures = Vec::new();
    for input in &inputs {
        let mut calls = enosys_calls(input, dir.path());
        calls.remove("clone3");
        if !calls.is_empty() {
            failures.push(format!("{}: {calls:?}", input.display()));
        }
    }
    assert!(failures.is_empty(), "calls refused by the allowlist:\n{}", failures.join("\n"));
    assert!(inputs.len() >= 3);
}
