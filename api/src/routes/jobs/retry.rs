//! `POST /v1/jobs/{id}/retry`: a failed job whose input is still stored goes back to the queue
//! with a new attempt budget. Idempotent: a job a retry already sent back is answered as it is.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use mediaq_shared::{
    apikey::Scope,
    db::{attempts, audit, audit::AuditEvent, jobs, retry},
    job_view, queue,
    storage::Storage,
    JobId, JobStatus,
};
use serde_json::json;

use crate::routes::{visible_job, JobIdPath};
use crate::{app::AppState, auth::Caller, error::ApiError, request_id};

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The job went back to the queue now.
    Now,
    /// An earlier retry (or requeue) already had; nothing changed.
    Already,
}

/// Send a failed job through again.
///
/// The job must have `failed` and its input must still be stored: it gets a new attempt budget
/// (`MEDIAQ_MAX_ATTEMPTS` more attempts) and goes back to the queue (`queued`), audited as
/// `job.retried`. A job that an earlier retry already sent back (queued, processing) is answered
/// as it is, with `Idempotent-Replayed: true`. An admin key may retry any job, other keys their
/// own (`jobs:write`); upload tokens cannot.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", operation_id = "retry_job",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated).")),
    responses(
        (status = 200, description = "The job, back in the queue.", body = crate::openapi::schemas::JobSchema, headers(
            ("Idempotent-Replayed" = String, description = "`true` when an earlier retry had already sent the job back (nothing changed)."),
        )),
        (status = 404, description = "job_not_found"),
        (status = 409, description = "job_not_failed"),
        (status = 410, description = "input_gone"),
    ))]
#[tracing::instrument(name = "retry_job", skip_all, fields(job_id = %id.0))]
pub async fn retry(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    id: JobIdPath,
) -> Result<Response, ApiError> {
    caller.require_key()?;
    caller.require(Scope::JobsWrite)?;
    let id = id.0;
    visible_job(&state, &caller, id).await?;
    let retried = retry_job(&state, &caller.actor(), Some(peer.ip()), id).await?;
    let job = jobs::get(&state.pool, id).await?.ok_or(ApiError::JobNotFound)?;
    let history = attempts::list(&state.pool, id).await?;
    let mut response = Json(job_view::to_json(&job, &history)).into_response();
    if retried == Retried::Already {
        response.headers_mut().insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Sends the failed job `id` back to the queue (one transaction: the job row under its lock, a
/// new attempt budget, the queue task, the audit row), or says why not.
pub async fn retry_job(
    state: &AppState,
    actor: &str,
    ip: Option<std::net::IpAddr>,
    id: JobId,
) -> Result<Retried, ApiError> {
    let mut tx = state.pool.begin().await?;
    let facts = retry::lock_facts(&mut tx, id).await?.ok_or(ApiError::JobNotFound)?;
    match facts.status {
        JobStatus::Failed => {}
        JobStatus::Receiving | JobStatus::Queued | JobStatus::Processing if facts.retried_before => {
            return Ok(Retried::Already)
        }
        other => return Err(ApiError::JobNotFailed(other.as_str())),
    }
    if facts.files_deleted {
        return Err(ApiError::InputGone("its files were deleted"));
    }
    if facts.upload_incomplete {
        return Err(ApiError::InputGone("its resumable upload never received its last byte"));
    }
    if !Storage::is_segmented(&facts.input_key) {
        if let Err(e) = state.storage.head(&facts.input_key).await {
            if e.is_not_found() {
                tracing::warn!(key = %facts.input_key, "a failed job's input is missing from storage");
                return Err(ApiError::InputGone("its input is no longer in storage"));
            }
            return Err(e.into());
        }
    }
    let Some(status) = jobs::requeue_failed(&mut *tx, id).await? else {
        return Err(ApiError::internal("the locked failed job could not be requeued"));
    };
    queue::enqueue_placed(&mut tx, id, queue::Lane::for_status(status), None, false).await?;
    let details = json!({ "attempts_before": facts.attempts, "error_code_before": facts.error_code });
    let event = AuditEvent::new(actor, "job.retried").job(id).request(request_id::current(), ip).details(details);
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    tracing::info!(attempts_before = facts.attempts, "failed job sent back to the queue");
    Ok(Retried::Now)
}
