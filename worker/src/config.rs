//! The worker's settings (environment variables, see the README).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use mediaq_shared::config::{self, CommonConfig, ConfigError};

use mediaq_protocol::spec::TranscodeSpec;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    /// Jobs run at once by this process (MEDIAQ_WORKER_CONCURRENCY).
    pub concurrency: usize,
    /// The transcoder binary (MEDIAQ_TRANSCODE_BIN; default: `mediaq-transcode` beside this binary).
    pub transcode_bin: PathBuf,
    /// The encoder settings and media limits the transcoder child gets (MEDIAQ_X264_PRESET,
    /// MEDIAQ_X264_CRF, MEDIAQ_TRANSCODE_THREADS, MEDIAQ_MAX_*, MEDIAQ_CPU_PER_MEDIA_SECOND).
    pub transcode: TranscodeSpec,
    /// Longest a single attempt may run (MEDIAQ_TRANSCODE_TIMEOUT).
    pub transcode_timeout: Duration,
    /// How long in-flight attempts may run on after SIGTERM (MEDIAQ_SHUTDOWN_GRACE).
    pub shutdown_grace: Duration,
    /// Heartbeat of this worker in the queue; 3 missed beats make its jobs orphans (MEDIAQ_HEARTBEAT).
    pub heartbeat: Duration,
    pub sandbox: SandboxConfig,
    pub retry: crate::retry::RetryPolicy,
    pub janitor: crate::janitor::JanitorConfig,
    /// Where `/metrics` and `/healthz` are served (MEDIAQ_METRICS_BIND; unset: nowhere).
    pub metrics_bind: Option<SocketAddr>,
}

/// Whether the worker may run with sandbox layers missing (MEDIAQ_SANDBOX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Refuse to start unless every layer but namespaces is active (the default).
    Strict,
    /// Log missing layers and run anyway (development machines with old kernels).
    BestEffort,
}

/// Limits of the transcoder child process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// uid/gid the child runs as when the worker is root (MEDIAQ_SANDBOX_USER, default `nobody`).
    pub user: Option<(u32, u32)>,
    /// Address-space limit (MEDIAQ_TRANSCODE_MEMORY).
    pub memory_bytes: u64,
    /// Wall-clock seconds allowed per second of media, on top of a 60 s base (MEDIAQ_TIMEOUT_PER_MEDIA_SECOND).
    pub wall_per_media_second: f64,
    /// No progress line for this long kills the child (MEDIAQ_STALL_TIMEOUT).
    pub stall_timeout: Duration,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let concurrency: usize = config::parse_or("MEDIAQ_WORKER_CONCURRENCY", 1)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_WORKER_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let transcode_timeout = config::parse_duration("MEDIAQ_TRANSCODE_TIMEOUT", Duration::from_secs(2 * 3600))?;
        Ok(Self {
            common: CommonConfig::from_env()?,
            concurrency,
            transcode_bin: config::var("MEDIAQ_TRANSCODE_BIN").map(PathBuf::from).unwrap_or_else(default_transcode_bin),
            transcode: TranscodeSpec::from_env()?,
            transcode_timeout,
            shutdown_grace: config::parse_duration("MEDIAQ_SHUTDOWN_GRACE", Duration::from_secs(30))?,
            heartbeat: config::parse_duration("MEDIAQ_HEARTBEAT", Duration::from_secs(5))?,
            sandbox: SandboxConfig::from_env()?,
            retry: crate::retry::RetryPolicy::from_env()?,
            janitor: crate::janitor::JanitorConfig::from_env(transcode_timeout)?,
            metrics_bind: match config::var("MEDIAQ_METRICS_BIND") {
                None => None,
                Some(_) => Some(config::parse_or("MEDIAQ_METRICS_BIND", SocketAddr::from(([127, 0, 0, 1], 9464)))?),
            },
        })
    }
}

fn default_transcode_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("mediaq-transcode")))
        .unwrap_or_else(|| PathBuf::from("mediaq-transcode"))
}

impl SandboxConfig {
    fn from_env() -> Result<Self, ConfigError> {
        let mode = match config::var("MEDIAQ_SANDBOX").as_deref() {
            None | Some("strict") => SandboxMode::Strict,
            Some("best-effort") => SandboxMode::BestEffort,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "MEDIAQ_SANDBOX",
                    value: other.into(),
                    reason: "expected strict or best-effort".into(),
                })
            }
        };
        let user_name = config::var("MEDIAQ_SANDBOX_USER").unwrap_or_else(|| "nobody".into());
        let user = crate::spawn::lookup_user(&user_name);
        if user.is_none() && crate::spawn::is_root() {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_SANDBOX_USER",
                value: user_name,
                reason: "no such user (the transcoder never runs as root)".into(),
            });
        }
        Ok(Self {
            mode,
            user,
            memory_bytes: config::parse_bytes("MEDIAQ_TRANSCODE_MEMORY", 4 << 30)?,
            wall_per_media_second: config::parse_or("MEDIAQ_TIMEOUT_PER_MEDIA_SECOND", 10.0)?,
            stall_timeout: config::parse_duration("MEDIAQ_STALL_TIMEOUT", Duration::from_secs(60))?,
        })
    }
}
