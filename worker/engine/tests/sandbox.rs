//! The transcoder's sandbox, layer by layer, through the production spawn path
//! (`attempt::child_spec` -> `child::run`), with a probe binary standing in for libav.

use std::{
    ffi::OsString,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use mediaq_worker::{
    child::{self, ChildInput, Outcome, Report, Watch},
    child_spec,
    config::WorkerConfig,
    feed::FeedEnd,
    jobdir::JobDir,
    selfcheck::{self, SandboxPolicy},
    spawn::{self, Namespaces},
};

const PROBE: &str = env!("CARGO_BIN_EXE_mediaq-sandbox-probe");

fn config() -> &'static WorkerConfig {
    static CONFIG: OnceLock<WorkerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        // Only DATABASE_URL is required, and these tests never connect. Set once, before any reader.
        std::env::set_var("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused");
        mediaq_shared::config::from_env::<WorkerConfig>().expect("default worker config")
    })
}

/// The policy of the start-up self-check, as the worker would hold each attempt to it.
fn policy() -> SandboxPolicy {
    static POLICY: OnceLock<SandboxPolicy> = OnceLock::new();
    *POLICY.get_or_init(|| {
        // Called from multi-threaded test runtimes: the self-check blocks in place.
        let work = work_dir();
        let mut config = config().clone();
        config.transcode_bin = env!("CARGO_BIN_EXE_mediaq-transcode").into();
        selfcheck::run(&config, work.path()).expect("self-check").policy
    })
}

fn namespaces() -> Namespaces {
    policy().namespaces
}

fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // The sandbox user must be able to traverse to its job directory.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

struct Probe {
    _work: tempfile::TempDir,
    dir: JobDir,
    spec: spawn::ChildSpec,
}

fn probe(action: &str) -> Probe {
    let config = config();
    let work = work_dir();
    let owner = if spawn::is_root() { config.sandbox.user } else { None };
    let dir = JobDir::create(work.path(), "probe-", owner).unwrap();
    let stored = work.path().join("stored-input.webm");
    std::fs::write(&stored, b"\x1a\x45\xdf\xa3 not really a video").unwrap();
    let input = dir.input(&stored).unwrap();
    let mut spec = child_spec::child_spec(config, namespaces(), &input, &dir.path().join("output.mp4"));
    spec.bin = PathBuf::from(PROBE);
    spec.args.extend([OsString::from("--probe"), OsString::from(action)]);
    Probe { _work: work, dir, spec }
}

const WATCH: Watch = Watch {
    timeout: Duration::from_secs(30),
    per_media_second: 10.0,
    stall: Duration::from_secs(20),
    idle_gap: Duration::from_secs(30),
    live_max: Duration::from_secs(60),
};

async fn run(p: &Probe, watch: Watch) -> Report {
    child::run(&p.spec, &policy(), watch, ChildInput::Named, |_| Box::pin(async {}), std::future::pending::<Outcome>())
        .await
        .expect("spawn probe")
}

/// The probe's verdict: its message after `denied: ` (or a panic if it was allowed or died).
fn denied(report: &Report) -> String {
    match &report.outcome {
        Outcome::Failed { message, .. } if message.starts_with("denied: ") => message["denied: ".len()..].to_owned(),
        other => panic!("expected the sandbox to deny it, got {other:?}"),
    }
}

fn allowed(report: &Report) {
    assert!(
        matches!(&report.outcome, Outcome::Failed { message, .. } if message.starts_with("allowed: ")),
        "expected it to be allowed, got {:?}",
        report.outcome
    );
}

fn killed_by_seccomp(report: &Report, what: &str) {
    assert!(matches!(report.outcome, Outcome::SandboxViolation), "{what}: {:?}", report.outcome);
    assert_eq!(report.exit, format!("signal {}", libc::SIGSYS), "{what}");
    assert_eq!(report.outcome.error().unwrap().0.as_str(), "sandbox_violation", "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_denies_reading_outside_the_input() {
    let p = probe("read-passwd");
    let message = denied(&run(&p, WATCH).await);
    assert!(message.contains("open /etc/passwd"), "{message}");
    // The input itself stays readable.
    allowed(&run(&probe("read-input"), WATCH).await);
}

/// A probe whose input is a pipe on its stdin (`--input -`), as for a live upload.
fn stdin_probe(action: &str) -> Probe {
    let config = config();
    let work = work_dir();
    let owner = if spawn::is_root() { config.sandbox.user } else { None };
    let dir = JobDir::create(work.path(), "probe-", owner).unwrap();
    let output = dir.path().join("output.mp4");
    let mut spec = child_spec::child_spec(config, namespaces(), std::path::Path::new("-"), &output);
    spec.bin = PathBuf::from(PROBE);
    spec.args.extend([OsString::from("--probe"), OsString::from(action)]);
    Probe { _work: work, dir, spec }
}

/// Runs a stdin probe, writing `bytes` into its pipe and then closing it.
async fn run_fed(p: &Probe, bytes: Vec<u8>) -> Report {
    use tokio::io::AsyncWriteExt;
    // The supervisor drives this feeder as it drives a live upload's.
    let feeder: child::Feeder<'static> = Box::new(move |mut pipe, _clock| {
        Box::pin(async move {
            // The probe may refuse to read (a failed write is then no error here).
            match pipe.write_all(&bytes).await {
                Ok(()) => FeedEnd::Complete,
                Err(_) => FeedEnd::ChildGone,
            }
        })
    });
    child::run(
        &p.spec,
        &policy(),
        WATCH,
        ChildInput::Fed(feeder),
        |_| Box::pin(async {}),
        std::future::pending::<Outcome>(),
    )
    .await
    .expect("spawn probe")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fed_pipe_is_read_through_the_sandbox_and_no_file_is_readable() {
    let report = run_fed(&stdin_probe("read-stdin"), vec![7u8; 3 << 20]).await;
    match &report.outcome {
        Outcome::Failed { message, .. } => assert_eq!(message, "allowed: read 3145728 bytes from stdin"),
        other => panic!("expected the probe to read its stdin, got {other:?}"),
    }
    // With its input on stdin the child has no input file: nothing outside the system is readable.
    let message = denied(&run_fed(&stdin_probe("read-passwd"), Vec::new()).await);
    assert!(message.contains("open /etc/passwd"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_denies_writing_outside_the_job_directory() {
    let p = probe("write-outside");
    denied(&run(&p, WATCH).await);
    let p = probe("write-inside");
    allowed(&run(&p, WATCH).await);
    assert!(p.dir.path().join("output.mp4").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn seccomp_kills_on_socket_and_exec() {
    for action in ["socket", "exec"] {
        killed_by_seccomp(&run(&probe(action), WATCH).await, action);
    }
}

/// Finds the probe's pid by its unique job directory on the command line.
fn find_pid(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (String::from_utf8_lossy(&cmdline).contains(marker) && cmdline.starts_with(PROBE.as_bytes())).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn proc_shows_no_new_privs_seccomp_limits_and_identity() {
    let p = probe("sleep");
    let marker = p.dir.path().to_str().unwrap().to_owned();
    let running = tokio::spawn({
        let spec = p.spec.clone();
        async move {
            child::run(
                &spec,
                &policy(),
                WATCH,
                ChildInput::Named,
                |_| Box::pin(async {}),
                std::future::pending::<Outcome>(),
            )
            .await
            .unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = find_pid(&marker) {
            break pid;
        }
        assert!(Instant::now() < deadline, "probe process not found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Give the probe time to install its filters (it reports progress once they are on).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    assert!(field("NoNewPrivs:").ends_with('1'), "{}", field("NoNewPrivs:"));
    assert!(field("Seccomp:").ends_with('2'), "{}", field("Seccomp:"));
    if spawn::is_root() {
        let (uid, _) = config().sandbox.user.unwrap();
        assert!(field("Uid:").split_whitespace().skip(1).all(|u| u == uid.to_string()), "{}", field("Uid:"));
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| limits.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    let sandbox = &config().sandbox;
    assert!(limit("Max address space").contains(&sandbox.memory_bytes.to_string()), "{limits}");
    assert!(
        limit("Max file size").contains(&(config().transcode.max_output_bytes + (1 << 20)).to_string()),
        "{limits}"
    );
    assert!(limit("Max open files").split_whitespace().any(|w| w == "64"), "{limits}");
    assert!(limit("Max core file size").split_whitespace().any(|w| w == "0"), "{limits}");
    assert!(!limit("Max cpu time").contains("unlimited"), "{limits}");
    assert!(!limit("Max processes").contains("unlimited"), "{limits}");
    for (ns, wanted) in [("net", namespaces().net), ("pid", namespaces().pid)] {
        if wanted {
            let own = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let child_ns = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            assert_ne!(own, child_ns, "the child has its own {ns} namespace");
        }
    }
    if namespaces().pid {
        // PID 2 of its namespace, under the namespace's init.
        assert!(field("NSpid:").ends_with("\t2"), "{}", field("NSpid:"));
    }
    running.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_hits_its_limit() {
    let mut p = probe("memory");
    p.spec.limits.address_space = 512 << 20;
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::ResourceLimit(what) if what == "memory"), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0.as_str(), "resource_limit");
    assert!(report.usage.peak_rss_bytes < 600 << 20, "{:?}", report.usage);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_loop_ends_by_cpu_limit_or_timeout() {
    let mut p = probe("busy");
    p.spec.limits.cpu_seconds = 1;
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::ResourceLimit(what) if what == "CPU time"), "{:?}", report.outcome);
    // The kernel limits exact CPU time; rusage's user time is sampled and may read lower on a
    // busy machine, so this only checks that the probe did burn CPU (not a wall-clock stop).
    assert!(report.usage.user_cpu >= Duration::from_millis(500), "{:?}", report.usage);

    let p = probe("busy");
    let started = Instant::now();
    let report = run(&p, Watch { timeout: Duration::from_secs(2), ..WATCH }).await;
    assert!(matches!(report.outcome, Outcome::TimedOut), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0.as_str(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_child_is_stalled() {
    let p = probe("hang");
    let started = Instant::now();
    let report = run(&p, Watch { stall: Duration::from_secs(2), ..WATCH }).await;
    assert!(matches!(report.outcome, Outcome::Stalled), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0.as_str(), "stalled");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Reaped: no zombie left with its pid.
    let marker = p.dir.path().to_str().unwrap().to_owned();
    assert!(find_pid(&marker).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_self_check_reports_every_layer() {
    let mut config = config().clone();
    config.transcode_bin = env!("CARGO_BIN_EXE_mediaq-transcode").into();
    let work = work_dir();
    let checked = selfcheck::run(&config, work.path()).expect("strict self-check passes here");
    let report = checked.report;
    assert!(report.child.seccomp && report.child.no_new_privs && report.child.rlimits);
    assert_eq!(report.child.pid_namespace, checked.policy.namespaces.pid);
    assert!(matches!(report.child.landlock.as_str(), "full" | "partial"), "{report:?}");
    assert!(report.child.landlock_abi >= 1);
    assert!(report.missing_required().is_empty());
    // The self-test's scratch directory is gone.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_output_path_takes_only_regular_files() {
    for action in ["symlink-output", "fifo-output", "hardlink-output"] {
        let p = probe(action);
        killed_by_seccomp(&run(&p, WATCH).await, action);
        let left = std::fs::symlink_metadata(p.dir.path().join("output.mp4"));
        assert!(left.is_err(), "{action}: something was left at the output path: {left:?}");
    }
}

/// Every process whose command line names this probe's job directory.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline).contains(marker).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_process_outlives_the_child() {
    // What escaped before: fork, then setsid in the grandchild, out of reach of the group kill.
    let p = probe("fork-setsid");
    let marker = p.dir.path().to_str().unwrap().to_owned();
    killed_by_seccomp(&run(&p, WATCH).await, "fork");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(processes_with(&marker), Vec::<u32>::new(), "a process of the probe is still alive");

    // Threads are what libav needs, and they work; clone3 (whose flags seccomp cannot read)
    // fails softly so that glibc falls back to clone, which the filter inspects.
    allowed(&run(&probe("thread"), WATCH).await);
    let message = denied(&run(&probe("clone3"), WATCH).await);
    assert!(message.contains("os error 38"), "ENOSYS expected: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn x32_system_calls_do_not_slip_past_the_filter() {
    let message = denied(&run(&probe("x32-socket"), WATCH).await);
    assert!(message.contains("os error 38"), "ENOSYS expected: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_reach_only_the_child_itself() {
    // A process of the sandbox user (or of ours, when not root) that kill(-1) would reach.
    let mut canary = std::process::Command::new("sleep");
    canary.arg("30");
    if spawn::is_root() {
        let (uid, gid) = config().sandbox.user.unwrap();
        std::os::unix::process::CommandExt::uid(&mut canary, uid);
        std::os::unix::process::CommandExt::gid(&mut canary, gid);
    }
    let mut canary = canary.spawn().unwrap();
    killed_by_seccomp(&run(&probe("kill-all"), WATCH).await, "kill(-1)");
    assert!(canary.try_wait().unwrap().is_none(), "the canary was killed");
    canary.kill().unwrap();
    canary.wait().unwrap();
    allowed(&run(&probe("kill-self"), WATCH).await);
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_childs_words_are_held_to_the_protocol() {
    // Codes only the worker may set: before, `canceled` left the job processing for ever and
    // `interrupted` requeued it without spending an attempt.
    for action in ["forge-canceled", "forge-interrupted"] {
        let report = run(&probe(action), WATCH).await;
        assert!(matches!(report.outcome, Outcome::ProtocolViolation(_)), "{action}: {:?}", report.outcome);
        assert_eq!(report.outcome.error().unwrap().0.as_str(), "transcode_error", "{action}");
    }
    // 400 MB without a newline: stopped after the line bound, without holding it in memory.
    let before = peak_rss_kib();
    let started = Instant::now();
    let report = run(&probe("endless-line"), WATCH).await;
    assert!(matches!(&report.outcome, Outcome::ProtocolViolation(m) if m.contains("longer")), "{:?}", report.outcome);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 32, "the worker's peak memory grew by {grown_mib} MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_is_held_to_the_sandbox_policy() {
    // A child that lacks a layer the self-check found available (here: started without its PID
    // namespace, while the policy expects one) is stopped before it reads its input.
    let mut p = probe("read-input");
    p.spec.namespaces = Namespaces::NONE;
    let strict = SandboxPolicy { strict: true, namespaces: Namespaces { net: false, pid: true } };
    let report = child::run(
        &p.spec,
        &strict,
        WATCH,
        ChildInput::Named,
        |_| Box::pin(async {}),
        std::future::pending::<Outcome>(),
    )
    .await
    .unwrap();
    assert!(matches!(&report.outcome, Outcome::SandboxMissing(m) if m == "pid_namespace"), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0.as_str(), "sandbox_unavailable");
    // Best effort: logged, and the child runs.
    let lenient = SandboxPolicy { strict: false, ..strict };
    let report = child::run(
        &p.spec,
        &lenient,
        WATCH,
        ChildInput::Named,
        |_| Box::pin(async {}),
        std::future::pending::<Outcome>(),
    )
    .await
    .unwrap();
    allowed(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_self_check_shows_the_childs_stderr() {
    let work = work_dir();
    let script = work.path().join("broken-transcoder");
    std::fs::write(&script, "#!/bin/sh\necho 'libfoo.so: cannot open shared object file' >&2\nexit 127\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = config().clone();
    config.transcode_bin = script;
    let err = selfcheck::run(&config, work.path()).expect_err("a broken transcoder fails the self-check");
    assert!(err.to_string().contains("libfoo.so: cannot open shared object file"), "{err}");
}
