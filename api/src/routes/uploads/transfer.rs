//! The two requests that carry bytes: creation (`POST /v1/uploads`, with or without a first
//! chunk) and `PATCH /v1/uploads/{id}`. Both hold the body in an `UploadBody`, so a refusal
//! reads the rest of it (or not) by the one rule of `POST /v1/jobs`.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use mediaq_shared::apikey::Scope;

use super::{tus_response, upload_job, ID_PARAM};
use crate::{
    app::AppState,
    auth::Caller,
    error::ApiError,
    ingest::{
        self,
        resumable::{self, NewUpload},
        tus_rules::{self, PatchRequest},
        UploadBody, UploadHead,
    },
    rate_limit::ClientIp,
    routes::{jobs::job_response, JobIdPath},
    tus,
};

/// Create an upload (tus `creation`), optionally with its first bytes (`creation-with-upload`,
/// body `application/offset+octet-stream`). Its job exists from now on, `receiving`.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", operation_id = "tus_create",
    security(("bearer" = ["jobs:write"])),
    params(
        ("Tus-Resumable" = String, Header, pattern = "^1\\.0\\.0$", description = "`1.0.0`"),
        ("Upload-Length" = Option<String>, Header, pattern = "^[0-9]{1,18}$", description = "The whole upload's size in bytes."),
        ("Upload-Defer-Length" = Option<String>, Header, pattern = "^1$", description = "`1` when the size is not known yet (a recording); a later PATCH sends Upload-Length."),
        ("Upload-Metadata" = Option<String>, Header, description = "`filename <base64>,filetype <base64>`"),
    ),
    request_body(description = "Optionally, the first bytes.", content(("application/offset+octet-stream"))),
    responses(
        (status = 201, description = "Created: the upload's URL in `Location`, its job in the body.", body = crate::openapi::schemas::JobSchema, headers(
            ("Location" = String, description = "`/v1/uploads/{id}`"),
            ("Upload-Offset" = String), ("Upload-Expires" = String), ("Tus-Resumable" = String),
        )),
        (status = 400, description = "bad_request"),
        (status = 412, description = "tus_version_unsupported"),
        (status = 413, description = "payload_too_large, upload_length_exceeded"),
        (status = 415, description = "unsupported_media_type, not_webm, extension_mismatch"),
    ))]
#[tracing::instrument(name = "tus_create", skip_all)]
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Response, ApiError> {
    let client_ip = request.extensions().get::<ClientIp>().map_or(peer.ip(), |c| c.0);
    let headers = request.headers().clone();
    let mut body = UploadBody::new(request);
    let result = create_upload(&state, caller, client_ip, &headers, &mut body).await;
    if let Err(e) = &result {
        body.refuse(e).await;
    }
    result
}

async fn create_upload(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    client_ip: IpAddr,
    headers: &HeaderMap,
    body: &mut UploadBody,
) -> Result<Response, ApiError> {
    let caller = caller?;
    tus::check_resumable(headers)?;
    let length = tus::DeclaredLength::from_headers(headers)?;
    if length == tus::DeclaredLength::Known(0) {
        return Err(ApiError::EmptyUpload);
    }
    let meta = tus::Metadata::from_headers(headers)?;
    let priority = crate::routes::jobs::create::parse_priority(meta.priority.as_deref())?;
    let new = NewUpload::checked(length.known(), meta)?;
    let with_bytes = headers.get(header::CONTENT_TYPE).is_some();
    if with_bytes {
        tus::check_patch_type(headers)?;
    }
    let head = UploadHead {
        content_type: new.content_type.to_owned(),
        multipart: false,
        declared: new.length,
        idempotency_key: None,
        priority,
    };
    let admission = ingest::admit(state, &caller, client_ip, &head, None).await?;
    let (job, mut upload) = admission.record_resumable(state, &new).await?;
    if with_bytes {
        upload = resumable::append(state, &caller, &job, PatchRequest::creation(), body.raw()).await?;
    }
    let mut response = job_response(&job, StatusCode::CREATED);
    tus::put(response.headers_mut(), &tus_rules::headers(&upload, false));
    let location = HeaderValue::from_str(&format!("/v1/uploads/{}", job.id)).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// Append bytes at `Upload-Offset` (tus core). `204` with the new `Upload-Offset` means those
/// bytes are durable; a connection cut mid-PATCH keeps what arrived (ask HEAD, resume there).
#[utoipa::path(patch, path = "/v1/uploads/{id}", tag = "uploads", operation_id = "tus_append",
    security(("bearer" = ["jobs:write"])),
    params(
        ("id" = String, Path, format = "uuid", description = ID_PARAM),
        ("Tus-Resumable" = String, Header, pattern = "^1\\.0\\.0$", description = "`1.0.0`"),
        ("Upload-Offset" = String, Header, pattern = "^[0-9]{1,18}$", description = "Where these bytes start: the upload's current offset."),
        ("Upload-Length" = Option<String>, Header, pattern = "^[0-9]{1,18}$", description = "The whole size, once known (deferred-length uploads)."),
    ),
    request_body(description = "The bytes.", content(("application/offset+octet-stream"))),
    responses(
        (status = 204, description = "Stored.", headers(("Upload-Offset" = String), ("Upload-Expires" = String), ("Tus-Resumable" = String))),
        (status = 400, description = "bad_request, upload_incomplete"),
        (status = 404, description = "upload_not_found"),
        (status = 408, description = "upload_timeout, upload_too_slow"),
        (status = 409, description = "upload_offset_mismatch, too_many_segments"),
        (status = 410, description = "upload_closed"),
        (status = 412, description = "tus_version_unsupported"),
        (status = 413, description = "payload_too_large, upload_length_exceeded"),
        (status = 415, description = "unsupported_media_type, not_webm"),
        (status = 423, description = "upload_busy: another PATCH to this upload is in progress (refused before its body is read)"),
    ))]
#[tracing::instrument(name = "tus_append", skip_all, fields(job_id))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    id: Result<JobIdPath, ApiError>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let mut body = UploadBody::new(request);
    let result = append(&state, caller, id, &headers, &mut body).await;
    if let Err(e) = &result {
        body.refuse(e).await;
    }
    result
}

async fn append(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    id: Result<JobIdPath, ApiError>,
    headers: &HeaderMap,
    body: &mut UploadBody,
) -> Result<Response, ApiError> {
    let caller = caller?;
    let request = PatchRequest::from_headers(headers)?;
    caller.require(Scope::JobsWrite)?;
    let job = upload_job(state, &caller, id).await?;
    tracing::Span::current().record("job_id", tracing::field::display(job.id));
    let upload = resumable::append(state, &caller, &job, request, body.raw()).await?;
    Ok(tus_response(StatusCode::NO_CONTENT, &tus_rules::headers(&upload, false)))
}
