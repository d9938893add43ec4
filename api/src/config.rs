//! The API's settings: clap definitions read from `MEDIAQ_*` variables (each also a flag of
//! `mediaq-api serve`), parsed once in `main` before anything is opened or bound. The README's
//! configuration table lists every variable.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use mediaq_shared::{
    config::{bytes, duration, trusted_proxies, CommonConfig, IpNet},
    webhook::WebhookConfig,
};

/// The API's settings.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub common: CommonConfig,
    /// Webhook registration (URL policy, rotation grace, sealing of signing secrets).
    #[command(flatten)]
    pub webhooks: WebhookConfig,
    /// Signed playback links (key, lifetimes, S3 redirects).
    #[command(flatten)]
    pub links: crate::playback::LinkConfig,
    /// Listen address; port 0 picks a free port, printed at start-up.
    #[arg(long, env = "MEDIAQ_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Largest accepted upload in bytes.
    #[arg(long, env = "MEDIAQ_MAX_UPLOAD_BYTES", default_value = "512MiB", value_parser = bytes)]
    pub max_upload_bytes: u64,
    /// Uploads received at once by one API process; more get 503.
    #[arg(long, env = "MEDIAQ_MAX_CONCURRENT_UPLOADS", default_value = "64", value_parser = at_least_one_upload)]
    pub max_concurrent_uploads: usize,
    /// A client that sends nothing for this long mid-upload is cut off.
    #[arg(long, env = "MEDIAQ_UPLOAD_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub upload_idle_timeout: Duration,
    /// Uploads one API key (with every upload token it minted) may have in flight at once on this
    /// process (0 counts as 1); more get 429 `too_many_uploads`.
    #[arg(long, env = "MEDIAQ_MAX_UPLOADS_PER_KEY", default_value = "8", value_parser = one_or_more)]
    pub max_uploads_per_key: usize,
    /// Slowest average upload rate in bytes per second, enforced once an upload has run for
    /// MEDIAQ_UPLOAD_RATE_GRACE; slower uploads get 408 `upload_too_slow`.
    #[arg(long, env = "MEDIAQ_UPLOAD_MIN_RATE", default_value = "8KiB", value_parser = bytes)]
    pub upload_min_rate: u64,
    #[arg(long, env = "MEDIAQ_UPLOAD_RATE_GRACE", default_value = "60s", value_parser = duration)]
    pub upload_rate_grace: Duration,
    /// Largest body of every route but the upload: 413 before it is read.
    #[arg(long, env = "MEDIAQ_MAX_BODY_BYTES", default_value = "64KiB", value_parser = bytes)]
    pub max_body_bytes: u64,
    /// Failed authentications and rate-limit hits are written as one audit row per client
    /// address, action and window of this length (at least 1s), with a count.
    #[arg(long, env = "MEDIAQ_AUDIT_FAILURE_WINDOW", default_value = "60s", value_parser = audit_window)]
    pub audit_failure_window: Duration,
    /// Exact origins allowed to call the API from a browser (comma-separated).
    #[arg(long, env = "MEDIAQ_CORS_ORIGINS", default_value = "", value_parser = cors_origins)]
    pub cors_origins: ::std::vec::Vec<String>,
    /// Send Strict-Transport-Security (only behind TLS).
    #[arg(long, env = "MEDIAQ_HSTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub hsts: bool,
    /// Default lifetime of upload tokens.
    #[arg(long, env = "MEDIAQ_UPLOAD_TOKEN_TTL", default_value = "15m", value_parser = duration)]
    pub upload_token_ttl: Duration,
    /// A resumable upload that receives nothing for this long expires: the janitor deletes its
    /// bytes and its job fails `upload_abandoned`.
    #[arg(long, env = "MEDIAQ_UPLOAD_EXPIRY", default_value = "24h", value_parser = duration)]
    pub upload_expiry: Duration,
    /// A resumable upload expires this long after its creation at the latest, however often
    /// bytes trickle in (its job fails `upload_abandoned` unless the upload completed).
    #[arg(long, env = "MEDIAQ_UPLOAD_MAX_LIFETIME", default_value = "6h", value_parser = duration)]
    pub upload_max_lifetime: Duration,
    /// The most PATCHes (segments) one resumable upload may be stored in: each is an object and
    /// a row that reassembly and removal visit. 30000 is above one a second for the 6 h lifetime
    /// (the page PATCHes each second); past it, `409 too_many_segments`.
    #[arg(long, env = "MEDIAQ_MAX_UPLOAD_SEGMENTS", default_value_t = 30_000)]
    pub max_upload_segments: u32,
    /// Live jobs (uploads converted while they arrive) one key may have queued or running at
    /// once; its further uploads convert when complete (in the CPU lane), or when one ends.
    #[arg(long, env = "MEDIAQ_LIVE_PER_KEY", default_value_t = 2)]
    pub live_per_key: i64,
    /// Requests per second per client address, and per credential (bursts of twice that).
    #[arg(long, env = "MEDIAQ_RATE_LIMIT_IP", default_value_t = 20)]
    pub rate_limit_ip: u32,
    #[arg(long, env = "MEDIAQ_RATE_LIMIT_KEY", default_value_t = 10)]
    pub rate_limit_key: u32,
    /// Proxies whose X-Forwarded-For is believed (addresses or CIDRs).
    #[arg(long, env = "MEDIAQ_TRUSTED_PROXIES", default_value = "", value_parser = trusted_proxies)]
    pub trusted_proxies: ::std::vec::Vec<IpNet>,
    /// Per-key quotas: unfinished jobs at once, and bytes uploaded per 24 hours.
    #[arg(long, env = "MEDIAQ_QUOTA_ACTIVE_JOBS", default_value_t = 50)]
    pub quota_active_jobs: i64,
    #[arg(long, env = "MEDIAQ_QUOTA_DAILY_BYTES", default_value = "20GiB", value_parser = bytes)]
    pub quota_daily_bytes: u64,
    /// How long a verified API key is trusted without a lookup (0 disables). Revocations reach
    /// the cache at once through NOTIFY.
    #[arg(long, env = "MEDIAQ_KEY_CACHE_TTL", default_value = "30s", value_parser = duration)]
    pub key_cache_ttl: Duration,
}

fn at_least_one_upload(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("at least 1 upload must be allowed".into()),
        n => Ok(n),
    }
}

fn one_or_more(v: &str) -> Result<usize, String> {
    v.trim().parse::<usize>().map(|n| n.max(1)).map_err(|e| e.to_string())
}

fn audit_window(v: &str) -> Result<Duration, String> {
    match duration(v)? {
        w if w < Duration::from_secs(1) => Err("must be at least 1s".into()),
        w => Ok(w),
    }
}

/// Parses a comma-separated list of exact origins (`https://app.example.com`): no wildcard,
/// never `null`, no paths.
pub fn cors_origins(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            match rest {
                _ if o == "*" || o.eq_ignore_ascii_case("null") => {
                    Err(format!("{o:?} is never allowed; list exact origins"))
                }
                Some(host) if !host.is_empty() && !host.contains(['/', '*', ' ']) => Ok(o.to_owned()),
                _ => Err(format!("{o:?} is not an origin like https://app.example.com")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_exact() {
        assert_eq!(cors_origins("").unwrap(), Vec::<String>::new());
        assert_eq!(
            cors_origins("https://a.example, http://localhost:3000").unwrap(),
            ["https://a.example", "http://localhost:3000"]
        );
        for bad in ["*", "null", "https://*.example.com", "https://a.example/path", "a.example"] {
            assert!(cors_origins(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_that_cannot_be_zero() {
        assert!(at_least_one_upload("0").is_err());
        assert_eq!(one_or_more("0").unwrap(), 1);
        assert!(audit_window("500ms").is_err());
        assert_eq!(audit_window("2s").unwrap(), Duration::from_secs(2));
    }
}
