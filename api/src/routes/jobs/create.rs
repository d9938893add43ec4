//! `POST /v1/jobs`: an upload, read as admit -> receive -> record (see [`crate::ingest`]).

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Query, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::status::job_response;
use crate::{
    app::AppState,
    auth::Caller,
    error::ApiError,
    ingest::{self, Recorded, UploadBody, UploadHead},
    rate_limit::ClientIp,
};

#[derive(Deserialize)]
pub struct CreateQuery {
    filename: Option<String>,
    /// Where to send this job's terminal event, signed with the owner's secret.
    webhook_url: Option<String>,
    /// `low`, `normal` (default) or `high`: orders the job among its owner's jobs.
    priority: Option<String>,
}

/// `?priority=` (or tus metadata `priority`): `low`, `normal` or `high`.
pub fn parse_priority(value: Option<&str>) -> Result<mediaq_shared::Priority, ApiError> {
    match value {
        None => Ok(mediaq_shared::Priority::Normal),
        Some(v) => mediaq_shared::Priority::parse(v)
            .ok_or_else(|| ApiError::BadRequest(format!("priority must be low, normal or high, not {v:?}"))),
    }
}

/// Upload a WebM video; the job converting it to MP4.
///
/// The body is the video itself (`Content-Type: video/webm`, name in `?filename=`), or a
/// `multipart/form-data` form with one file in the field `file`. It is streamed to storage and
/// checked as it arrives (EBML header, WebM doctype), never buffered whole.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", operation_id = "create_job",
    security(("bearer" = ["jobs:write"])),
    params(
        ("filename" = Option<String>, Query, pattern = "^(?:[^/\\\\]*[/\\\\])*(?:[^./\\\\]+|[^/\\\\]*\\.(?:[Ww][Ee][Bb][MmAa]|[Mm][Kk][VvAa]))$", description = "The file's name (raw uploads); it names the MP4 (`clip.webm` -> `clip.mp4`). Only its last path component counts, and that must end in `.webm`, `.weba`, `.mkv` or `.mka` (any case) or have no extension: another extension is a 415 `extension_mismatch`."),
        ("webhook_url" = Option<String>, Query, min_length = 9, max_length = 2048, pattern = "^https://[^\\s/?#@]+(?:[/?#]\\S*)?$", description = "Where to POST this job's terminal event, signed with the owner's secret (API keys only). An absolute `https://` URL (plain `http://` only where the operator allows it) without a user name or password, at most 2048 characters, whose host resolves only to public addresses (else 422 `webhook_url_refused`)."),
        ("priority" = Option<String>, Query, description = "`low`, `normal` (default) or `high`: orders this job among its owner's waiting jobs (the queue stays fair across owners whatever the priorities).", pattern = "^(low|normal|high)$"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters. Retrying the same upload with the same key returns the job it created (`Idempotent-Replayed: true`) instead of a second job; another upload with that key is a 422, one still in progress a 409. Keys expire after 24 hours."),
    ),
    request_body(description = "The WebM video.", content(
        ("video/webm"),
        (crate::openapi::schemas::UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "Accepted: the job, queued.", body = crate::openapi::schemas::JobSchema, headers(
            ("Location" = String, description = "`/v1/jobs/{id}`"),
            ("ETag" = String, description = "Strong tag of this body."),
            ("Retry-After" = String, description = "Seconds before the first poll."),
            ("Idempotent-Replayed" = String, description = "`true` when this is the replay of an earlier request with the same `Idempotency-Key`."),
        )),
        (status = 400, description = "empty_upload, malformed_multipart, missing_file, too_many_files, upload_incomplete, bad_request"),
        (status = 404, description = "job_not_found (an idempotent replay of a job that is gone)"),
        (status = 408, description = "upload_timeout"),
        (status = 409, description = "idempotency_request_in_progress"),
        (status = 413, description = "payload_too_large"),
        (status = 415, description = "unsupported_media_type, not_webm, extension_mismatch"),
        (status = 422, description = "idempotency_key_reused, webhook_url_refused, webhook_secret_missing"),
        (status = 507, description = "insufficient_storage"),
    ))]
#[tracing::instrument(name = "create_job", skip_all)]
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Result<Caller, ApiError>,
    Query(query): Query<CreateQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let client_ip = request.extensions().get::<ClientIp>().map_or(peer.ip(), |c| c.0);
    let head = UploadHead::from_headers(request.headers());
    let mut body = UploadBody::new(request);
    let result = upload(&state, caller, client_ip, head, query, &mut body).await;
    if let Err(e) = &result {
        body.refuse(e).await;
    }
    result
}

async fn upload(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    client_ip: std::net::IpAddr,
    head: Result<UploadHead, ApiError>,
    query: CreateQuery,
    body: &mut UploadBody,
) -> Result<Response, ApiError> {
    let (caller, mut head) = (caller?, head?);
    head.priority = parse_priority(query.priority.as_deref())?;
    let admission = ingest::admit(state, &caller, client_ip, &head, query.webhook_url.as_deref()).await?;
    let upload = match ingest::receive(state, admission.limit(), &head, query.filename.as_deref(), body).await {
        Ok(upload) => upload,
        Err(e) => return Err(admission.refuse(e).await),
    };
    let (job, replayed) = match admission.record(state, &caller, upload).await? {
        Recorded::Created(job) => (job, false),
        Recorded::Replayed(job) => (job, true),
    };
    if !replayed {
        state.metrics.record_upload(job.input.size);
    }
    let mut response = job_response(&job, StatusCode::ACCEPTED);
    let location = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::LOCATION, location);
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
