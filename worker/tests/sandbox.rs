//! The transcoder's sandbox, layer by layer, through the production spawn path
//! (`attempt::child_spec` -> `child::run`), with a probe binary standing in for libav.

use std::{
    ffi::OsString,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use mediaq_worker::{
    attempt,
    child::{self, Outcome, Report, Watch},
    config::WorkerConfig,
    jobdir::JobDir,
    selfcheck, spawn,
};

const PROBE: &str = env!("CARGO_BIN_EXE_mediaq-sandbox-probe");

fn config() -> &'static WorkerConfig {
    static CONFIG: OnceLock<WorkerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        // Only DATABASE_URL is required, and these tests never connect. Set once, before any reader.
        std::env::set_var("DATABASE_URL", "postgres://unused@127.0.0.1:1/unused");
        WorkerConfig::from_env().expect("default worker config")
    })
}

fn namespaces() -> bool {
    static NS: OnceLock<bool> = OnceLock::new();
    *NS.get_or_init(|| {
        // Called from multi-threaded test runtimes: the self-check blocks in place.
        let work = work_dir();
        let mut config = config().clone();
        config.transcode_bin = env!("CARGO_BIN_EXE_mediaq-transcode").into();
        selfcheck::run(&config, work.path()).expect("self-check").namespaces
    })
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
    let mut spec = attempt::child_spec(config, namespaces(), &input, &dir.path().join("output.mp4"));
    spec.bin = PathBuf::from(PROBE);
    spec.args.extend([OsString::from("--probe"), OsString::from(action)]);
    Probe { _work: work, dir, spec }
}

const WATCH: Watch = Watch { timeout: Duration::from_secs(30), per_media_second: 10.0, stall: Duration::from_secs(20) };

async fn run(p: &Probe, watch: Watch) -> Report {
    child::run(&p.spec, watch, |_| Box::pin(async {}), std::future::pending::<Outcome>()).await.expect("spawn probe")
}

fn denied(report: &Report) -> String {
    match &report.outcome {
        Outcome::Failed { code, message } if code == "denied" => message.clone(),
        other => panic!("expected the sandbox to deny it, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_denies_reading_outside_the_input() {
    let p = probe("read-passwd");
    let message = denied(&run(&p, WATCH).await);
    assert!(message.contains("open /etc/passwd"), "{message}");
    // The input itself stays readable.
    let p = probe("read-input");
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::Failed { code, .. } if code == "allowed"), "{:?}", report.outcome);
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_denies_writing_outside_the_job_directory() {
    let p = probe("write-outside");
    denied(&run(&p, WATCH).await);
    let p = probe("write-inside");
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::Failed { code, .. } if code == "allowed"), "{:?}", report.outcome);
    assert!(p.dir.path().join("output.mp4").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn seccomp_kills_on_socket_and_exec() {
    for action in ["socket", "exec"] {
        let report = run(&probe(action), WATCH).await;
        assert!(matches!(report.outcome, Outcome::SandboxViolation), "{action}: {:?}", report.outcome);
        assert_eq!(report.exit, format!("signal {}", libc::SIGSYS), "{action}");
        assert_eq!(report.outcome.error().unwrap().0, "sandbox_violation");
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
        async move { child::run(&spec, WATCH, |_| Box::pin(async {}), std::future::pending::<Outcome>()).await.unwrap() }
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
    assert!(limit("Max file size").contains(&(sandbox.max_output_bytes + (1 << 20)).to_string()), "{limits}");
    assert!(limit("Max open files").split_whitespace().any(|w| w == "64"), "{limits}");
    assert!(limit("Max core file size").split_whitespace().any(|w| w == "0"), "{limits}");
    assert!(!limit("Max cpu time").contains("unlimited"), "{limits}");
    if namespaces() {
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let child_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(own, child_ns, "the child has its own network namespace");
    }
    running.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_hits_its_limit() {
    let mut p = probe("memory");
    p.spec.limits.address_space = 512 << 20;
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::ResourceLimit(what) if what == "memory"), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0, "resource_limit");
    assert!(report.usage.peak_rss_bytes < 600 << 20, "{:?}", report.usage);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_loop_ends_by_cpu_limit_or_timeout() {
    let mut p = probe("busy");
    p.spec.limits.cpu_seconds = 1;
    let report = run(&p, WATCH).await;
    assert!(matches!(&report.outcome, Outcome::ResourceLimit(what) if what == "CPU time"), "{:?}", report.outcome);
    assert!(report.usage.user_cpu >= Duration::from_millis(900), "{:?}", report.usage);

    let p = probe("busy");
    let started = Instant::now();
    let report = run(&p, Watch { timeout: Duration::from_secs(2), ..WATCH }).await;
    assert!(matches!(report.outcome, Outcome::TimedOut), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0, "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_child_is_stalled() {
    let p = probe("hang");
    let started = Instant::now();
    let report = run(&p, Watch { stall: Duration::from_secs(2), ..WATCH }).await;
    assert!(matches!(report.outcome, Outcome::Stalled), "{:?}", report.outcome);
    assert_eq!(report.outcome.error().unwrap().0, "stalled");
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
    let report = selfcheck::run(&config, work.path()).expect("strict self-check passes here");
    assert!(report.child.seccomp && report.child.no_new_privs);
    assert!(matches!(report.child.landlock.as_str(), "full" | "partial"), "{report:?}");
    assert!(report.child.landlock_abi >= 1);
    assert!(report.missing_required().is_empty());
    // The self-test's scratch directory is gone.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
