//! The audit trail: `GET /v1/jobs/{id}/events` (a job's trail, to its owner) and
//! `GET /v1/audit` (everything, admins only), newest first, cursor-paginated.

use axum::routing::get;
use axum::{
    extract::{Query, State},
    Json,
};
use mediaq_shared::{apikey::Scope, db::audit};
use serde::Deserialize;
use serde_json::{json, Value};

use super::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError};

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<i64>,
}

fn page(rows: Vec<audit::AuditRow>, limit: i64) -> Json<Value> {
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Json(json!({ "events": rows, "next_cursor": next }))
}

/// A job's audit trail, newest first.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "audit", operation_id = "job_events",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated)."),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 500 (default 100)."),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of the trail.", body = crate::openapi::schemas::AuditPage),
        (status = 404, description = "job_not_found"),
    ))]
pub async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::JobsRead)?;
    super::visible_job(&state, &caller, id.0).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(page(audit::list(&state.pool, Some(id.0), q.cursor, limit).await?, limit))
}

/// The whole audit trail (admins), newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "audit_trail",
    security(("bearer" = ["admin"])),
    params(
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 500 (default 100)."),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses((status = 200, description = "A page of the trail.", body = crate::openapi::schemas::AuditPage)))]
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_key()?;
    if !caller.is_admin() {
        return Err(ApiError::InsufficientScope("admin"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(page(audit::list(&state.pool, None, q.cursor, limit).await?, limit))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/jobs/{id}/events", get(job_events)).route("/v1/audit", get(all))
}
