//! `POST /v1/jobs` (upload) and `GET /v1/jobs/{id}` (status polling).

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequest, Multipart, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::{
    apikey::Scope,
    db::{
        attempts,
        idempotency::{self, Claim},
        jobs, tokens,
    },
    Job,
};
use serde::Deserialize;

use super::JobIdPath;
use crate::{
    app::AppState,
    auth::Caller,
    error::ApiError,
    idempotency::IdempotencyKey,
    ingest::{self, Origin},
    job_view,
    limits::ClientIp,
    request_id,
};

/// Seconds a client should wait before polling an unfinished job again.
const POLL_AFTER_SECS: &str = "1";
/// Multipart framing allowance on top of the file size limit, for the early Content-Length check.
const MULTIPART_OVERHEAD: u64 = 1 << 20;

#[derive(Deserialize)]
pub struct CreateQuery {
    filename: Option<String>,
    /// Where to send this job's terminal event, signed with the owner's secret.
    webhook_url: Option<String>,
}

/// Upload a WebM video; the job converting it to MP4.
///
/// The body is the video itself (`Content-Type: video/webm`, name in `?filename=`), or a
/// `multipart/form-data` form with one file in the field `file`. It is streamed to storage and
/// checked as it arrives (EBML header, WebM doctype), never buffered whole.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", operation_id = "create_job",
    security(("bearer" = ["jobs:write"])),
    params(
        ("filename" = Option<String>, Query, description = "The file's name (raw uploads); it names the MP4 (`clip.webm` -> `clip.mp4`)."),
        ("webhook_url" = Option<String>, Query, description = "Where to POST this job's terminal event, signed with the owner's secret (API keys only)."),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters. Retrying the same upload with the same key returns the job it created (`Idempotent-Replayed: true`) instead of a second job; another upload with that key is a 422, one still in progress a 409. Keys expire after 24 hours."),
    ),
    request_body(description = "The WebM video.", content(
        ("video/webm"),
        (crate::openapi::schemas::UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "Accepted: the job, queued.", body = crate::openapi::schemas::Job, headers(
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
    // A refused upload still reads (a bounded part of) its body, so that a client that is still
    // sending sees the 401/403 instead of a reset connection, and keep-alive survives.
    let caller = match caller.and_then(|c| c.require(Scope::JobsWrite).map(|()| c)) {
        Ok(caller) => caller,
        Err(e) => {
            ingest::drain_stream(&mut request.into_body().into_data_stream()).await;
            return Err(e);
        }
    };
    // Held until the upload is stored or refused.
    let _slot = match state.uploads.take(&caller.key_id) {
        Ok(slot) => slot,
        Err(e) => {
            ingest::drain_stream(&mut request.into_body().into_data_stream()).await;
            return Err(e);
        }
    };
    let mut limit = state.config.max_upload_bytes;
    if let Some(grant) = &caller.token {
        // Single use: claimed now, given back if the upload fails.
        if !grant.usable || !tokens::claim(&state.pool, &grant.id).await? {
            return Err(ApiError::Unauthorized("this upload token was already used or has expired"));
        }
        limit = limit.min(grant.max_bytes);
    }
    let origin = Origin {
        owner: caller.owner.clone(),
        api_key_id: Some(caller.key_id.clone()),
        token_id: caller.token.as_ref().map(|g| g.id.clone()),
        actor: caller.actor(),
        request_id: request_id::current(),
        client_ip: Some(request.extensions().get::<ClientIp>().map_or(peer.ip(), |c| c.0)),
        webhook_url: None,
    };
    let result = create_job(&state, &caller, origin, limit, query, request).await;
    if let (Err(_), Some(grant)) = (&result, &caller.token) {
        if let Err(e) = tokens::release(&state.pool, &grant.id).await {
            tracing::warn!(error = %e, "could not give an upload token back");
        }
    }
    result
}

async fn create_job(
    state: &AppState,
    caller: &Caller,
    mut origin: Origin,
    limit: u64,
    query: CreateQuery,
    request: Request,
) -> Result<Response, ApiError> {
    if let Some(raw) = &query.webhook_url {
        match job_webhook_url(state, caller, raw).await {
            Ok(url) => origin.webhook_url = Some(url),
            Err(e) => {
                ingest::drain_stream(&mut request.into_body().into_data_stream()).await;
                return Err(e);
            }
        }
    }
    let content_type = header_str(request.headers(), header::CONTENT_TYPE).unwrap_or_default().to_owned();
    let is_multipart = content_type.to_ascii_lowercase().starts_with("multipart/form-data");
    reject_oversized(request.headers(), limit, is_multipart)?;
    let declared = header_str(request.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    if let Err(e) = crate::limits::check_quota(state, &caller.key_id, declared).await {
        ingest::drain_stream(&mut request.into_body().into_data_stream()).await;
        return Err(e);
    }
    let key = IdempotencyKey::from_headers(request.headers())?;
    let claim = match &key {
        Some(k) => Some(idempotency::claim(&state.pool, &caller.owner, k.as_str()).await?),
        None => None,
    };
    if claim == Some(Claim::InProgress) {
        ingest::drain_stream(&mut request.into_body().into_data_stream()).await;
        return Err(ApiError::IdempotencyInProgress);
    }
    let received = receive(state, limit, is_multipart, &content_type, query.filename.as_deref(), request).await;
    let job = match claim {
        Some(Claim::Completed { fingerprint, job_id }) => {
            if received?.fingerprint() != fingerprint {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let job =
                jobs::get(&state.pool, job_id).await?.filter(|j| caller.can_see(j)).ok_or(ApiError::JobNotFound)?;
            let mut response = created(&job)?;
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Some(Claim::Owned(lease)) => {
            let stored = match received {
                Ok(upload) => ingest::store(state, upload, origin, Some(lease.clone())).await,
                Err(e) => Err(e),
            };
            if stored.is_err() {
                if let Err(e) = idempotency::release(&state.pool, &lease).await {
                    tracing::warn!(error = %e, "could not release an idempotency key");
                }
            }
            stored?
        }
        _ => ingest::store(state, received?, origin, None).await?,
    };
    state.metrics.record_upload(job.input.size);
    created(&job)
}

/// A per-job webhook URL: API keys only, checked like an endpoint's, and the owner must have a
/// signing secret.
async fn job_webhook_url(state: &AppState, caller: &Caller, raw: &str) -> Result<String, ApiError> {
    caller.require_key()?;
    let url = super::webhooks::check_url(state, raw).await?;
    if !mediaq_shared::db::webhooks::has_secret(&state.pool, &caller.owner).await? {
        return Err(ApiError::WebhookSecretMissing);
    }
    Ok(url)
}

async fn receive(
    state: &AppState,
    limit: u64,
    is_multipart: bool,
    content_type: &str,
    filename: Option<&str>,
    request: Request,
) -> Result<ingest::Upload, ApiError> {
    if is_multipart {
        let multipart =
            Multipart::from_request(request, state).await.map_err(|e| ApiError::MalformedMultipart(e.body_text()))?;
        ingest::from_multipart(state, limit, multipart).await
    } else {
        ingest::from_raw(state, limit, content_type, filename, request.into_body()).await
    }
}

/// 202 with `Location` and the job.
fn created(job: &Job) -> Result<Response, ApiError> {
    let location = format!("/v1/jobs/{}", job.id);
    let mut response = job_response(job, StatusCode::ACCEPTED);
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).map_err(ApiError::internal)?);
    Ok(response)
}

/// Refuses a body whose declared length is already over the limit, before reading any of it.
fn reject_oversized(headers: &HeaderMap, limit: u64, multipart: bool) -> Result<(), ApiError> {
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let allowed = if multipart { limit.saturating_add(MULTIPART_OVERHEAD) } else { limit };
    match declared {
        Some(len) if len > allowed => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

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
        (status = 200, description = "The job.", body = crate::openapi::schemas::Job, headers(
            ("ETag" = String, description = "Strong tag of this body."),
            ("Retry-After" = String, description = "Seconds before polling again (unfinished jobs only)."),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` tag.", headers(("ETag" = String))),
        (status = 404, description = "job_not_found"),
    ))]
#[tracing::instrument(name = "get_job", skip_all, fields(job_id = %id.0))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    let job = super::visible_job(&state, &caller, id.0).await?;
    let history = attempts::list(&state.pool, id.0).await?;
    let view = job_view::to_json(&job, &history);
    let (body, etag) = job_view::body_and_etag(&view);
    let not_modified =
        header_str(&headers, header::IF_NONE_MATCH).is_some_and(|h| job_view::if_none_match_hits(h, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    };
    decorate(&mut response, &job, &etag);
    Ok(response)
}

fn job_response(job: &Job, status: StatusCode) -> Response {
    let (body, etag) = job_view::body_and_etag(&job_view::to_json(job, &[]));
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
