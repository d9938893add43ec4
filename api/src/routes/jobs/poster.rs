//! `GET /v1/jobs/{id}/poster`: the JPEG poster of a succeeded video job, under the same access
//! rules as its output, with its SHA-256 as a strong `ETag` (`If-None-Match` -> 304).

use axum::{
    body::Body,
    extract::{Extension, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::{apikey::Scope, Job, JobStatus};

use crate::routes::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError, etag, rate_limit::ClientIp};

/// The poster: a frame near the start of the video, at its display size.
#[utoipa::path(get, path = "/v1/jobs/{id}/poster", tag = "jobs", operation_id = "download_poster",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated)."),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier response."),
    ),
    responses(
        (status = 200, description = "The JPEG.", content_type = "image/jpeg", body = Vec<u8>, headers(
            ("ETag" = String, description = "Strong tag of the image (its SHA-256)."),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` tag.", headers(("ETag" = String))),
        (status = 404, description = "job_not_found, poster_not_available"),
        (status = 410, description = "output_gone"),
    ))]
#[tracing::instrument(name = "download_poster", skip_all, fields(job_id = %id.0))]
pub async fn poster(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    method: Method,
    headers: HeaderMap,
    client_ip: Option<Extension<ClientIp>>,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    let job = crate::routes::visible_job(&state, &caller, id.0).await?;
    let download = super::Download { actor: caller.actor(), link: None, disposition: "inline" };
    let client_ip = client_ip.map(|Extension(ClientIp(ip))| ip);
    serve_poster(&state, &job, &download, &method, &headers, client_ip).await
}

/// The poster of `job`, whoever asked (an authorized caller, a signed link).
pub async fn serve_poster(
    state: &AppState,
    job: &Job,
    download: &super::Download,
    method: &Method,
    headers: &HeaderMap,
    client_ip: Option<std::net::IpAddr>,
) -> Result<Response, ApiError> {
    if job.files_deleted_at.is_some() {
        return Err(ApiError::OutputGone);
    }
    let poster = match (&job.status, job.output.as_ref().map(|o| &o.poster)) {
        (JobStatus::Succeeded, Some(Some(poster))) => poster,
        (JobStatus::Succeeded, _) => {
            return Err(ApiError::PosterNotAvailable("the video has none, or it is audio only"))
        }
        _ => return Err(ApiError::PosterNotAvailable("the job has not succeeded")),
    };
    let etag = format!("\"{}\"", poster.sha256);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| etag::if_none_match_hits(h, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Audited like the MP4 (`/output`): one `job.poster_downloaded` row per actor, job and
        // ten minutes, written before any byte is read. A 304 reads nothing and writes none.
        super::output::audit_read(state, job, "job.poster_downloaded", download, headers, client_ip).await?;
        let fetched = match state.storage.get(&poster.key, None).await {
            Err(e) if e.is_not_found() => {
                tracing::error!(key = %poster.key, "poster of a succeeded job is missing");
                return Err(ApiError::OutputGone);
            }
            other => other?,
        };
        let body = if *method == Method::HEAD { Body::empty() } else { Body::from_stream(fetched.body) };
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(fetched.size));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0, must-revalidate"));
    Ok(response)
}
