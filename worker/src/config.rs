//! The worker's settings: clap definitions read from `MEDIAQ_*` variables (each also a flag of
//! `mediaq-worker run` and `mediaq-worker janitor`), parsed once in `main` before anything is
//! opened, spawned or bound. The README's configuration table lists every variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use mediaq_protocol::spec::TranscodeSpec;
use mediaq_shared::{
    config::{bytes, duration, CommonConfig},
    webhook::WebhookConfig,
};

use crate::{janitor::JanitorConfig, retry::RetryPolicy};

#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub common: CommonConfig,
    /// Jobs run at once by this process.
    #[arg(long, env = "MEDIAQ_WORKER_CONCURRENCY", default_value = "1", value_parser = at_least_one)]
    pub concurrency: usize,
    /// Live attempts (a resumable upload converted while it arrives) run at once by this
    /// process, in slots of their own: they never take one of the `MEDIAQ_WORKER_CONCURRENCY`
    /// slots that finished uploads need. 0: this process converts no live upload.
    #[arg(long, env = "MEDIAQ_WORKER_LIVE_SLOTS", default_value_t = 2)]
    pub live_slots: usize,
    /// A live attempt whose upload sends nothing for this long hands its slot back: the job
    /// waits for bytes (`receiving`) and is queued again by the upload's next PATCH.
    #[arg(long, env = "MEDIAQ_LIVE_IDLE_GAP", default_value = "30s", value_parser = duration)]
    pub live_idle_gap: Duration,
    /// Longest one live attempt may run in all, whatever trickles in (above the longest media
    /// accepted, MEDIAQ_MAX_DURATION: a recording takes its own length to arrive).
    #[arg(long, env = "MEDIAQ_LIVE_ATTEMPT_MAX", default_value = "150m", value_parser = duration)]
    pub live_attempt_max: Duration,
    /// The transcoder binary (default: `mediaq-transcode` beside this binary).
    #[arg(long, env = "MEDIAQ_TRANSCODE_BIN", default_value_os_t = default_transcode_bin())]
    pub transcode_bin: PathBuf,
    /// The encoder settings and media limits the transcoder child gets (MEDIAQ_X264_PRESET,
    /// MEDIAQ_X264_CRF, MEDIAQ_TRANSCODE_THREADS, MEDIAQ_MAX_*, MEDIAQ_CPU_PER_MEDIA_SECOND).
    #[command(flatten)]
    pub transcode: TranscodeSpec,
    /// Longest a single attempt may run.
    #[arg(long, env = "MEDIAQ_TRANSCODE_TIMEOUT", default_value = "2h", value_parser = duration)]
    pub transcode_timeout: Duration,
    /// How long in-flight attempts may run on after SIGTERM.
    #[arg(long, env = "MEDIAQ_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Heartbeat of this worker in the queue; 3 missed beats make its jobs orphans.
    #[arg(long, env = "MEDIAQ_HEARTBEAT", default_value = "5s", value_parser = duration)]
    pub heartbeat: Duration,
    #[command(flatten)]
    pub sandbox: SandboxConfig,
    #[command(flatten)]
    pub retry: RetryPolicy,
    #[command(flatten)]
    pub janitor: JanitorConfig,
    /// Webhook delivery.
    #[command(flatten)]
    pub webhooks: WebhookConfig,
    /// Where `/metrics` and `/healthz` are served (unset: nowhere).
    #[arg(long, env = "MEDIAQ_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

impl WorkerConfig {
    /// Job directories older than this belong to dead attempts (the transcode timeout + 10 min).
    pub fn work_max_age(&self) -> Duration {
        self.transcode_timeout.max(self.live_attempt_max) + Duration::from_secs(600)
    }
}

/// Whether the worker may run with sandbox layers missing (MEDIAQ_SANDBOX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxMode {
    /// Refuse to start unless every layer but namespaces is active (the default).
    Strict,
    /// Log missing layers and run anyway (development machines with old kernels).
    BestEffort,
}

/// Limits of the transcoder child process.
#[derive(Debug, Clone, Args)]
pub struct SandboxConfig {
    /// `strict` or `best-effort`.
    #[arg(long = "sandbox", env = "MEDIAQ_SANDBOX", default_value = "strict", value_enum)]
    pub mode: SandboxMode,
    /// uid/gid the child runs as when the worker is root (a user name, default `nobody`).
    #[arg(long = "sandbox-user", env = "MEDIAQ_SANDBOX_USER", default_value = "nobody", value_parser = sandbox_user)]
    pub user: ::std::option::Option<(u32, u32)>,
    /// Address-space limit.
    #[arg(long = "transcode-memory", env = "MEDIAQ_TRANSCODE_MEMORY", default_value = "4GiB", value_parser = bytes)]
    pub memory_bytes: u64,
    /// Wall-clock seconds allowed per second of media, on top of a 60 s base.
    #[arg(long = "timeout-per-media-second", env = "MEDIAQ_TIMEOUT_PER_MEDIA_SECOND", default_value_t = 10.0)]
    pub wall_per_media_second: f64,
    /// No progress line for this long kills the child.
    #[arg(long, env = "MEDIAQ_STALL_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub stall_timeout: Duration,
}

/// The uid/gid of a user; a user that does not exist is refused when the worker is root (the
/// transcoder never runs as root).
fn sandbox_user(name: &str) -> Result<Option<(u32, u32)>, String> {
    let user = crate::spawn::lookup_user(name.trim());
    if user.is_none() && crate::spawn::is_root() {
        return Err("no such user (the transcoder never runs as root)".into());
    }
    Ok(user)
}

fn at_least_one(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn default_transcode_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("mediaq-transcode")))
        .unwrap_or_else(|| PathBuf::from("mediaq-transcode"))
}
