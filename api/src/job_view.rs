//! The job as clients see it (JSON), with a strong ETag over the exact body.

use mediaq_shared::{db::attempts::AttemptRecord, Job, JobStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The job with the history of its attempts (exit cause and resource usage of each).
pub fn to_json(job: &Job, attempts: &[AttemptRecord]) -> Value {
    let self_link = format!("/v1/jobs/{}", job.id);
    let output_link =
        (job.status == JobStatus::Succeeded && job.files_deleted_at.is_none()).then(|| format!("{self_link}/output"));
    json!({
        "id": job.id,
        "status": job.status,
        "progress": (f64::from(job.progress) * 1000.0).round() / 1000.0,
        "attempts": job.attempts,
        "error": job.error,
        "input": {
            "filename": job.input.filename.as_str(),
            "size_bytes": job.input.size,
            "sha256": job.input.sha256,
            "content_type": job.input.content_type,
        },
        "output": job.output,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "next_attempt_at": job.next_attempt_at,
        "files_deleted_at": job.files_deleted_at,
        "attempt_history": attempts,
        "links": { "self": self_link, "output": output_link },
    })
}

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
