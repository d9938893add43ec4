//! Operator routes (`admin` scope): requeue a failed job, and queue statistics.

use axum::routing::{get, post};
use axum::{extract::State, Json};
use mediaq_shared::{
    db::{audit, audit::AuditEvent, jobs, stats},
    queue,
};
use serde_json::{json, Value};

use super::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError, request_id};

/// Admin routes: an API key with the `admin` scope.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require_key()?;
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope("admin"))
    }
}

#[utoipa::path(post, path = "/v1/admin/jobs/{id}/requeue", tag = "admin", operation_id = "requeue_job",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated).")),
    responses(
        (status = 200, description = "Requeued.", body = crate::openapi::schemas::Requeued),
        (status = 409, description = "job_not_requeueable"),
    ))]
/// `POST /v1/admin/jobs/{id}/requeue`: a failed job (a dead letter) gets a fresh retry budget.
pub async fn requeue(State(state): State<AppState>, caller: Caller, id: JobIdPath) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let id = id.0;
    let mut tx = state.pool.begin().await?;
    let Some(status) = jobs::requeue_failed(&mut *tx, id).await? else {
        return Err(ApiError::JobNotRequeueable);
    };
    queue::enqueue_placed(&mut tx, id, queue::Lane::for_status(status), None, false).await?;
    let event = AuditEvent::new(caller.actor(), "job.requeued").job(id).request(request_id::current(), None);
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Json(json!({ "id": id, "status": "queued" })))
}

#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", operation_id = "admin_stats",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Queue statistics.", body = crate::openapi::schemas::AdminStats)))]
/// `GET /v1/admin/stats`: jobs by status, queue depth and the age of the oldest queued job.
pub async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let stats = stats::queue_stats(&state.pool).await?;
    let statuses: serde_json::Map<String, Value> =
        stats.jobs_by_status.iter().map(|(s, n)| (s.clone(), json!(n))).collect();
    Ok(Json(json!({
        "jobs_by_status": statuses,
        "queue_depth": stats.jobs("queued"),
        "oldest_queued_age_s": stats.oldest_queued_age_s,
        "oldest_due_age_s": stats.oldest_due_age_s,
        "pending_tasks": stats.pending_tasks,
        "dead_letters": stats.dead_letters,
    })))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/admin/jobs/{id}/requeue", post(requeue)).route("/v1/admin/stats", get(stats))
}
