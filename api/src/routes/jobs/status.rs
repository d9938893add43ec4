//! `GET /v1/jobs/{id}`: status polling, with a strong ETag and `Retry-After`.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::{apikey::Scope, db::attempts, job_view, Job};

use crate::routes::{visible_job, JobIdPath};
use crate::{app::AppState, auth::Caller, error::ApiError, etag};

/// Seconds a client should wait before polling an unfinished job again.
const POLL_AFTER_SECS: &str = "1";

/// A job's status, progress, input and output facts, and its attempts.
///
/// Poll until `status` is terminal, waiting `Retry-After` seconds between polls; send the last
/// `ETag` in `If-None-Match` to get a bodiless 304 while nothing changed.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", operation_id = "get_job",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated)."),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier response."),
    ),
    responses(
        (status = 200, description = "The job.", body = crate::openapi::schemas::JobSchema, headers(
            ("ETag" = String, description = "Strong tag of this body."),
            ("Retry-After" = String, description = "Seconds before polling again (unfinished jobs only)."),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` tag.", headers(("ETag" = String))),
        (status = 404, description = "job_not_found"),
    ))]
#[tracing::instrument(name = "get_job", skip_all, fields(job_id = %id.0))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    let job = visible_job(&state, &caller, id.0).await?;
    let history = attempts::list(&state.pool, id.0).await?;
    let mut view = job_view::to_json(&job, &history);
    job_view::set_queue(&mut view, super::line::queue_view(&state, &job).await?);
    super::add_play_links(&state, &caller, &job, &mut view);
    let (body, etag) = etag::body_and_etag(&view);
    let not_modified = header_str(&headers, header::IF_NONE_MATCH).is_some_and(|h| etag::if_none_match_hits(h, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    };
    decorate(&mut response, &job, &etag);
    Ok(response)
}

/// `job` (without its attempts) as a response with `status`, its ETag and polling headers.
pub fn job_response(job: &Job, status: StatusCode) -> Response {
    let (body, etag) = etag::body_and_etag(&job_view::to_json(job, &[]));
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    decorate(&mut response, job, &etag);
    response
}

fn decorate(response: &mut Response, job: &Job, etag: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if !job.status.is_terminal() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(POLL_AFTER_SECS));
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
