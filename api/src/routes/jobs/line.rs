//! The `queue` member of an unfinished job's JSON: its lane, its place in line (jobs that will
//! start before it) and when it is estimated to start and finish ([`mediaq_shared::eta`]),
//! computed afresh on every read from the queue as it is then.

use chrono::{DateTime, SubsecRound, Utc};
use mediaq_shared::{db::line, eta, Job, JobStatus};
use serde_json::{json, Value};

use crate::{app::AppState, error::ApiError};

/// `null` for a finished job; else its lane, position and estimates (each `null` when unknown).
pub async fn queue_view(state: &AppState, job: &Job) -> Result<Value, ApiError> {
    if job.status.is_terminal() {
        return Ok(Value::Null);
    }
    let Some(line) = line::of_job(&state.pool, job.id).await? else {
        // A resumable upload's job out of the queue: its first bytes unchecked, its key at its
        // live limit, or its upload idle (it is queued again by the next bytes).
        return Ok(json!({
            "lane": job.lane,
            "position": null,
            "waiting_for_bytes": job.status == JobStatus::Receiving,
            "workers": null,
            "estimated_start_at": null,
            "estimated_finish_at": null,
        }));
    };
    let estimate = eta::estimate(&line, job.id, job.input.size);
    // Whole seconds: the body (and its ETag) stays put while nothing changes.
    let at = |seconds: f64| -> DateTime<Utc> {
        (Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64)).round_subsecs(0)
    };
    Ok(json!({
        "lane": line.lane,
        "position": line.position,
        "waiting_for_bytes": false,
        "workers": line.slots,
        "estimated_start_at": estimate.map(|e| if job.status == JobStatus::Processing { job.started_at.unwrap_or_else(Utc::now).round_subsecs(0) } else { at(e.start_in_s) }),
        "estimated_finish_at": estimate.map(|e| at(e.finish_in_s)),
    }))
}
