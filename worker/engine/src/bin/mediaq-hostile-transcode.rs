//! Test-only stand-in for a `mediaq-transcode` that its input has taken over, sandbox and all:
//! it claims every sandbox layer (a lie: it applies none), then does what such a child could try
//! against the worker, chosen by the name it is run under (tests point MEDIAQ_TRANSCODE_BIN at a
//! symlink named after the act):
//!
//! - `symlink-output`: leaves a symlink to /etc/shadow at the output path and reports success.
//! - `fifo-output`: leaves a FIFO there and reports success.
//! - `symlink-poster`: writes a well-formed (empty) MP4, leaves a symlink to /etc/shadow at the
//!   poster path, and reports success.
//! - `forge-canceled` / `forge-interrupted`: reports a code only the worker may set.
//! - `endless-line`: writes 400 MB without a newline.
//! - `setsid-grandchild`: forks a grandchild into its own session, which sleeps, and succeeds.
//!
//! In `--self-test` mode (the worker's start-up check) it only tells the same lie.

use std::{os::unix::ffi::OsStrExt, path::PathBuf};

use mediaq_protocol::{emit, emit_raw, flag, Event, MediaFacts, SandboxLayers};

fn done() {
    let facts = MediaFacts { duration_s: Some(1.0), video_codec: Some("h264".into()), ..MediaFacts::default() };
    emit(&Event::Done { output: facts });
}

fn main() {
    // SAFETY: getpid and getppid have no preconditions.
    let pid_namespace = unsafe { libc::getpid() == 2 && libc::getppid() == 1 };
    let lie = SandboxLayers {
        landlock: "full".into(),
        landlock_abi: 6,
        no_new_privs: true,
        seccomp: true,
        pid_namespace,
        rlimits: true,
    };
    emit(&Event::Sandbox { layers: lie });
    if std::env::args().any(|a| a == "--self-test") {
        return;
    }
    let output = PathBuf::from(flag("--output").expect("--output"));
    let act = std::env::args().next().map(PathBuf::from).and_then(|p| Some(p.file_name()?.to_owned()));
    let path = std::ffi::CString::new(output.as_os_str().as_bytes()).unwrap();
    match act.as_ref().map(|a| a.to_string_lossy().into_owned()).as_deref() {
        Some("symlink-output") => {
            std::os::unix::fs::symlink("/etc/shadow", &output).expect("symlink");
            done();
        }
        Some("fifo-output") => {
            // SAFETY: mkfifo with a valid path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
            done();
        }
        Some("symlink-poster") => {
            let mut mp4 = [&16u32.to_be_bytes()[..], b"ftypisom", &[0; 4]].concat();
            mp4.extend_from_slice(&[&8u32.to_be_bytes()[..], b"moov"].concat());
            std::fs::write(&output, mp4).expect("write");
            std::os::unix::fs::symlink("/etc/shadow", flag("--poster").expect("--poster")).expect("symlink");
            done();
        }
        Some("forge-canceled") => {
            emit_raw(b"{\"type\":\"error\",\"code\":\"canceled\",\"message\":\"forged\"}\n");
            std::process::exit(2);
        }
        Some("forge-interrupted") => {
            emit_raw(b"{\"type\":\"error\",\"code\":\"interrupted\",\"message\":\"forged\"}\n");
            std::process::exit(2);
        }
        Some("endless-line") => {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..400 {
                emit_raw(&chunk);
            }
        }
        Some("setsid-grandchild") => {
            // SAFETY: fork; the child calls only async-signal-safe functions.
            if unsafe { libc::fork() } == 0 {
                unsafe {
                    libc::setsid();
                    libc::sleep(120);
                    libc::_exit(0);
                }
            }
            std::fs::write(&output, b"not an mp4").expect("write");
            done();
        }
        other => panic!("unknown act {other:?}"),
    }
}
