//! Where the key comes from, and when sending it deserves a warning.
//!
//! A key on the command line (`--api-key`) is readable by every user of the machine (`ps`,
//! `/proc/<pid>/cmdline`), so it still works but warns; the environment (`MEDIAQ_API_KEY`) or a
//! file (`--api-key-file`) keep it to the user. An `http://` URL to anything but this machine
//! sends it in clear: that warns too.

use std::{net::IpAddr, path::Path};

use crate::client::Failure;

/// Largest key file read (a key is well under 100 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// The key from `--api-key` (warned), `--api-key-file` or `MEDIAQ_API_KEY`, in that order.
pub fn api_key(flag: Option<String>, file: Option<&Path>) -> Result<Option<String>, Failure> {
    if let Some(key) = flag {
        eprintln!(
            "mediaq: warning: --api-key shows the key to every user of this machine (ps); \
             use MEDIAQ_API_KEY or --api-key-file"
        );
        return Ok(Some(key));
    }
    if let Some(path) = file {
        let local = |e: std::io::Error| Failure::Local(format!("cannot read {}: {e}", path.display()));
        let size = std::fs::metadata(path).map_err(local)?.len();
        if size > MAX_KEY_FILE {
            return Err(Failure::Local(format!("{} is not a key file ({size} bytes)", path.display())));
        }
        let text = std::fs::read_to_string(path).map_err(local)?;
        let key = text.lines().next().unwrap_or("").trim().to_owned();
        if key.is_empty() {
            return Err(Failure::Local(format!("{} holds no key", path.display())));
        }
        return Ok(Some(key));
    }
    Ok(std::env::var("MEDIAQ_API_KEY").ok().filter(|k| !k.is_empty()))
}

/// Warns (stderr) when a key would travel in clear: an `http://` URL whose host is not this
/// machine (a loopback address or `localhost`).
pub fn warn_if_sent_in_clear(url: &str, has_key: bool) {
    let Ok(parsed) = reqwest::Url::parse(url) else { return };
    if has_key && parsed.scheme() == "http" && !is_loopback(&parsed) {
        eprintln!(
            "mediaq: warning: {} is not https: the API key and the videos travel in clear",
            crate::text::clean(parsed.host_str().unwrap_or(url))
        );
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_this_machine() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80/",
            "http://localhost:1",
            "http://a.localhost",
        ] {
            assert!(is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
        for url in
            ["http://10.0.0.1", "http://example.com", "http://[::ffff:127.0.0.1]", "http://localhost.example.com"]
        {
            assert!(!is_loopback(&reqwest::Url::parse(url).unwrap()), "{url}");
        }
    }
}
