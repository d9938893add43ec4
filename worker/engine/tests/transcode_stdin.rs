//! The child reading a live upload from its standard input (`--input -`): what it can tell from
//! the bytes so far, it tells while the pipe is still open.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A recording whose only track names a codec we do not convert fails from its header, while
/// the upload is still arriving: not after the recorder stops (probing would wait for more).
#[test]
fn an_unsupported_codec_fails_while_the_upload_is_still_open() {
    let dir = tmp();
    let input = gen_live(dir.path(), "in.webm", &format!("{V_1S} {VP8}"));
    patch(&input, b"V_VP8", b"V_QQQ");
    let bytes = std::fs::read(&input).unwrap();
    let output = dir.path().join("out.mp4");
    let mut child = Command::new(BIN)
        .args(["--input", "-", "--output", output.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    // Half the recording, and the pipe stays open (the recorder is still going).
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the child still waits for bytes after {:?}", start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(status.code(), Some(EXIT_FAILED), "{stdout}");
    assert_eq!(last["type"], "error", "{stdout}");
    assert_eq!(last["code"], "unsupported_codec", "{stdout}");
    assert!(!output.exists(), "no output");
}
