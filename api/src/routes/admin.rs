//! Operator routes (`admin` scope): requeue a failed job, and queue statistics.

use axum::{extract::State, Json};
use mediaq_shared::{
    db::{audit, audit::AuditEvent, jobs},
    queue,
};
use serde_json::{json, Value};

use super::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError, request_id};

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require_key()?;
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope("admin"))
    }
}

/// `POST /v1/admin/jobs/{id}/requeue`: a failed job (a dead letter) gets a fresh retry budget.
pub async fn requeue(State(state): State<AppState>, caller: Caller, id: JobIdPath) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let id = id.0;
    let mut tx = state.pool.begin().await?;
    if !jobs::requeue_failed(&mut *tx, id).await? {
        return Err(ApiError::JobNotRequeueable);
    }
    queue::enqueue(&mut tx, queue::TranscodeTask { job_id: id }, None).await.map_err(|e| match e {
        apalis_postgres::Error::Database(e) => e.into(),
        other => ApiError::internal(other),
    })?;
    let event = AuditEvent::new(caller.actor(), "job.requeued").job(id).request(request_id::current(), None);
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Json(json!({ "id": id, "status": "queued" })))
}

/// `GET /v1/admin/stats`: jobs by status, queue depth and the age of the oldest queued job.
pub async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&state.pool)
            .await?;
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM jobs WHERE status = 'queued'",
    )
    .fetch_one(&state.pool)
    .await?;
    let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_jobs").fetch_one(&state.pool).await?;
    let statuses: serde_json::Map<String, Value> = by_status.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(Json(json!({
        "jobs_by_status": statuses,
        "queue_depth": statuses.get("queued").cloned().unwrap_or(json!(0)),
        "oldest_queued_age_s": oldest,
        "dead_letters": dead_letters,
    })))
}
