//! Webhook signatures: `Mediaq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
//! with one `v1` per valid secret while a rotation's grace period lasts.
//!
//! [`verify`] is what a receiver should do: parse the header, refuse a timestamp outside the
//! tolerance (replays), and compare each `v1` against its own HMAC in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Mediaq-Signature";
/// The header carrying the event id, stable across retries (for the receiver's dedupe).
pub const EVENT_ID_HEADER: &str = "Mediaq-Event-Id";
/// The tolerance receivers should allow between the signature's time and their clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A signing secret: `whsec_` and 64 hex digits (256 random bits).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    format!("whsec_{}", hex::encode(bytes))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value for `body` sent at `timestamp`, one `v1` per secret.
pub fn sign(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, timestamp, body).finalize().into_bytes()));
    }
    header
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a `Mediaq-Signature` header against the raw body, one secret and the receiver's clock
/// (`now`, unix seconds), allowing `tolerance_secs` of difference either way.
pub fn verify(header: &str, body: &[u8], secret: &str, now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", sig)) => candidates.push(hex::decode(sig).map_err(|_| VerifyError::Malformed)?),
            Some(_) => {} // other schemes: ignored, as receivers should
            None => return Err(VerifyError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    let mut matched = subtle::Choice::from(0);
    for candidate in &candidates {
        matched |= expected[..].ct_eq(candidate.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"e1","type":"job.succeeded"}"#;

    #[test]
    fn signs_and_verifies() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64);
        let header = sign(&[&secret], 1_700_000_000, BODY);
        assert_eq!(verify(&header, BODY, &secret, 1_700_000_100, 300), Ok(()));
    }

    #[test]
    fn known_vector() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"whsec_test", b"1700000000.hello", hashlib.sha256).hexdigest())'
        let header = sign(&["whsec_test"], 1_700_000_000, b"hello");
        assert_eq!(header, "t=1700000000,v1=457c4d31b232d95fcd50f1d95021aaaffddd859d0ee8a206675e84ccc977431d");
    }

    #[test]
    fn tampered_body_or_wrong_secret_fails() {
        let header = sign(&["whsec_a"], 1_700_000_000, BODY);
        assert_eq!(verify(&header, b"{}", "whsec_a", 1_700_000_000, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(&header, BODY, "whsec_b", 1_700_000_000, 300), Err(VerifyError::Mismatch));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let header = sign(&["whsec_a"], 1_700_000_000, BODY);
        assert_eq!(verify(&header, BODY, "whsec_a", 1_700_000_301, 300), Err(VerifyError::Stale));
        assert_eq!(verify(&header, BODY, "whsec_a", 1_699_999_699, 300), Err(VerifyError::Stale));
        assert_eq!(verify(&header, BODY, "whsec_a", 1_700_000_300, 300), Ok(()));
    }

    #[test]
    fn rotation_carries_both_signatures() {
        let header = sign(&["whsec_new", "whsec_old"], 1_700_000_000, BODY);
        assert_eq!(header.matches("v1=").count(), 2);
        assert_eq!(verify(&header, BODY, "whsec_old", 1_700_000_000, 300), Ok(()));
        assert_eq!(verify(&header, BODY, "whsec_new", 1_700_000_000, 300), Ok(()));
    }

    #[test]
    fn malformed_headers_fail() {
        for header in ["", "t=abc,v1=00", "v1=00", "t=1700000000", "t=1700000000,v1=zz", "garbage"] {
            assert_eq!(verify(header, BODY, "whsec_a", 1_700_000_000, 300), Err(VerifyError::Malformed), "{header}");
        }
    }
}
