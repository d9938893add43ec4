//! Webhook signing secrets at rest. They sign with HMAC, so they cannot be stored as a hash
//! (API keys can); with MEDIAQ_SECRETS_KEY set they are sealed with AES-256-GCM instead, bound
//! to their owner, so a copy of the database (a dump, a backup, a read-only leak) does not let
//! anyone forge mediaq's signatures.
//!
//! Stored form: `mqenc1:` + hex(12-byte random nonce || ciphertext || 16-byte tag), the owner as
//! associated data. A value without the prefix is a secret stored before the key was set; it is
//! still read as it is, and sealed once the owner rotates it or `mediaq-api secrets reseal` runs.
//!
//! Changing the key: put the old one in MEDIAQ_SECRETS_KEY_PREVIOUS (it still opens, never
//! seals), the new one in MEDIAQ_SECRETS_KEY, run `mediaq-api secrets reseal`, then drop the old.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

const PREFIX: &str = "mqenc1:";

/// Seals and opens signing secrets; without a key, it stores them as they are.
#[derive(Clone, Default, clap::Args)]
pub struct Sealer {
    /// 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`).
    #[arg(long = "secrets-key", id = "secrets_key", env = "MEDIAQ_SECRETS_KEY", hide_env_values = true, value_parser = key_from_hex)]
    key: Option<std::sync::Arc<LessSafeKey>>,
    /// Earlier keys, comma-separated: they open, never seal (only with MEDIAQ_SECRETS_KEY, the new key).
    #[arg(long = "secrets-key-previous", env = "MEDIAQ_SECRETS_KEY_PREVIOUS", hide_env_values = true, value_parser = keys_from_hex, requires = "secrets_key")]
    previous: Option<Keys>,
}

/// Earlier keys (MEDIAQ_SECRETS_KEY_PREVIOUS).
#[derive(Clone, Default)]
struct Keys(Vec<std::sync::Arc<LessSafeKey>>);

fn keys_from_hex(list: &str) -> Result<Keys, String> {
    list.split(',').filter(|k| !k.trim().is_empty()).map(key_from_hex).collect::<Result<_, _>>().map(Keys)
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() { "Sealer(AES-256-GCM)" } else { "Sealer(off)" })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("this signing secret is sealed but MEDIAQ_SECRETS_KEY is not set")]
    NoKey,
    #[error("this signing secret cannot be opened: MEDIAQ_SECRETS_KEY differs from the key that sealed it, or the value was altered")]
    Invalid,
}

impl Sealer {
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        Ok(Self { key: Some(key_from_hex(hex_key)?), previous: None })
    }

    /// Adds earlier keys, which open secrets sealed with them but never seal.
    pub fn with_previous(mut self, hex_keys: &[&str]) -> Result<Self, String> {
        for hex_key in hex_keys {
            self.previous.get_or_insert_with(Keys::default).0.push(key_from_hex(hex_key)?);
        }
        Ok(self)
    }

    pub fn is_on(&self) -> bool {
        self.key.is_some()
    }

    /// The form to store `secret` of `owner` in.
    pub fn seal(&self, owner: &str, secret: &str) -> String {
        let Some(key) = &self.key else { return secret.to_owned() };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source");
        let mut data = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(owner.as_bytes()), &mut data)
            .expect("AES-GCM sealing of a short secret");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&data);
        format!("{PREFIX}{}", hex::encode(stored))
    }

    /// The secret of `owner` from its stored form.
    pub fn open(&self, owner: &str, stored: &str) -> Result<String, OpenError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
        let key = self.key.as_ref().ok_or(OpenError::NoKey)?;
        let bytes = hex::decode(sealed).map_err(|_| OpenError::Invalid)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Invalid);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        for key in std::iter::once(key).chain(self.previous.iter().flat_map(|k| &k.0)) {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Invalid)?;
            let mut data = rest.to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(owner.as_bytes()), &mut data) {
                return String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Invalid);
            }
        }
        Err(OpenError::Invalid)
    }
}

fn key_from_hex(hex_key: &str) -> Result<std::sync::Arc<LessSafeKey>, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "expected 64 hex digits".to_owned())?;
    if bytes.len() != 32 {
        return Err(format!("expected 32 bytes (64 hex digits), got {}", bytes.len()));
    }
    let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "not an AES-256 key".to_owned())?;
    Ok(std::sync::Arc::new(LessSafeKey::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_owner() {
        let sealer = Sealer::from_hex(KEY).unwrap();
        let stored = sealer.seal("alice", "whsec_abc");
        assert!(stored.starts_with(PREFIX) && !stored.contains("whsec_abc"), "{stored}");
        assert_ne!(stored, sealer.seal("alice", "whsec_abc"), "a fresh nonce every time");
        assert_eq!(sealer.open("alice", &stored).unwrap(), "whsec_abc");
        assert_eq!(sealer.open("bob", &stored), Err(OpenError::Invalid), "bound to its owner");
        let other = Sealer::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert_eq!(other.open("alice", &stored), Err(OpenError::Invalid));
        assert_eq!(Sealer::default().open("alice", &stored), Err(OpenError::NoKey));
        let mut altered = stored.clone();
        altered.pop();
        altered.push(if stored.ends_with('0') { '1' } else { '0' });
        assert_eq!(sealer.open("alice", &altered), Err(OpenError::Invalid));
        assert_eq!(sealer.open("alice", "mqenc1:zz"), Err(OpenError::Invalid));
        assert_eq!(sealer.open("alice", "mqenc1:00"), Err(OpenError::Invalid));
    }

    #[test]
    fn a_previous_key_opens_but_never_seals() {
        let old = Sealer::from_hex(KEY).unwrap();
        let stored = old.seal("alice", "whsec_abc");
        let new_key = KEY.replace("00", "ff");
        let new = Sealer::from_hex(&new_key).unwrap().with_previous(&[KEY]).unwrap();
        assert_eq!(new.open("alice", &stored).unwrap(), "whsec_abc");
        let resealed = new.seal("alice", "whsec_abc");
        assert_eq!(Sealer::from_hex(&new_key).unwrap().open("alice", &resealed).unwrap(), "whsec_abc");
        assert_eq!(old.open("alice", &resealed), Err(OpenError::Invalid), "sealed with the new key only");
        assert!(Sealer::from_hex(KEY).unwrap().with_previous(&["abc"]).is_err());
    }

    #[test]
    fn without_a_key_secrets_are_stored_as_they_are_and_old_ones_still_read() {
        assert_eq!(Sealer::default().seal("alice", "whsec_abc"), "whsec_abc");
        assert_eq!(Sealer::from_hex(KEY).unwrap().open("alice", "whsec_old").unwrap(), "whsec_old");
    }

    #[test]
    fn keys_must_be_32_bytes_of_hex() {
        assert!(Sealer::from_hex(&KEY[..62]).is_err());
        assert!(Sealer::from_hex(&format!("{KEY}00")).is_err());
        assert!(Sealer::from_hex(&KEY.replace('a', "g")).is_err());
        assert!(Sealer::from_hex(&format!(" {KEY}\n")).unwrap().is_on());
    }
}
