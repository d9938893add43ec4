//! Test-only fault injector standing in for `mediaq-transcode`: the first `failures(job)`
//! attempts of a job crash (SIGSEGV, as a decoder bug would), later ones run the real
//! transcoder. `failures(job)` is the sum of the job id's bytes modulo 4, so a test can tell
//! how many retries each job needs. The job id and attempt number come from the job directory
//! name (`<job id>-a<attempt>-XXXXXX`) in `--output`.

use std::os::unix::process::CommandExt;

/// How many attempts of this job crash.
pub fn failures(job_id: &str) -> u32 {
    job_id.bytes().map(u32::from).sum::<u32>() % 4
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let output = args.iter().position(|a| a == "--output").and_then(|i| args.get(i + 1)).expect("--output");
    let dir = std::path::Path::new(output).parent().and_then(|d| d.file_name()).expect("job directory");
    let dir = dir.to_string_lossy();
    // Not a job directory (the worker's start-up self-test): just run the real transcoder.
    let job = dir.get(..36).zip(dir.get(36..)).and_then(|(job_id, rest)| {
        let attempt: u32 = rest.strip_prefix("-a")?.split('-').next()?.parse().ok()?;
        Some((job_id, attempt))
    });
    if job.is_some_and(|(job_id, attempt)| attempt <= failures(job_id)) {
        // SAFETY: restoring the default action (Rust's runtime handles SIGSEGV for stack
        // overflows) and raising the signal at ourselves.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        }
    }
    let real = std::env::current_exe().unwrap().with_file_name("mediaq-transcode");
    let err = std::process::Command::new(real).args(&args[1..]).exec();
    eprintln!("mediaq-flaky-transcode: exec failed: {err}");
    std::process::exit(70);
}
