//! `DELETE /v1/jobs/{id}`: cancel an unfinished job, or delete a finished job's files. Idempotent.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    response::{IntoResponse, Response},
    Json,
};
use mediaq_shared::{
    apikey::Scope,
    db::{attempts, audit, audit::AuditEvent, jobs},
    storage::Storage,
    Job, JobId,
};
use serde_json::json;

use crate::routes::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError, request_id};
use mediaq_shared::job_view;

/// Cancel an unfinished job, or delete a finished job's files. Idempotent.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", operation_id = "cancel_job",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated).")),
    responses(
        (status = 200, description = "The job, canceled (or finished, its files deleted).", body = crate::openapi::schemas::JobSchema),
        (status = 404, description = "job_not_found"),
    ))]
#[tracing::instrument(name = "cancel_job", skip_all, fields(job_id = %id.0))]
pub async fn cancel(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    id: JobIdPath,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsWrite)?;
    let id = id.0;
    crate::routes::visible_job(&state, &caller, id).await?;
    let job = cancel_job(&state, &caller, peer.ip(), id).await?;
    let history = attempts::list(&state.pool, id).await?;
    Ok(Json(job_view::to_json(&job, &history)).into_response())
}

/// Cancels the job `id` (the caller may see it) or deletes its files, audited; returns the job
/// as it now is. Also the termination of a resumable upload (`DELETE /v1/uploads/{id}`).
pub async fn cancel_job(state: &AppState, caller: &Caller, ip: std::net::IpAddr, id: JobId) -> Result<Job, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = jobs::cancel(&mut tx, id).await?.ok_or(ApiError::JobNotFound)?;
    let first_time = before.files_deleted_at.is_none();
    if first_time {
        let action = if before.status.is_terminal() { "job.files_deleted" } else { "job.canceled" };
        let event = AuditEvent::new(caller.actor(), action)
            .job(id)
            .request(request_id::current(), Some(ip))
            .details(json!({ "status_before": before.status }));
        audit::record(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    if first_time {
        // After the commit: a worker still running the job can no longer record an output.
        // Every attempt's output and poster (the recorded ones among them), then the input.
        if let Err(e) = state.storage.delete_prefix(&Storage::output_prefix(id)).await {
            tracing::error!(error = %e, "could not delete a job's outputs");
        }
        let output = before.output.map(|o| [Some(o.key), o.poster.map(|p| p.key)]).into_iter().flatten().flatten();
        for key in output.chain([before.input.key.clone()]) {
            if let Err(e) = state.storage.delete_input(&key).await {
                tracing::error!(error = %e, %key, "could not delete a job file");
            }
        }
        tracing::info!(status_before = before.status.as_str(), "job canceled or its files deleted");
    }
    jobs::get(&state.pool, id).await?.ok_or(ApiError::JobNotFound)
}
