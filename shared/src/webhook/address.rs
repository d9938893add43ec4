//! SSRF defence for webhook URLs: the scheme, and every address a host resolves to, checked
//! against loopback, private, link-local (cloud metadata included), unique-local, multicast and
//! other non-public ranges. The same check runs when an endpoint is registered and again at
//! connect time (the worker's resolver), so DNS cannot be rebound in between.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use url::Url;

/// What webhook URLs may point at.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AddressPolicy {
    /// Allow `http://` webhook URLs (development only).
    #[arg(long = "webhook-allow-http", id = "webhook_allow_http", env = "MEDIAQ_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_http: bool,
    /// Networks allowed even though they are not public (development only, e.g. `127.0.0.0/8`
    /// for a receiver on this machine).
    #[arg(long = "webhook-allowed-networks", env = "MEDIAQ_WEBHOOK_ALLOWED_NETWORKS", default_value = "", value_parser = crate::config::trusted_proxies)]
    pub allowed: ::std::vec::Vec<IpNet>,
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("the URL must use https")]
    SchemeNotAllowed,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL is longer than 2048 characters")]
    TooLong,
    /// The address is kept for the log; the message never names it (it would tell a caller what
    /// an internal name resolves to).
    #[error("the host is not a public address")]
    ForbiddenAddress(IpAddr),
    #[error("the host could not be resolved")]
    Unresolvable,
}

impl AddressPolicy {
    /// Parses a URL and checks what can be checked without DNS (scheme, credentials, an
    /// address literal). Host names are checked by [`AddressPolicy::resolve`].
    pub fn parse(&self, raw: &str) -> Result<Url, UrlError> {
        if raw.len() > 2048 {
            return Err(UrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| UrlError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(UrlError::SchemeNotAllowed),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        match url.host() {
            None => return Err(UrlError::Invalid),
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// Refuses an address that is not public, unless an allowed network holds it.
    pub fn check(&self, ip: IpAddr) -> Result<(), UrlError> {
        if self.allowed.iter().any(|net| net.contains(&ip)) || is_public(ip) {
            Ok(())
        } else {
            Err(UrlError::ForbiddenAddress(ip))
        }
    }

    /// Resolves `host` and checks every address it resolves to (one bad address refuses all).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UrlError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|_| UrlError::Unresolvable)?.collect();
        if addrs.is_empty() {
            return Err(UrlError::Unresolvable);
        }
        for addr in &addrs {
            self.check(addr.ip())?;
        }
        Ok(addrs)
    }

    /// The full check of a URL: [`AddressPolicy::parse`], then every resolved address.
    pub async fn check_url(&self, raw: &str) -> Result<Url, UrlError> {
        let url = self.parse(raw)?;
        let host = url.host_str().ok_or(UrlError::Invalid)?;
        let port = url.port_or_known_default().ok_or(UrlError::Invalid)?;
        self.resolve(host, port).await?;
        Ok(url)
    }
}

/// A webhook URL as it may appear in logs: scheme, host, port and path only. Query strings and
/// fragments often carry a receiver's own secret (`?token=...`), and log lines reach more people
/// than the database does.
pub fn loggable(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// Whether an address is publicly routable (not loopback, private, link-local, unique-local,
/// multicast, shared, reserved or unspecified; IPv6 forms that embed an IPv4 address are judged
/// by that address).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16, cloud metadata services
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return false; // local-use NAT64 64:ff9b:1::/48 (RFC 8215): translates to any IPv4, private included
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return false; // Teredo 2001::/32: tunnels to an (obfuscated) IPv4 client, which may be anything
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || ip.is_multicast()
        || s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &AddressPolicy, url: &str) -> UrlError {
        policy.parse(url).expect_err(url)
    }

    #[test]
    fn non_public_literals_are_refused() {
        let p = AddressPolicy::default();
        for url in [
            "https://127.0.0.1/hook",
            "https://127.1.2.3:8443/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:7f00:1::]/",
            "https://[64:ff9b:1::a00:1]/",
            "https://[64:ff9b:1:ffff::5db8:d70e]/",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "https://[2001::1]/",
        ] {
            assert!(matches!(refused(&p, url), UrlError::ForbiddenAddress(_)), "{url}");
        }
    }

    #[test]
    fn a_refusal_does_not_name_the_address() {
        let p = AddressPolicy::default();
        let message = refused(&p, "https://10.1.2.3/").to_string();
        assert!(message.contains("not a public address") && !message.contains("10.1.2.3"), "{message}");
    }

    #[test]
    fn logged_urls_lose_their_query_and_credentials() {
        assert_eq!(loggable("https://h.example:8443/hook?token=s3cret#frag"), "https://h.example:8443/hook");
        assert_eq!(loggable("https://u:pw@h.example/x?a=1"), "https://h.example/x");
        assert_eq!(loggable("nonsense"), "(unparsable URL)");
    }

    #[test]
    fn public_addresses_pass() {
        let p = AddressPolicy::default();
        for url in
            ["https://93.184.215.14/", "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", "https://example.com/h"]
        {
            assert!(p.parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn scheme_and_credentials() {
        let p = AddressPolicy::default();
        assert_eq!(refused(&p, "http://example.com/"), UrlError::SchemeNotAllowed);
        assert_eq!(refused(&p, "ftp://example.com/"), UrlError::SchemeNotAllowed);
        assert_eq!(refused(&p, "file:///etc/passwd"), UrlError::SchemeNotAllowed);
        assert_eq!(refused(&p, "https://user:pw@example.com/"), UrlError::Credentials);
        assert_eq!(refused(&p, "not a url"), UrlError::Invalid);
        let dev = AddressPolicy { allow_http: true, ..Default::default() };
        assert!(dev.parse("http://example.com/").is_ok());
    }

    #[test]
    fn the_allowlist_overrides() {
        let p = AddressPolicy { allow_http: true, allowed: vec!["127.0.0.0/8".parse().unwrap()] };
        assert!(p.parse("http://127.0.0.1:9000/hook").is_ok());
        assert!(matches!(refused(&p, "http://10.0.0.1/"), UrlError::ForbiddenAddress(_)));
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = AddressPolicy::default();
        assert!(matches!(p.check_url("https://localhost/hook").await, Err(UrlError::ForbiddenAddress(_))));
        let dev = AddressPolicy {
            allow_http: false,
            allowed: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(dev.check_url("https://localhost/hook").await.is_ok());
    }
}
