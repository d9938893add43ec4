//! `Idempotency-Key` on `POST /v1/jobs`, with Stripe's semantics: the same key with the same
//! request replays the job it created; with a different request it is refused (422); while the
//! first request is still executing, a duplicate is refused (409). Keys expire after 24 hours.
//! A request that fails creates nothing and releases its key.

use axum::http::HeaderMap;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = value.to_str().ok().map(str::trim).unwrap_or_default();
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into()));
        }
        Ok(Some(Self(key.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, v.parse().unwrap());
        h
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(IdempotencyKey::from_headers(&HeaderMap::new()).unwrap(), None);
        assert_eq!(IdempotencyKey::from_headers(&headers("abc-123")).unwrap().unwrap().as_str(), "abc-123");
        assert!(IdempotencyKey::from_headers(&headers(&"k".repeat(256))).is_err());
        assert!(IdempotencyKey::from_headers(&headers("a b")).is_err());
        assert!(IdempotencyKey::from_headers(&headers("  ")).is_err());
    }
}
