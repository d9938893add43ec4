//! Strong ETags over exact response bodies, and `If-None-Match`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Serializes the view and derives its ETag (a hash of the body: equal bodies, equal tags).
pub fn body_and_etag(view: &Value) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(view).expect("a JSON value always serializes");
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", hex::encode(&digest[..16]));
    (body, etag)
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, `*` matches all).
pub fn if_none_match_hits(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn if_none_match_forms() {
        let etag = "\"abc\"";
        assert!(if_none_match_hits("\"abc\"", etag));
        assert!(if_none_match_hits("W/\"abc\"", etag));
        assert!(if_none_match_hits("\"x\", \"abc\"", etag));
        assert!(if_none_match_hits("*", etag));
        assert!(!if_none_match_hits("\"abd\"", etag));
        assert!(!if_none_match_hits("", etag));
    }

    #[test]
    fn etag_tracks_the_body() {
        let (_, a) = body_and_etag(&json!({"status": "queued"}));
        let (_, b) = body_and_etag(&json!({"status": "processing"}));
        let (_, a2) = body_and_etag(&json!({"status": "queued"}));
        assert_ne!(a, b);
        assert_eq!(a, a2);
    }
}
