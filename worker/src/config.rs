//! The worker's settings (environment variables, see the README).

use std::{path::PathBuf, time::Duration};

use mediaq_shared::config::{self, CommonConfig, ConfigError};

use crate::protocol::EncodeSettings;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    /// Jobs run at once by this process (MEDIAQ_WORKER_CONCURRENCY).
    pub concurrency: usize,
    /// The transcoder binary (MEDIAQ_TRANSCODE_BIN; default: `mediaq-transcode` beside this binary).
    pub transcode_bin: PathBuf,
    /// libx264 preset and CRF, libav threads (MEDIAQ_X264_PRESET, MEDIAQ_X264_CRF, MEDIAQ_TRANSCODE_THREADS).
    pub encode: EncodeSettings,
    /// Longest a single attempt may run (MEDIAQ_TRANSCODE_TIMEOUT).
    pub transcode_timeout: Duration,
    /// How long in-flight attempts may run on after SIGTERM (MEDIAQ_SHUTDOWN_GRACE).
    pub shutdown_grace: Duration,
    /// Heartbeat of this worker in the queue; 3 missed beats make its jobs orphans (MEDIAQ_HEARTBEAT).
    pub heartbeat: Duration,
}

const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let preset = config::var("MEDIAQ_X264_PRESET").unwrap_or_else(|| "veryfast".into());
        if !PRESETS.contains(&preset.as_str()) {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_X264_PRESET",
                value: preset,
                reason: format!("expected one of {}", PRESETS.join(", ")),
            });
        }
        let crf: u8 = config::parse_or("MEDIAQ_X264_CRF", 23)?;
        if crf > 51 {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_X264_CRF",
                value: crf.to_string(),
                reason: "must be 0..=51".into(),
            });
        }
        let threads = config::var("MEDIAQ_TRANSCODE_THREADS").unwrap_or_else(|| "auto".into());
        if threads != "auto" && threads.parse::<u16>().is_err() {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_TRANSCODE_THREADS",
                value: threads,
                reason: "expected auto or a number".into(),
            });
        }
        let concurrency: usize = config::parse_or("MEDIAQ_WORKER_CONCURRENCY", 1)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid {
                var: "MEDIAQ_WORKER_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            common: CommonConfig::from_env()?,
            concurrency,
            transcode_bin: config::var("MEDIAQ_TRANSCODE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(default_transcode_bin),
            encode: EncodeSettings {
                preset,
                crf,
                threads,
            },
            transcode_timeout: config::parse_duration(
                "MEDIAQ_TRANSCODE_TIMEOUT",
                Duration::from_secs(2 * 3600),
            )?,
            shutdown_grace: config::parse_duration(
                "MEDIAQ_SHUTDOWN_GRACE",
                Duration::from_secs(30),
            )?,
            heartbeat: config::parse_duration("MEDIAQ_HEARTBEAT", Duration::from_secs(5))?,
        })
    }
}

fn default_transcode_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("mediaq-transcode")))
        .unwrap_or_else(|| PathBuf::from("mediaq-transcode"))
}
