//! Configuration from environment variables, with safe defaults: clap definitions (`env` on
//! every argument), parsed once per binary by [`parse`] before it opens anything. Every variable
//! is listed in the README's configuration table (`shared/tests/readme_config.rs` checks it);
//! [`ConfigError`] names the variable that is wrong.

pub use ipnet::IpNet;
use std::{path::PathBuf, time::Duration};

/// A configuration variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value no single variable's parser can refuse (two that contradict each other).
    #[error("{var} has an invalid value {value:?}: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
    /// What clap refused (its message names the variable).
    #[error("{0}")]
    Setting(String),
}

/// Parses a binary's command line and its environment, through clap: every setting is an
/// argument with `env = "MEDIAQ_..."` (each is also a `--flag`). A variable set to an empty value
/// counts as unset. An invalid value, or a required one missing, is reported naming its
/// variable; `--help` and `--version` print and exit. Call it once, first thing in `main`.
pub fn parse<P: clap::Parser>() -> Result<P, ConfigError> {
    parse_from(std::env::args_os())
}

/// [`parse`] with the given command line (the environment is still the process's).
pub fn parse_from<P, I, T>(args: I) -> Result<P, ConfigError>
where
    P: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = unset_empty(P::command());
    let matches = command.try_get_matches_from_mut(args).map_err(|e| explain(&command, e))?;
    P::from_arg_matches(&matches).map_err(|e| explain(&command, e))
}

/// Settings of one kind alone from the environment (a binary's own settings go through [`parse`]).
pub fn from_env<A: clap::Args>() -> Result<A, ConfigError> {
    #[derive(clap::Parser)]
    struct Only<A: clap::Args> {
        #[command(flatten)]
        settings: A,
    }
    parse_from::<Only<A>, _, _>(["mediaq"]).map(|only| only.settings)
}

/// The command with the environment of every argument whose variable is empty switched off.
fn unset_empty(mut command: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| a.get_env().and_then(std::env::var_os).is_some_and(|v| v.to_string_lossy().trim().is_empty()))
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None::<&str>));
    }
    let subcommands: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in subcommands {
        command = command.mut_subcommand(name, unset_empty);
    }
    command
}

/// A clap error as a [`ConfigError`] that names the variable of the argument it is about.
fn explain(command: &clap::Command, e: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !e.use_stderr() {
        e.exit() // --help, --version
    }
    let flags = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(flag)) => vec![flag.clone()],
        Some(ContextValue::Strings(flags)) => flags.clone(),
        _ => Vec::new(),
    };
    let vars: Vec<String> = flags
        .iter()
        .filter_map(|flag| argument_of(command, flag)?.get_env().map(|v| v.to_string_lossy().into_owned()))
        .collect();
    if e.kind() == ErrorKind::MissingRequiredArgument && !vars.is_empty() {
        return ConfigError::Setting(format!("{} must be set", vars.join(", ")));
    }
    let mut text = e.to_string();
    let secret = flags.iter().any(|flag| argument_of(command, flag).is_some_and(|a| a.is_hide_env_values_set()));
    if let (true, Some(ContextValue::String(value))) = (secret, e.get(ContextKind::InvalidValue)) {
        text = text.replace(value.as_str(), "(not shown)");
    }
    let why = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    match vars.first() {
        Some(var) => ConfigError::Setting(format!("{var}: {why}")),
        None => ConfigError::Setting(why.to_owned()),
    }
}

/// The argument that clap shows as `flag` (`--bind <BIND>`), in `command` or any of its
/// subcommands.
fn argument_of<'c>(command: &'c clap::Command, flag: &str) -> Option<&'c clap::Arg> {
    let named = |long: &str| {
        let rest = flag.strip_prefix("--").and_then(|f| f.strip_prefix(long));
        rest.is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
    };
    command
        .get_arguments()
        .find(|a| a.get_long().is_some_and(named))
        .or_else(|| command.get_subcommands().find_map(|c| argument_of(c, flag)))
}

/// The value parser of a `MEDIAQ_*` duration such as `30s`, `5m`, `2h`, `7d`, `250ms` or a bare
/// number of seconds.
pub fn duration(v: &str) -> Result<Duration, String> {
    duration_from_str(v)
}

/// The value parser of a `MEDIAQ_*` size such as `512MiB`, `20MB`, `1GiB` or `4096`.
pub fn bytes(v: &str) -> Result<u64, String> {
    bytes_from_str(v)
}

/// The value parser of a secret (never shown in Debug output).
pub fn redacted(v: &str) -> Result<Redacted, String> {
    Ok(Redacted(v.trim().to_owned()))
}

/// The value parser of a comma-separated list of addresses or CIDR blocks.
pub fn networks(list: &str) -> Result<Networks, String> {
    trusted_proxies(list).map(Networks)
}

/// Addresses and CIDR blocks (MEDIAQ_TRUSTED_PROXIES, MEDIAQ_WEBHOOK_ALLOWED_NETWORKS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

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
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// PostgreSQL URL (never logged).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = redacted)]
    pub database_url: Redacted,
    /// Root of local storage.
    #[arg(long, env = "MEDIAQ_STORAGE_DIR", default_value = "./data")]
    pub storage_dir: PathBuf,
    /// `s3://bucket/prefix`: media in that S3-compatible bucket instead of local disk.
    #[arg(long, env = "MEDIAQ_STORAGE_URL", value_parser = s3_location)]
    pub storage_url: Option<S3Location>,
    /// The S3 endpoint, e.g. `http://127.0.0.1:9000`; AWS when unset.
    #[arg(long, env = "MEDIAQ_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "MEDIAQ_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Whether a plain-http S3 endpoint is allowed.
    #[arg(long, env = "MEDIAQ_S3_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_allow_http: bool,
    /// Local job directories of the worker (default `{storage_dir}/work`); see [`Self::work_dir`].
    #[arg(long = "work-dir", env = "MEDIAQ_WORK_DIR")]
    pub work_dir_setting: Option<PathBuf>,
    /// Maximum database connections per process.
    #[arg(long, env = "MEDIAQ_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before failing.
    #[arg(long, env = "MEDIAQ_DB_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub db_timeout: Duration,
    /// Bearer token that `/metrics` requires when set (never logged).
    #[arg(long, env = "MEDIAQ_METRICS_TOKEN", hide_env_values = true, value_parser = redacted)]
    pub metrics_token: Option<Redacted>,
}

impl CommonConfig {
    /// Where media lives: local disk, or an S3-compatible store.
    pub fn store(&self) -> StoreConfig {
        match &self.storage_url {
            None => StoreConfig::Local,
            Some(location) => StoreConfig::S3(S3Config {
                bucket: location.bucket.clone(),
                prefix: location.prefix.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                allow_http: self.s3_allow_http,
            }),
        }
    }

    /// The worker's local job directories.
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir_setting.clone().unwrap_or_else(|| self.storage_dir.join("work"))
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

/// A bucket and a key prefix (MEDIAQ_STORAGE_URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

/// The value parser of MEDIAQ_STORAGE_URL.
pub fn s3_location(url: &str) -> Result<S3Location, String> {
    parse_s3_url(url).map(|(bucket, prefix)| S3Location { bucket, prefix })
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
    fn storage_urls_name_a_bucket_and_a_prefix() {
        assert_eq!(parse_s3_url("s3://media").unwrap(), ("media".into(), "".into()));
        assert_eq!(parse_s3_url("s3://media/a/b/").unwrap(), ("media".into(), "a/b".into()));
        for bad in ["media", "http://media/x", "s3://Media", "s3://ab", "s3://media/a//b", "s3://media/../x"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug, clap::Args)]
    struct Sample {
        #[arg(long = "sample-wait", env = "MEDIAQ_TEST_CONFIG_WAIT", default_value = "30s", value_parser = duration)]
        wait: Duration,
        #[arg(long = "sample-key", env = "MEDIAQ_TEST_CONFIG_KEY", hide_env_values = true, value_parser = bytes)]
        key: Option<u64>,
    }

    #[test]
    fn settings_come_from_their_variables_and_errors_name_them() {
        // Variables only this test uses (the process environment is shared by the tests).
        std::env::set_var("MEDIAQ_TEST_CONFIG_WAIT", "  ");
        assert_eq!(from_env::<Sample>().unwrap().wait, Duration::from_secs(30), "empty is unset");
        std::env::set_var("MEDIAQ_TEST_CONFIG_WAIT", "5m");
        assert_eq!(from_env::<Sample>().unwrap().wait, Duration::from_secs(300));
        std::env::set_var("MEDIAQ_TEST_CONFIG_WAIT", "soon");
        let e = from_env::<Sample>().unwrap_err().to_string();
        assert!(e.starts_with("MEDIAQ_TEST_CONFIG_WAIT: ") && e.contains("'soon'"), "{e}");
        std::env::set_var("MEDIAQ_TEST_CONFIG_WAIT", "1s");
        std::env::set_var("MEDIAQ_TEST_CONFIG_KEY", "hunter2");
        let e = from_env::<Sample>().unwrap_err().to_string();
        assert!(e.starts_with("MEDIAQ_TEST_CONFIG_KEY: ") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redacted_hides_the_secret() {
        let r = Redacted("postgres://u:secret@h/db".into());
        assert_eq!(format!("{r:?}"), "[redacted]");
    }
}
