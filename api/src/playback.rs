//! Signed playback links: URLs that open one job's output or poster without any header, so a
//! `<video src>` can play them and an application can hand them to its own users.
//!
//! A link is `/v1/play/{token}/{file}`: `file` names what it opens (`output.mp4`, `poster.jpg`;
//! `stream.m3u8` is reserved for the HLS stream) and the token is `{job}.{expires}.{key id}.{sig}`,
//! where `sig` is base64url(HMAC-SHA256(MEDIAQ_LINK_KEY, "mediaq-link-v1\n{job}\n{what}\n{expires}\n{key id}")).
//! The signature covers the job, what the link opens, its expiry (unix seconds) and the API key
//! that issued it (for an upload token: the key that minted the token), so a link opens nothing
//! else, dies at its expiry, and dies with its key (checked on every request through the key
//! cache, which NOTIFY keeps current on every API process). The file part keeps relative URLs
//! inside the signed prefix (an HLS playlist's segments will resolve under the same token).
//!
//! Key handling follows MEDIAQ_SECRETS_KEY's: unset, the service still works, safely. Without
//! MEDIAQ_LINK_KEY each API process signs with a random key of its own (links then open only on
//! the process that issued them, until it restarts) and says so at start-up.

use std::time::Duration;

use hmac::{Hmac, Mac};
use mediaq_shared::{config::duration, JobId};
use sha2::Sha256;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

/// What a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Output,
    Poster,
    /// The HLS stream of a job still converting (not served yet: issue #27, item 3).
    Stream,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Output => "output",
            Target::Poster => "poster",
            Target::Stream => "stream",
        }
    }

    /// The last path segment of a link to this target.
    pub fn file_name(self) -> &'static str {
        match self {
            Target::Output => "output.mp4",
            Target::Poster => "poster.jpg",
            Target::Stream => "stream.m3u8",
        }
    }

    pub fn from_file_name(name: &str) -> Option<Self> {
        [Target::Output, Target::Poster, Target::Stream].into_iter().find(|t| t.file_name() == name)
    }
}

/// Playback links' settings.
#[derive(Clone, clap::Args)]
pub struct LinkConfig {
    /// 64 hex digits (`openssl rand -hex 32`), the same on every API process: signs playback links.
    #[arg(long = "link-key", id = "link_key", env = "MEDIAQ_LINK_KEY", hide_env_values = true, value_parser = key_from_hex)]
    key: Option<LinkKey>,
    /// Earlier link keys, comma-separated: links they signed still open until they expire.
    #[arg(long = "link-key-previous", id = "link_key_previous", env = "MEDIAQ_LINK_KEY_PREVIOUS", hide_env_values = true, value_parser = keys_from_hex, requires = "link_key")]
    previous: Option<LinkKeys>,
    /// Lifetime of the links in a job's JSON and of `GET /v1/jobs/{id}/links` without `expires_in`.
    #[arg(long = "link-ttl", id = "link_ttl", env = "MEDIAQ_LINK_TTL", default_value = "1h", value_parser = link_ttl)]
    pub ttl: Duration,
    /// Longest lifetime a caller may ask for.
    #[arg(long = "link-max-ttl", id = "link_max_ttl", env = "MEDIAQ_LINK_MAX_TTL", default_value = "24h", value_parser = link_ttl)]
    pub max_ttl: Duration,
    /// With S3 storage: answer a link to the MP4 with a redirect to a presigned object URL instead
    /// of streaming the bytes through the API.
    #[arg(long = "link-s3-redirect", id = "link_s3_redirect", env = "MEDIAQ_LINK_S3_REDIRECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_redirect: bool,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .field("previous", &self.previous.as_ref().map(|k| k.0.len()))
            .field("ttl", &self.ttl)
            .field("max_ttl", &self.max_ttl)
            .field("s3_redirect", &self.s3_redirect)
            .finish()
    }
}

#[derive(Clone)]
struct LinkKey([u8; 32]);

#[derive(Clone, Default)]
struct LinkKeys(Vec<LinkKey>);

fn key_from_hex(v: &str) -> Result<LinkKey, String> {
    let bytes = hex::decode(v.trim()).map_err(|_| "expected 64 hex digits".to_owned())?;
    let key: [u8; 32] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("expected 32 bytes (64 hex digits), got {}", b.len()))?;
    Ok(LinkKey(key))
}

fn keys_from_hex(list: &str) -> Result<LinkKeys, String> {
    list.split(',').filter(|k| !k.trim().is_empty()).map(key_from_hex).collect::<Result<_, _>>().map(LinkKeys)
}

fn link_ttl(v: &str) -> Result<Duration, String> {
    match duration(v)? {
        d if d < Duration::from_secs(1) => Err("must be at least 1s".into()),
        d if d > Duration::from_secs(30 * 86_400) => Err("must be at most 30d".into()),
        d => Ok(d),
    }
}

/// A verified link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub job: JobId,
    pub target: Target,
    /// Unix seconds.
    pub expires: i64,
    /// The API key that issued it.
    pub key_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Malformed, or its signature does not match (altered, or signed with another key).
    Invalid,
    Expired,
}

/// Signs and verifies links.
pub struct LinkSigner {
    /// The first signs; all verify.
    keys: Vec<[u8; 32]>,
    pub ttl: Duration,
    pub max_ttl: Duration,
    pub s3_redirect: bool,
    /// The key is this process's own (MEDIAQ_LINK_KEY unset).
    pub ephemeral: bool,
}

type HmacSha256 = Hmac<Sha256>;

impl LinkSigner {
    pub fn new(config: &LinkConfig) -> Self {
        let (first, ephemeral) = match &config.key {
            Some(k) => (k.0, false),
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).expect("the OS random source");
                (key, true)
            }
        };
        let previous = config.previous.iter().flat_map(|k| k.0.iter().map(|k| k.0));
        Self {
            keys: std::iter::once(first).chain(previous).collect(),
            ttl: config.ttl,
            max_ttl: config.max_ttl.max(config.ttl),
            s3_redirect: config.s3_redirect,
            ephemeral,
        }
    }

    fn mac(key: &[u8; 32], job: JobId, target: Target, expires: i64, key_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(format!("mediaq-link-v1\n{job}\n{}\n{expires}\n{key_id}", target.as_str()).as_bytes());
        mac
    }

    /// The path of a link (`/v1/play/{token}/{file}`).
    pub fn sign(&self, job: JobId, target: Target, expires: i64, key_id: &str) -> String {
        let sig = Self::mac(&self.keys[0], job, target, expires, key_id).finalize().into_bytes();
        format!("/v1/play/{job}.{expires}.{key_id}.{}/{}", URL_SAFE_NO_PAD.encode(sig), target.file_name())
    }

    /// Checks `token` as a link to `target` at unix time `now`. The signature is checked before
    /// the expiry, so an altered expiry is `Invalid`, never `Expired`.
    pub fn verify(&self, token: &str, target: Target, now: i64) -> Result<Link, LinkError> {
        let mut parts = token.split('.');
        let (Some(job), Some(expires), Some(key_id), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Invalid);
        };
        let job: JobId = job.parse().map_err(|_| LinkError::Invalid)?;
        // Digits only: `+1`, `01` and the like would sign differently from what they parse to.
        if expires.is_empty()
            || expires.len() > 12
            || !expires.bytes().all(|b| b.is_ascii_digit())
            || expires.starts_with('0')
        {
            return Err(LinkError::Invalid);
        }
        let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LinkError::Invalid);
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Invalid)?;
        // verify_slice compares in constant time.
        if !self.keys.iter().any(|k| Self::mac(k, job, target, expires, key_id).verify_slice(&sig).is_ok()) {
            return Err(LinkError::Invalid);
        }
        if expires <= now {
            return Err(LinkError::Expired);
        }
        Ok(Link { job, target, expires, key_id: key_id.to_owned() })
    }

    /// The expiry (unix seconds) of a link asked for at `now`: `requested` seconds from now
    /// (1 to MEDIAQ_LINK_MAX_TTL), or the default lifetime.
    pub fn expiry(&self, now: i64, requested: Option<u64>) -> Result<i64, String> {
        match requested {
            Some(0) => Err("expires_in must be at least 1 second".into()),
            Some(s) if s > self.max_ttl.as_secs() => {
                Err(format!("expires_in is at most {} seconds (MEDIAQ_LINK_MAX_TTL)", self.max_ttl.as_secs()))
            }
            Some(s) => Ok(now + s as i64),
            None => Ok(now + self.ttl.as_secs() as i64),
        }
    }

    /// The expiry of the links shown in a job's JSON at `now`: the default lifetime, rounded down
    /// to a step of a twelfth of it (at most 5 minutes), so that polling sees the same links
    /// (and the same ETag) for a while, and a link never outlives the configured lifetime.
    pub fn view_expiry(&self, now: i64) -> i64 {
        let ttl = self.ttl.as_secs() as i64;
        let step = (ttl / 12).clamp(1, 300);
        (now + ttl) / step * step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn signer(key: Option<&str>, previous: Option<&str>) -> LinkSigner {
        LinkSigner::new(&LinkConfig {
            key: key.map(|k| key_from_hex(k).unwrap()),
            previous: previous.map(|k| keys_from_hex(k).unwrap()),
            ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            s3_redirect: false,
        })
    }

    fn token(path: &str) -> (&str, &str) {
        path.strip_prefix("/v1/play/").unwrap().split_once('/').unwrap()
    }

    #[test]
    fn a_link_opens_its_job_and_target_until_it_expires() {
        let s = signer(Some(KEY), None);
        let job = JobId::generate();
        let path = s.sign(job, Target::Output, 1_000, "0123456789abcdef");
        let (tok, file) = token(&path);
        assert_eq!(file, "output.mp4");
        let link = s.verify(tok, Target::Output, 999).unwrap();
        assert_eq!(link, Link { job, target: Target::Output, expires: 1_000, key_id: "0123456789abcdef".into() });
        assert_eq!(s.verify(tok, Target::Output, 1_000), Err(LinkError::Expired));
        assert_eq!(s.verify(tok, Target::Poster, 999), Err(LinkError::Invalid), "another target");
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let s = signer(Some(KEY), None);
        let job = JobId::generate();
        let path = s.sign(job, Target::Poster, 5_000, "0123456789abcdef");
        let (tok, _) = token(&path);
        let parts: Vec<&str> = tok.split('.').collect();
        let other = JobId::generate().to_string();
        let variants = [
            format!("{other}.{}.{}.{}", parts[1], parts[2], parts[3]),
            format!("{}.9999999.{}.{}", parts[0], parts[2], parts[3]),
            format!("{}.{}.{}.{}", parts[0], parts[1], "fedcba9876543210", parts[3]),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], &parts[3][1..]),
            format!("{}.0{}.{}.{}", parts[0], parts[1], parts[2], parts[3]),
            format!("{}.+{}.{}.{}", parts[0], parts[1], parts[2], parts[3]),
            format!("{tok}.x"),
            String::new(),
            "a.b.c.d".into(),
        ];
        for bad in &variants {
            assert_eq!(s.verify(bad, Target::Poster, 0), Err(LinkError::Invalid), "{bad}");
        }
        // An expiry pushed into the past is a tampered link, not an expired one.
        let past = format!("{}.10.{}.{}", parts[0], parts[2], parts[3]);
        assert_eq!(s.verify(&past, Target::Poster, 100), Err(LinkError::Invalid));
    }

    #[test]
    fn keys_rotate_through_previous_and_random_keys_differ() {
        let job = JobId::generate();
        let old = signer(Some(KEY), None);
        let path = old.sign(job, Target::Output, 5_000, "k1");
        let new_key = KEY.replace("00", "ff");
        assert!(signer(Some(&new_key), Some(KEY)).verify(token(&path).0, Target::Output, 1).is_ok());
        assert_eq!(signer(Some(&new_key), None).verify(token(&path).0, Target::Output, 1), Err(LinkError::Invalid));
        let (a, b) = (signer(None, None), signer(None, None));
        assert!(a.ephemeral && !old.ephemeral);
        let path = a.sign(job, Target::Output, 5_000, "k1");
        assert!(a.verify(token(&path).0, Target::Output, 1).is_ok());
        assert_eq!(b.verify(token(&path).0, Target::Output, 1), Err(LinkError::Invalid));
    }

    #[test]
    fn expiries_are_capped_and_view_links_are_stable() {
        let s = signer(Some(KEY), None);
        assert_eq!(s.expiry(100, None), Ok(3_700));
        assert_eq!(s.expiry(100, Some(60)), Ok(160));
        assert!(s.expiry(100, Some(0)).is_err());
        assert!(s.expiry(100, Some(86_401)).is_err());
        assert_eq!(s.expiry(100, Some(86_400)), Ok(86_500));
        let e = s.view_expiry(1_000_000);
        assert!(e <= 1_000_000 + 3_600 && e > 1_000_000 + 3_600 - 300, "{e}");
        assert_eq!(s.view_expiry(1_000_200), s.view_expiry(1_000_299), "the same links within a step");
        assert_eq!(s.view_expiry(1_000_200), 1_003_800);
        assert!(key_from_hex(&KEY[..62]).is_err() && link_ttl("0s").is_err() && link_ttl("31d").is_err());
    }

    #[test]
    fn file_names_name_targets() {
        for t in [Target::Output, Target::Poster, Target::Stream] {
            assert_eq!(Target::from_file_name(t.file_name()), Some(t));
        }
        assert_eq!(Target::from_file_name("output.mkv"), None);
    }
}
