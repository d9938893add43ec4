//! Prometheus exposition shared by the API (`/metrics`) and the worker (`MEDIAQ_METRICS_BIND`):
//! the text encoding (OpenMetrics text, which Prometheus scrapes natively), its content type, and
//! the optional bearer token (MEDIAQ_METRICS_TOKEN) both endpoints require when it is set.

use prometheus_client::{encoding::text, registry::Registry};
use sha2::{Digest, Sha256};

/// The exposition format `render` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets, in seconds, for request latencies (uploads of large files take minutes).
pub const HTTP_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The registry in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// Whether an `Authorization` header value carries `token` as a bearer credential. The digests
/// are compared, so the comparison's timing says nothing about the token.
pub fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    let Some(given) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

/// The status class of an HTTP status code (`2xx`...), a bounded label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn status_classes_are_bounded() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(status_class(999), "5xx");
    }
}
