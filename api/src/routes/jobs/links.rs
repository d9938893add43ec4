//! `GET /v1/jobs/{id}/links`: signed playback links to a job's MP4 and poster for the caller
//! (see [`crate::playback`]), and the same links in the job's JSON (`links.play`).

use axum::{
    extract::{Query, State},
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use mediaq_shared::{apikey::Scope, Job};
use serde::Deserialize;
use serde_json::{json, Value};

use super::output::ready_output;
use crate::playback::Target;
use crate::routes::{visible_job, JobIdPath};
use crate::{app::AppState, auth::Caller, error::ApiError};

#[derive(Deserialize)]
pub struct LinksQuery {
    /// Seconds the links stay valid (default MEDIAQ_LINK_TTL, at most MEDIAQ_LINK_MAX_TTL).
    expires_in: Option<u64>,
}

/// Signed links that play the job's MP4 (and show its poster) without any header.
///
/// For a `<video src>`, or to hand to people who hold no credential: each link opens only this
/// job's file, until `expires_at`, and only while the API key that asked for it (for an upload
/// token: the key that minted it) is not revoked. Paths are relative to the API's address.
#[utoipa::path(get, path = "/v1/jobs/{id}/links", tag = "jobs", operation_id = "get_play_links",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated)."),
        ("expires_in" = Option<u64>, Query, minimum = 0, maximum = 4294967295u64, description = "Seconds the links stay valid: 1 to `MEDIAQ_LINK_MAX_TTL` (default `MEDIAQ_LINK_TTL`, 1 hour)."),
    ),
    responses(
        (status = 200, description = "The links.", body = crate::openapi::schemas::PlayLinks),
        (status = 400, description = "bad_request (expires_in out of range)"),
        (status = 404, description = "job_not_found"),
        (status = 409, description = "job_not_ready"),
        (status = 410, description = "output_gone"),
    ))]
#[tracing::instrument(name = "get_play_links", skip_all, fields(job_id = %id.0))]
pub async fn links(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    Query(query): Query<LinksQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    let job = visible_job(&state, &caller, id.0).await?;
    ready_output(&job)?;
    let now = chrono::Utc::now().timestamp();
    let expires = state.links.expiry(now, query.expires_in).map_err(ApiError::BadRequest)?;
    let body = play_links(&state, &caller, &job, expires).unwrap_or(Value::Null);
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The job's signed links for `caller`, valid until `expires` (unix seconds); `None` unless the
/// MP4 can be read now.
pub fn play_links(state: &AppState, caller: &Caller, job: &Job, expires: i64) -> Option<Value> {
    let sign = |target| state.links.sign(job.id, target, expires, &caller.key_id);
    let expires_at = chrono::DateTime::from_timestamp(expires, 0)?;
    let output = ready_output(job).ok()?;
    Some(json!({
        "output": sign(Target::Output),
        "poster": output.poster.as_ref().map(|_| sign(Target::Poster)),
        "expires_at": expires_at,
    }))
}

/// Adds `links.play` to a job's JSON for `caller` (null when there is nothing to play yet). The
/// expiry moves in steps ([`crate::playback::LinkSigner::view_expiry`]), so the ETag of an
/// unchanged job stays the same between polls for a while.
pub fn add_play_links(state: &AppState, caller: &Caller, job: &Job, view: &mut Value) {
    let expires = state.links.view_expiry(chrono::Utc::now().timestamp());
    view["links"]["play"] = play_links(state, caller, job, expires).unwrap_or(Value::Null);
    view["links"]["stream"] = stream_link(state, caller, job, expires).map_or(Value::Null, Value::from);
}

/// The signed HLS stream link while the job converts (segments appear as the worker stores
/// them, with `MEDIAQ_STREAM_SEGMENT_SECONDS` set); `None` otherwise.
pub fn stream_link(state: &AppState, caller: &Caller, job: &Job, expires: i64) -> Option<String> {
    (job.status == mediaq_shared::JobStatus::Processing && job.files_deleted_at.is_none())
        .then(|| state.links.sign(job.id, Target::Stream, expires, &caller.key_id))
}
