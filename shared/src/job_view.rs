//! The job as clients see it (JSON): the API's responses and webhook events share it.

use serde_json::{json, Value};

use crate::{db::attempts::AttemptRecord, Job, JobStatus};

/// The job with the history of its attempts (exit cause and resource usage of each).
pub fn to_json(job: &Job, attempts: &[AttemptRecord]) -> Value {
    let self_link = format!("/v1/jobs/{}", job.id);
    let output_link =
        (job.status == JobStatus::Succeeded && job.files_deleted_at.is_none()).then(|| format!("{self_link}/output"));
    let poster_link = output_link
        .as_ref()
        .filter(|_| job.output.as_ref().is_some_and(|o| o.poster.is_some()))
        .map(|_| format!("{self_link}/poster"));
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
        "priority": job.priority,
        // Filled by the API for an unfinished job ([`set_queue`]): its place in line and ETA.
        "queue": null,
        "attempt_history": attempts,
        "links": { "self": self_link, "output": output_link, "poster": poster_link },
    })
}

/// Sets the view's `queue` (the API's place-in-line facts of an unfinished job).
pub fn set_queue(view: &mut Value, queue: Value) {
    if let Some(map) = view.as_object_mut() {
        map.insert("queue".into(), queue);
    }
}
