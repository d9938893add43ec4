//! `/v1/uploads`: resumable uploads, tus 1.0 (core, and the extensions creation,
//! creation-with-upload, creation-defer-length, termination and expiration). An upload's URL is
//! `/v1/uploads/{id}`, where `{id}` is its job's (`/v1/jobs/{id}`); the credentials, limits,
//! quotas and audit rows are `POST /v1/jobs`'s. The upload's domain is `ingest::resumable`.

mod transfer;

pub use transfer::{__path_create, __path_patch};

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{head, options},
    Router,
};
use mediaq_shared::{apikey::Scope, Job, JobId};

use crate::{
    app::AppState,
    auth::Caller,
    error::ApiError,
    ingest::{resumable, tus_rules},
    routes::JobIdPath,
    tus,
};

const ID_PARAM: &str = "The upload's id: its job's id (a UUID, hyphenated).";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", options(discover).post(transfer::create))
        .route("/v1/uploads/{id}", head(status).patch(transfer::patch).delete(terminate))
}

/// The job behind an upload URL, if the caller may see it (`upload_not_found` otherwise).
async fn upload_job(state: &AppState, caller: &Caller, id: Result<JobIdPath, ApiError>) -> Result<Job, ApiError> {
    let id: JobId = id.map_err(|_| ApiError::UploadNotFound)?.0;
    crate::routes::visible_job(state, caller, id).await.map_err(|e| match e {
        ApiError::JobNotFound => ApiError::UploadNotFound,
        other => other,
    })
}

/// A response with the tus headers (and `Cache-Control: no-store`).
fn tus_response(status: StatusCode, pairs: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    tus::put(response.headers_mut(), pairs);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// tus discovery is an OPTIONS request, which the CORS layer would take for a preflight and
/// answer itself: an OPTIONS on `/v1/uploads` that is not a preflight (no
/// `Access-Control-Request-Method`) is answered here, before CORS.
pub async fn discovery(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_discovery = request.method() == axum::http::Method::OPTIONS
        && request.uri().path() == "/v1/uploads"
        && !request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_discovery {
        discover(State(state)).await
    } else {
        next.run(request).await
    }
}

/// What this server speaks: the tus version, its extensions and the largest upload.
#[utoipa::path(options, path = "/v1/uploads", tag = "uploads", operation_id = "tus_discover",
    responses((status = 204, description = "The tus capabilities.", headers(
        ("Tus-Resumable" = String), ("Tus-Version" = String), ("Tus-Extension" = String),
        ("Tus-Max-Size" = String, description = "MEDIAQ_MAX_UPLOAD_BYTES"),
    ))))]
pub async fn discover(State(state): State<AppState>) -> Response {
    tus_response(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", tus::VERSION.to_owned()),
            ("tus-extension", tus::EXTENSIONS.to_owned()),
            ("tus-max-size", state.config.max_upload_bytes.to_string()),
        ],
    )
}

/// Where an upload stands: its offset (resume from there), its length, its expiry.
#[utoipa::path(head, path = "/v1/uploads/{id}", tag = "uploads", operation_id = "tus_status",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", description = ID_PARAM),
        ("Tus-Resumable" = String, Header, pattern = "^1\\.0\\.0$", description = "`1.0.0`"),
    ),
    responses(
        (status = 200, description = "The upload's state, in headers.", headers(
            ("Upload-Offset" = String), ("Upload-Length" = String), ("Upload-Defer-Length" = String),
            ("Upload-Expires" = String), ("Upload-Metadata" = String), ("Tus-Resumable" = String),
        )),
        (status = 404, description = "upload_not_found"),
        (status = 412, description = "tus_version_unsupported"),
    ))]
#[tracing::instrument(name = "tus_status", skip_all)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<JobIdPath, ApiError>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    tus::check_resumable(&headers)?;
    caller.require(Scope::JobsRead)?;
    let job = upload_job(&state, &caller, id).await?;
    let upload = resumable::find(&state, &job).await?;
    tus_rules::check_alive(&upload, chrono::Utc::now())?;
    Ok(tus_response(StatusCode::OK, &tus_rules::headers(&upload, true)))
}

/// Termination: the upload stops, its bytes are deleted, and its job is canceled.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", operation_id = "tus_terminate",
    security(("bearer" = ["jobs:write"])),
    params(
        ("id" = String, Path, format = "uuid", description = ID_PARAM),
        ("Tus-Resumable" = String, Header, pattern = "^1\\.0\\.0$", description = "`1.0.0`"),
    ),
    responses(
        (status = 204, description = "Terminated."),
        (status = 404, description = "upload_not_found"),
        (status = 412, description = "tus_version_unsupported"),
    ))]
#[tracing::instrument(name = "tus_terminate", skip_all)]
pub async fn terminate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    id: Result<JobIdPath, ApiError>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    tus::check_resumable(&headers)?;
    caller.require(Scope::JobsWrite)?;
    let job = upload_job(&state, &caller, id).await?;
    resumable::find(&state, &job).await?;
    crate::routes::jobs::cancel_job(&state, &caller, peer.ip(), job.id).await?;
    Ok(tus_response(StatusCode::NO_CONTENT, &[]))
}
