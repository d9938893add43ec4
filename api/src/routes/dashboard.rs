//! The operators' dashboard routes (`admin` scope): every number the `/admin` page shows, so
//! scripts see what the page sees. Thin handlers over `mediaq_shared::db::dashboard`.

use axum::{
    extract::{Query, State},
    routing::get,
    Json,
};
use mediaq_shared::db::dashboard;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::require_admin;
use crate::{app::AppState, auth::Caller, error::ApiError};

/// How many examples each failure code shows.
const EXAMPLES_PER_CODE: i64 = 3;
const DEFAULT_DEAD_LETTERS: i64 = 50;
const MAX_DEAD_LETTERS: i64 = 500;

/// The span a route looks back over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Hour,
    Day,
}

impl Window {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.unwrap_or("hour") {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            other => Err(ApiError::BadRequest(format!("window must be `hour` or `day`, not {other:?}"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// (span, step) in minutes: 60 buckets of a minute, or 96 of 15 minutes.
    fn minutes(self) -> (i32, i32) {
        match self {
            Self::Hour => (60, 1),
            Self::Day => (1440, 15),
        }
    }
}

#[derive(Deserialize)]
pub struct WindowQuery {
    window: Option<String>,
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/admin/series", tag = "admin", operation_id = "admin_series",
    security(("bearer" = ["admin"])),
    params(("window" = Option<crate::openapi::dashboard_schemas::Window>, Query, description = "`hour` (default: 60 one-minute buckets) or `day` (96 of 15 minutes).")),
    responses((status = 200, description = "The queue over time.", body = crate::openapi::dashboard_schemas::Series)))]
/// `GET /v1/admin/series`: queue depth, attempts started and jobs ended per minute, the wait
/// before the first attempt (p50, p95) and conversion speed, bucket by bucket.
#[tracing::instrument(name = "admin_series", skip_all)]
pub async fn series(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<WindowQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let window = Window::parse(q.window.as_deref())?;
    let (span, step) = window.minutes();
    let buckets = dashboard::series(&state.pool, span, step).await?;
    Ok(Json(json!({ "window": window.name(), "step_s": step * 60, "buckets": buckets })))
}

#[utoipa::path(get, path = "/v1/admin/failures", tag = "admin", operation_id = "admin_failures",
    security(("bearer" = ["admin"])),
    params(("window" = Option<crate::openapi::dashboard_schemas::Window>, Query, description = "`hour` (default) or `day`.")),
    responses((status = 200, description = "Failures by code.", body = crate::openapi::dashboard_schemas::Failures)))]
/// `GET /v1/admin/failures`: jobs that failed in the window, counted by code, with the latest
/// examples of each.
#[tracing::instrument(name = "admin_failures", skip_all)]
pub async fn failures(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<WindowQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let window = Window::parse(q.window.as_deref())?;
    let groups = dashboard::failures(&state.pool, window.minutes().0, EXAMPLES_PER_CODE).await?;
    Ok(Json(json!({ "window": window.name(), "groups": groups })))
}

#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "admin", operation_id = "admin_dead_letters",
    security(("bearer" = ["admin"])),
    params(("limit" = Option<u64>, Query, minimum = 0, maximum = 4294967295u64, description = "At most this many, newest first (default 50, 1 to 500; others are clamped).")),
    responses((status = 200, description = "Dead letters.", body = crate::openapi::dashboard_schemas::DeadLetters)))]
/// `GET /v1/admin/dead-letters`: failed jobs that used up their attempts, newest first, and
/// whether each can be retried (`POST /v1/jobs/{id}/retry` needs its input).
#[tracing::instrument(name = "admin_dead_letters", skip_all)]
pub async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let limit = q.limit.map_or(DEFAULT_DEAD_LETTERS, i64::from).clamp(1, MAX_DEAD_LETTERS);
    let list = dashboard::dead_letters(&state.pool, limit).await?;
    let total = dashboard::dead_letter_count(&state.pool).await?;
    Ok(Json(json!({ "dead_letters": list, "total": total })))
}

#[utoipa::path(get, path = "/v1/admin/workers", tag = "admin", operation_id = "admin_workers",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Live workers.", body = crate::openapi::dashboard_schemas::Workers)))]
/// `GET /v1/admin/workers`: worker processes alive now, with the sandbox layers their start-up
/// self-check found and the attempts they run.
#[tracing::instrument(name = "admin_workers", skip_all)]
pub async fn workers(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(json!({ "workers": dashboard::workers(&state.pool).await? })))
}

#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin", operation_id = "admin_tenants",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Use per key.", body = crate::openapi::dashboard_schemas::Tenants)))]
/// `GET /v1/admin/tenants`: each API key's unfinished jobs and bytes of the last 24 hours against
/// the quotas, and its uploads in progress.
#[tracing::instrument(name = "admin_tenants", skip_all)]
pub async fn tenants(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(json!({
        "quota_active_jobs": state.config.quota_active_jobs,
        "quota_daily_bytes": state.config.quota_daily_bytes,
        "tenants": dashboard::tenants(&state.pool).await?,
    })))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/admin/series", get(series))
        .route("/v1/admin/failures", get(failures))
        .route("/v1/admin/dead-letters", get(dead_letters))
        .route("/v1/admin/workers", get(workers))
        .route("/v1/admin/tenants", get(tenants))
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn windows_parse_and_bucket() {
        assert_eq!(Window::parse(None).unwrap(), Window::Hour);
        assert_eq!(Window::parse(Some("day")).unwrap().minutes(), (1440, 15));
        assert!(Window::parse(Some("week")).is_err());
    }
}
