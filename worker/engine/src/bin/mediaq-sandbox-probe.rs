//! Test-only stand-in for `mediaq-transcode`: takes the same command line, applies the same
//! sandbox, then acts as a child taken over by a hostile file would (`--probe ACTION`). The
//! sandbox tests spawn it through the worker's production spawn path.
//!
//! Reports on stdout like the transcoder: a `sandbox` event, then an `error` event whose message
//! starts with `denied:` (the sandbox refused) or `allowed:` (it did not), or nothing when the
//! sandbox kills it. Some actions break the protocol on purpose (forged codes, endless lines).

use std::{path::PathBuf, time::Duration};

use mediaq_engine::sandbox;
use mediaq_protocol::{emit, emit_raw, flag, ChildFailureCode, Event};

fn verdict(what: &str, result: std::io::Result<()>) {
    let message = match result {
        Ok(()) => format!("allowed: {what}"),
        Err(e) => format!("denied: {what}: {e}"),
    };
    emit(&Event::Error { code: ChildFailureCode::TRANSCODE_ERROR, message });
}

fn os(r: libc::c_long) -> std::io::Result<()> {
    if r >= 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cpath(path: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

fn main() {
    let input = PathBuf::from(flag("--input").expect("--input"));
    let output = PathBuf::from(flag("--output").expect("--output"));
    let job_dir = output.parent().unwrap().to_owned();
    let readable = (input.as_os_str() != "-").then_some(input.as_path());
    let layers = sandbox::apply(readable, &job_dir);
    emit(&Event::Sandbox { layers });
    match flag("--probe").as_deref().unwrap_or("") {
        "read-passwd" => verdict("open /etc/passwd", std::fs::read("/etc/passwd").map(drop)),
        "read-input" => verdict("read the input", std::fs::read(&input).map(drop)),
        "read-stdin" => {
            // What the transcoder does with `--input -`: read fd 0 to its end.
            let mut bytes = Vec::new();
            let read = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes);
            verdict(&format!("read {} bytes from stdin", bytes.len()), read.map(drop));
        }
        "write-outside" => {
            let path = std::env::temp_dir().join(format!("mediaq-probe-{}", std::process::id()));
            verdict("write outside the job directory", std::fs::write(path, b"x"));
        }
        "write-inside" => verdict("write in the job directory", std::fs::write(&output, b"x")),
        "socket" => {
            // SAFETY: a plain socket(2) call; the sandbox should kill the process here.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            verdict("socket", os(fd.into()));
        }
        "x32-socket" => {
            // The x32 ABI's number for socket(2): a denylist keyed on x86_64 numbers misses it.
            // SAFETY: a raw system call with integer arguments.
            let r = unsafe { libc::syscall(0x4000_0000 | libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
            verdict("x32 socket", os(r));
        }
        "exec" => {
            let err = std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/true"));
            verdict("execve", Err(err));
        }
        "symlink-output" => {
            let target = cpath(std::path::Path::new("/etc/shadow"));
            // SAFETY: symlink(2) with valid C strings.
            verdict(
                "symlink at the output",
                os(unsafe { libc::symlink(target.as_ptr(), cpath(&output).as_ptr()) }.into()),
            );
        }
        "fifo-output" => {
            // SAFETY: mkfifo(3) with a valid C string.
            verdict("FIFO at the output", os(unsafe { libc::mkfifo(cpath(&output).as_ptr(), 0o600) }.into()));
        }
        "hardlink-output" => {
            // SAFETY: link(2) with valid C strings.
            verdict(
                "hard link at the output",
                os(unsafe { libc::link(cpath(&input).as_ptr(), cpath(&output).as_ptr()) }.into()),
            );
        }
        "fork-setsid" => {
            // What escaped before: a grandchild in its own session outlives the process-group kill.
            // SAFETY: fork(2); the child only calls async-signal-safe functions.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    libc::setsid();
                    libc::sleep(600);
                    libc::_exit(0);
                }
            }
            verdict("fork", os(pid.into()));
        }
        "clone3" => {
            // SAFETY: clone3 with a null argument: fails before doing anything when filtered.
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            verdict("clone3", os(r));
        }
        "thread" => {
            let joined = std::thread::spawn(|| 42).join().map_err(|_| std::io::Error::other("panicked"));
            verdict("a thread", joined.map(drop));
        }
        "kill-all" => {
            // SAFETY: kill(2); the sandbox should stop it (or the kernel refuse it).
            verdict("kill(-1, SIGKILL)", os(unsafe { libc::kill(-1, libc::SIGKILL) }.into()));
        }
        "kill-self" => {
            // SAFETY: signal 0 to itself only checks that it may.
            verdict("kill(self, 0)", os(unsafe { libc::kill(libc::getpid(), 0) }.into()));
        }
        "forge-canceled" => emit_raw(b"{\"type\":\"error\",\"code\":\"canceled\",\"message\":\"forged\"}\n"),
        "forge-interrupted" => emit_raw(b"{\"type\":\"error\",\"code\":\"interrupted\",\"message\":\"forged\"}\n"),
        "endless-line" => {
            // 400 MB without a newline, as fast as the pipe takes it.
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..400 {
                emit_raw(&chunk);
            }
        }
        "sleep" => {
            // Stays alive (reporting progress) so the test can inspect /proc/<pid>.
            for _ in 0..100 {
                emit(&Event::Progress { progress: 0.0 });
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        "hang" => std::thread::sleep(Duration::from_secs(600)),
        "busy" => {
            let mut x: u64 = 0;
            let mut last = std::time::Instant::now();
            loop {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                if last.elapsed() > Duration::from_millis(200) {
                    emit(&Event::Progress { progress: (x % 2) as f64 * 0.0 });
                    last = std::time::Instant::now();
                }
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
            }
        }
        other => verdict(&format!("unknown probe {other:?}"), Err(std::io::Error::other("usage"))),
    }
    std::process::exit(2);
}
