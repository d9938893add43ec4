//! `GET /v1/jobs`: the caller's jobs (all jobs for admins), newest first, cursor-paginated,
//! optionally filtered by status.

use axum::{
    extract::{Query, State},
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use mediaq_shared::{apikey::Scope, db::jobs, JobId, JobStatus};
use serde::Deserialize;
use serde_json::json;

use crate::{app::AppState, auth::Caller, error::ApiError};
use mediaq_shared::job_view;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    /// The last id of the previous page.
    cursor: Option<String>,
}

/// The caller's jobs (every owner's for admins), newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", operation_id = "list_jobs",
    security(("bearer" = ["jobs:read"])),
    params(
        ("status" = Option<crate::openapi::schemas::JobStatus>, Query, description = "Only jobs with this status."),
        ("limit" = Option<u64>, Query, minimum = 0, maximum = 4294967295u64, description = "Page size, 1 to 200 (default 50; others are clamped)."),
        ("cursor" = Option<String>, Query, format = "uuid", description = "`next_cursor` of the previous page."),
    ),
    responses((status = 200, description = "A page of jobs.", body = crate::openapi::schemas::JobList)))]
#[tracing::instrument(name = "list_jobs", skip_all)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    caller.require_key()?;
    let status = q.status.map(|s| s.parse::<JobStatus>().map_err(ApiError::BadRequest)).transpose()?;
    let cursor = q
        .cursor
        .map(|c| c.parse::<JobId>().map_err(|_| ApiError::BadRequest("cursor must be a job id".into())))
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = jobs::list(&state.pool, caller.owner_filter(), status, cursor, i64::from(limit)).await?;
    let next_cursor = (page.len() == limit as usize).then(|| page.last().map(|j| j.id)).flatten();
    let mut items = Vec::with_capacity(page.len());
    for job in &page {
        let mut view = job_view::to_json(job, &[]);
        job_view::set_queue(&mut view, super::line::queue_view(&state, job).await?);
        super::add_play_links(&state, &caller, job, &mut view);
        items.push(view);
    }
    let mut response = Json(json!({ "jobs": items, "next_cursor": next_cursor })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
