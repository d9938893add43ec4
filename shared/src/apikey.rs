//! API keys and upload tokens: opaque bearer credentials.
//!
//! Format `<prefix>_<id>_<secret><checksum>`: `prefix` is `mq` (API key) or `mqt` (upload
//! token), `id` 16 hex characters (the database key), `secret` 64 hex characters (256 bits from
//! the OS CSPRNG), `checksum` 8 hex characters (CRC-32 of everything before it), so that a
//! mistyped or forged credential is refused without a database query. Only the SHA-256 of the
//! secret is stored, and it is compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
const CHECKSUM_HEX: usize = 8;

/// Which kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ApiKey,
    UploadToken,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::ApiKey => "mq",
            Kind::UploadToken => "mqt",
        }
    }
}

/// A parsed credential. Debug output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: Kind,
    pub id: String,
    secret: String,
}

/// A string that is not a well-formed credential (checked without the database).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed credential")]
pub struct Malformed;

impl Credential {
    /// A new credential of `kind` from the OS CSPRNG.
    pub fn generate(kind: Kind) -> Self {
        let mut id = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        getrandom::fill(&mut id).expect("the OS random source");
        getrandom::fill(&mut secret).expect("the OS random source");
        Self { kind, id: hex::encode(id), secret: hex::encode(secret) }
    }

    pub fn parse(s: &str) -> Result<Self, Malformed> {
        let (kind, rest) = if let Some(rest) = s.strip_prefix("mqt_") {
            (Kind::UploadToken, rest)
        } else if let Some(rest) = s.strip_prefix("mq_") {
            (Kind::ApiKey, rest)
        } else {
            return Err(Malformed);
        };
        let (id, tail) = rest.split_once('_').ok_or(Malformed)?;
        let lower_hex = |v: &str| v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if id.len() != ID_HEX || tail.len() != SECRET_HEX + CHECKSUM_HEX || !lower_hex(id) || !lower_hex(tail) {
            return Err(Malformed);
        }
        let (secret, checksum) = tail.split_at(SECRET_HEX);
        let credential = Self { kind, id: id.to_owned(), secret: secret.to_owned() };
        if credential.checksum() != checksum {
            return Err(Malformed);
        }
        Ok(credential)
    }

    fn body(&self) -> String {
        format!("{}_{}_{}", self.kind.prefix(), self.id, self.secret)
    }

    fn checksum(&self) -> String {
        format!("{:08x}", crc32fast::hash(self.body().as_bytes()))
    }

    /// The full credential, to show once to its owner.
    pub fn reveal(&self) -> String {
        format!("{}{}", self.body(), self.checksum())
    }

    /// What is stored: SHA-256 of the secret.
    pub fn secret_hash(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    /// Constant-time comparison with a stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        bool::from(self.secret_hash().as_slice().ct_eq(stored_hash))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_[redacted]", self.kind.prefix(), self.id)
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    JobsWrite,
    JobsRead,
    Admin,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::JobsWrite => "jobs:write",
            Scope::JobsRead => "jobs:read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "jobs:write" => Ok(Scope::JobsWrite),
            "jobs:read" => Ok(Scope::JobsRead),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?} (jobs:write, jobs:read, admin)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_parse_back() {
        for kind in [Kind::ApiKey, Kind::UploadToken] {
            let c = Credential::generate(kind);
            let shown = c.reveal();
            let parsed = Credential::parse(&shown).unwrap();
            assert_eq!(parsed, c);
            assert!(parsed.matches(&c.secret_hash()));
        }
        let key = Credential::generate(Kind::ApiKey).reveal();
        assert!(key.starts_with("mq_") && key.len() == 3 + 16 + 1 + 64 + 8);
    }

    #[test]
    fn malformed_credentials_are_refused_without_a_lookup() {
        let good = Credential::generate(Kind::ApiKey).reveal();
        let mut typo = good.clone().into_bytes();
        let last = typo.len() - 20;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        assert_eq!(Credential::parse(std::str::from_utf8(&typo).unwrap()), Err(Malformed));
        assert_eq!(Credential::parse("mq_short_abc"), Err(Malformed));
        assert_eq!(Credential::parse(""), Err(Malformed));
        assert_eq!(Credential::parse(&good.to_uppercase()), Err(Malformed));
        assert_eq!(Credential::parse(&good.replacen("mq_", "xx_", 1)), Err(Malformed));
    }

    #[test]
    fn secrets_differ_and_do_not_match_others() {
        let a = Credential::generate(Kind::ApiKey);
        let b = Credential::generate(Kind::ApiKey);
        assert_ne!(a.reveal(), b.reveal());
        assert!(!a.matches(&b.secret_hash()));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("jobs:write").unwrap(), Scope::JobsWrite);
        assert!(Scope::parse("root").is_err());
    }
}
