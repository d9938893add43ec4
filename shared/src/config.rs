//! Configuration from environment variables, with safe defaults. Every variable is listed in the
//! README's configuration table; [`ConfigError`] names the variable that is wrong.

pub use ipnet::IpNet;
use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

/// A configuration variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{var} has an invalid value {value:?}: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
    /// A setting parsed by a clap definition (its message names the variable).
    #[error("{0}")]
    Setting(String),
}

/// Reads a variable, or `None` when it is unset or empty.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads and parses a variable, falling back to `default` when it is unset.
pub fn parse_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(value) => {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { var: name, reason: e.to_string(), value })
        }
    }
}

/// Reads a duration variable such as `30s`, `5m`, `2h`, `7d`, `250ms` or a bare number of seconds.
pub fn parse_duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(value) => duration_from_str(&value).map_err(|reason| ConfigError::Invalid { var: name, value, reason }),
    }
}

/// Reads a byte-size variable such as `512MiB`, `20MB`, `1GiB` or `4096`.
pub fn parse_bytes(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(value) => bytes_from_str(&value).map_err(|reason| ConfigError::Invalid { var: name, value, reason }),
    }
}

fn split_number(v: &str) -> Result<(u64, String), String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n = num.parse().map_err(|_| "expected a number with an optional unit".to_owned())?;
    Ok((n, unit.trim().to_ascii_lowercase()))
}

pub fn duration_from_str(v: &str) -> Result<Duration, String> {
    let (n, unit) = split_number(v)?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| "too large".to_owned());
    match unit.as_str() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err("unknown unit (use ms, s, m, h or d)".into()),
    }
}

pub fn bytes_from_str(v: &str) -> Result<u64, String> {
    let (n, unit) = split_number(v)?;
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err("unknown unit (use B, KB, KiB, MB, MiB, GB or GiB)".into()),
    };
    match n.checked_mul(mult) {
        None => Err("too large".into()),
        Some(0) => Err("must be greater than zero".into()),
        Some(bytes) => Ok(bytes),
    }
}

/// Settings both processes share.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// PostgreSQL URL (DATABASE_URL). Redacted in Debug output.
    pub database_url: Redacted,
    /// Root of local storage (MEDIAQ_STORAGE_DIR).
    pub storage_dir: PathBuf,
    /// Where media is stored: local disk, or an S3-compatible store (MEDIAQ_STORAGE_URL).
    pub store: StoreConfig,
    /// Local job directories of the worker (MEDIAQ_WORK_DIR, default `{storage_dir}/work`).
    pub work_dir: PathBuf,
    /// Maximum database connections per process (MEDIAQ_DB_MAX_CONNECTIONS).
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before failing (MEDIAQ_DB_TIMEOUT).
    pub db_timeout: Duration,
    /// Bearer token that `/metrics` requires when set (MEDIAQ_METRICS_TOKEN). Redacted in Debug output.
    pub metrics_token: Option<Redacted>,
}

impl CommonConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let storage_dir = var("MEDIAQ_STORAGE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("./data"));
        Ok(Self {
            database_url: Redacted(var("DATABASE_URL").ok_or(ConfigError::Missing("DATABASE_URL"))?),
            store: StoreConfig::from_env()?,
            work_dir: var("MEDIAQ_WORK_DIR").map(PathBuf::from).unwrap_or_else(|| storage_dir.join("work")),
            storage_dir,
            db_max_connections: parse_or("MEDIAQ_DB_MAX_CONNECTIONS", 10)?,
            db_timeout: parse_duration("MEDIAQ_DB_TIMEOUT", Duration::from_secs(3))?,
            metrics_token: var("MEDIAQ_METRICS_TOKEN").map(|t| Redacted(t.trim().to_owned())),
        })
    }
}

/// Where media lives. Credentials are not here: the S3 client reads the standard
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Local disk under MEDIAQ_STORAGE_DIR (MEDIAQ_STORAGE_URL unset).
    Local,
    /// `s3://bucket/prefix` (MEDIAQ_STORAGE_URL).
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// MEDIAQ_S3_ENDPOINT, e.g. `http://127.0.0.1:9000`; AWS when unset.
    pub endpoint: Option<String>,
    /// MEDIAQ_S3_REGION (default `us-east-1`).
    pub region: String,
    /// MEDIAQ_S3_ALLOW_HTTP: whether a plain-http endpoint is allowed (default false).
    pub allow_http: bool,
}

impl StoreConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let Some(url) = var("MEDIAQ_STORAGE_URL") else {
            return Ok(Self::Local);
        };
        let (bucket, prefix) = parse_s3_url(&url).map_err(|reason| ConfigError::Invalid {
            var: "MEDIAQ_STORAGE_URL",
            value: url.clone(),
            reason,
        })?;
        Ok(Self::S3(S3Config {
            bucket,
            prefix,
            endpoint: var("MEDIAQ_S3_ENDPOINT"),
            region: var("MEDIAQ_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            allow_http: parse_or("MEDIAQ_S3_ALLOW_HTTP", false)?,
        }))
    }
}

/// `s3://bucket/some/prefix/` -> (`bucket`, `some/prefix`).
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url.trim().strip_prefix("s3://").ok_or("expected s3://bucket/prefix")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(format!("{bucket:?} is not an S3 bucket name"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|seg| seg == ".." || seg == "." || (seg.is_empty() && !prefix.is_empty())) {
        return Err(format!("{prefix:?} is not a usable key prefix"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub common: CommonConfig,
    /// Listen address (MEDIAQ_BIND); port 0 picks a free port, printed at start-up.
    pub bind: SocketAddr,
    /// Largest accepted upload in bytes (MEDIAQ_MAX_UPLOAD_BYTES).
    pub max_upload_bytes: u64,
    /// Uploads received at once by one API process (MEDIAQ_MAX_CONCURRENT_UPLOADS); more get 503.
    pub max_concurrent_uploads: usize,
    /// A client that sends nothing for this long mid-upload is cut off (MEDIAQ_UPLOAD_IDLE_TIMEOUT).
    pub upload_idle_timeout: Duration,
    /// Uploads one API key (with every upload token it minted) may have in flight at once on this
    /// process (MEDIAQ_MAX_UPLOADS_PER_KEY); more get 429 `too_many_uploads`.
    pub max_uploads_per_key: usize,
    /// Slowest average upload rate in bytes per second (MEDIAQ_UPLOAD_MIN_RATE), enforced once an
    /// upload has run for MEDIAQ_UPLOAD_RATE_GRACE; slower uploads get 408 `upload_too_slow`.
    pub upload_min_rate: u64,
    pub upload_rate_grace: Duration,
    /// Largest body of every route but the upload (MEDIAQ_MAX_BODY_BYTES): 413 before it is read.
    pub max_body_bytes: u64,
    /// Failed authentications and rate-limit hits are written as one audit row per client
    /// address, action and window of this length, with a count (MEDIAQ_AUDIT_FAILURE_WINDOW).
    pub audit_failure_window: Duration,
    /// Exact origins allowed to call the API from a browser (MEDIAQ_CORS_ORIGINS, comma-separated).
    pub cors_origins: Vec<String>,
    /// Send Strict-Transport-Security (MEDIAQ_HSTS; only behind TLS).
    pub hsts: bool,
    /// Default lifetime of upload tokens (MEDIAQ_UPLOAD_TOKEN_TTL).
    pub upload_token_ttl: Duration,
    /// A resumable upload that receives nothing for this long expires (MEDIAQ_UPLOAD_EXPIRY): the
    /// janitor deletes its bytes and its job fails `upload_abandoned`.
    pub upload_expiry: Duration,
    /// Requests per second per client address, and per credential (bursts of twice that).
    pub rate_limit_ip: u32,
    pub rate_limit_key: u32,
    /// Proxies whose X-Forwarded-For is believed (MEDIAQ_TRUSTED_PROXIES: addresses or CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Per-key quotas: unfinished jobs at once, and bytes uploaded per 24 hours.
    pub quota_active_jobs: i64,
    pub quota_daily_bytes: u64,
    /// How long a verified API key is trusted without a lookup (MEDIAQ_KEY_CACHE_TTL; 0 disables).
    /// Revocations reach the cache at once through NOTIFY.
    pub key_cache_ttl: Duration,
}

pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env()?,
            bind: parse_or("MEDIAQ_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            max_upload_bytes: parse_bytes("MEDIAQ_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)?,
            max_concurrent_uploads: match parse_or("MEDIAQ_MAX_CONCURRENT_UPLOADS", 64usize)? {
                0 => {
                    return Err(ConfigError::Invalid {
                        var: "MEDIAQ_MAX_CONCURRENT_UPLOADS",
                        value: "0".into(),
                        reason: "at least 1 upload must be allowed".into(),
                    })
                }
                n => n,
            },
            upload_idle_timeout: parse_duration("MEDIAQ_UPLOAD_IDLE_TIMEOUT", Duration::from_secs(30))?,
            max_uploads_per_key: parse_or("MEDIAQ_MAX_UPLOADS_PER_KEY", 8usize)?.max(1),
            upload_min_rate: parse_bytes("MEDIAQ_UPLOAD_MIN_RATE", 8 << 10)?,
            upload_rate_grace: parse_duration("MEDIAQ_UPLOAD_RATE_GRACE", Duration::from_secs(60))?,
            max_body_bytes: parse_bytes("MEDIAQ_MAX_BODY_BYTES", 64 << 10)?,
            audit_failure_window: match parse_duration("MEDIAQ_AUDIT_FAILURE_WINDOW", Duration::from_secs(60))? {
                w if w < Duration::from_secs(1) => {
                    return Err(ConfigError::Invalid {
                        var: "MEDIAQ_AUDIT_FAILURE_WINDOW",
                        value: format!("{w:?}"),
                        reason: "must be at least 1s".into(),
                    })
                }
                w => w,
            },
            cors_origins: cors_origins(var("MEDIAQ_CORS_ORIGINS").as_deref().unwrap_or("")).map_err(|reason| {
                ConfigError::Invalid {
                    var: "MEDIAQ_CORS_ORIGINS",
                    value: var("MEDIAQ_CORS_ORIGINS").unwrap_or_default(),
                    reason,
                }
            })?,
            hsts: parse_or("MEDIAQ_HSTS", false)?,
            upload_token_ttl: parse_duration("MEDIAQ_UPLOAD_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            upload_expiry: parse_duration("MEDIAQ_UPLOAD_EXPIRY", Duration::from_secs(24 * 3600))?,
            rate_limit_ip: parse_or("MEDIAQ_RATE_LIMIT_IP", 20)?,
            rate_limit_key: parse_or("MEDIAQ_RATE_LIMIT_KEY", 10)?,
            trusted_proxies: trusted_proxies(var("MEDIAQ_TRUSTED_PROXIES").as_deref().unwrap_or("")).map_err(
                |reason| ConfigError::Invalid {
                    var: "MEDIAQ_TRUSTED_PROXIES",
                    value: var("MEDIAQ_TRUSTED_PROXIES").unwrap_or_default(),
                    reason,
                },
            )?,
            quota_active_jobs: parse_or("MEDIAQ_QUOTA_ACTIVE_JOBS", 50)?,
            quota_daily_bytes: parse_bytes("MEDIAQ_QUOTA_DAILY_BYTES", 20 << 30)?,
            key_cache_ttl: parse_duration("MEDIAQ_KEY_CACHE_TTL", Duration::from_secs(30))?,
        })
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

/// Parses `10.0.0.1, 10.1.0.0/16, ::1`: addresses or CIDR blocks.
pub fn trusted_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{p:?} is not an address or CIDR block"))
        })
        .collect()
}

/// A secret that prints as `[redacted]`.
#[derive(Clone)]
pub struct Redacted(pub String);

impl Redacted {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration_from_str("30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration_from_str("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration_from_str("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration_from_str("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(duration_from_str("soon").is_err());
        assert!(duration_from_str("5 fortnights").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(bytes_from_str("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(bytes_from_str("20MB").unwrap(), 20_000_000);
        assert_eq!(bytes_from_str("4096").unwrap(), 4096);
        assert!(bytes_from_str("0").is_err());
        assert!(bytes_from_str("99999999999GiB").is_err());
        assert!(bytes_from_str("lots").is_err());
    }

    #[test]
    fn unset_variables_use_defaults() {
        assert_eq!(parse_duration("MEDIAQ_TEST_NEVER_SET", Duration::from_secs(9)).unwrap(), Duration::from_secs(9));
        assert_eq!(parse_bytes("MEDIAQ_TEST_NEVER_SET", 7).unwrap(), 7);
    }

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
    fn storage_urls_name_a_bucket_and_a_prefix() {
        assert_eq!(parse_s3_url("s3://media").unwrap(), ("media".into(), "".into()));
        assert_eq!(parse_s3_url("s3://media/a/b/").unwrap(), ("media".into(), "a/b".into()));
        for bad in ["media", "http://media/x", "s3://Media", "s3://ab", "s3://media/a//b", "s3://media/../x"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redacted_hides_the_secret() {
        let r = Redacted("postgres://u:secret@h/db".into());
        assert_eq!(format!("{r:?}"), "[redacted]");
    }
}
