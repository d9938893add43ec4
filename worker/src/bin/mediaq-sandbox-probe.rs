//! Test-only stand-in for `mediaq-transcode`: takes the same command line, applies the same
//! sandbox, then attempts what a hostile file would make libav attempt (`--probe ACTION`).
//! The sandbox tests spawn it through the worker's production spawn path.
//!
//! Reports on stdout like the transcoder: a `sandbox` event, then `error` events whose code is
//! `denied` (the sandbox refused) or `allowed` (it did not), or nothing when the sandbox kills it.

use std::{io::Write, path::PathBuf, time::Duration};

use mediaq_worker::{protocol::Event, sandbox};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn say(event: Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(&event).unwrap());
    let _ = out.flush();
}

fn verdict(what: &str, result: std::io::Result<()>) {
    let (code, message) = match result {
        Ok(()) => ("allowed", format!("{what}: allowed")),
        Err(e) => ("denied", format!("{what}: {e}")),
    };
    say(Event::Error { code: code.into(), message });
}

fn main() {
    let input = PathBuf::from(arg("--input").expect("--input"));
    let output = PathBuf::from(arg("--output").expect("--output"));
    let job_dir = output.parent().unwrap().to_owned();
    let layers = sandbox::apply(&input, &job_dir);
    say(Event::Sandbox { layers });
    match arg("--probe").as_deref().unwrap_or("") {
        "read-passwd" => verdict("open /etc/passwd", std::fs::read("/etc/passwd").map(drop)),
        "read-input" => verdict("read the input", std::fs::read(&input).map(drop)),
        "write-outside" => {
            let path = std::env::temp_dir().join(format!("mediaq-probe-{}", std::process::id()));
            verdict("write outside the job directory", std::fs::write(path, b"x"));
        }
        "write-inside" => verdict("write in the job directory", std::fs::write(&output, b"x")),
        "socket" => {
            // SAFETY: a plain socket(2) call; the sandbox should kill the process here.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            verdict("socket", if fd >= 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
        "exec" => {
            let err = std::os::unix::process::CommandExt::exec(&mut std::process::Command::new("/bin/true"));
            verdict("execve", Err(err));
        }
        "sleep" => {
            // Stays alive (reporting progress) so the test can inspect /proc/<pid>.
            for _ in 0..100 {
                say(Event::Progress { progress: 0.0 });
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
                    say(Event::Progress { progress: (x % 2) as f64 * 0.0 });
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
        other => say(Event::Error { code: "usage".into(), message: format!("unknown probe {other:?}") }),
    }
    std::process::exit(2);
}
