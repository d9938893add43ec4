//! Logging set-up: `RUST_LOG` filters (default `info`), `MEDIAQ_LOG_FORMAT=json` for JSON lines.
//! Logs go to stderr so that stdout stays free for machine-readable output.

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines look (part of each binary's configuration).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogConfig {
    /// `json` for JSON log lines (anything else: text).
    #[arg(long = "log-format", env = "MEDIAQ_LOG_FORMAT", default_value = "text", value_parser = is_json)]
    pub json: bool,
}

fn is_json(format: &str) -> Result<bool, String> {
    Ok(format.trim().eq_ignore_ascii_case("json"))
}

pub fn init(default_filter: &str, log: LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = log.json;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}
