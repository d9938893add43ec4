//! `GET /v1/jobs/{id}/output`: the MP4, with Range support, never sniffable as HTML; local files
//! through `ServeFile`, objects in S3 streamed through [`super::ranged`].

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::{
    apikey::Scope,
    db::{audit, audit::AuditEvent},
    JobStatus, OriginalFilename,
};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::routes::JobIdPath;
use crate::{app::AppState, auth::Caller, error::ApiError, rate_limit::ClientIp, request_id};

/// A download's row covers its actor's further requests for the same output for this long.
const DOWNLOAD_AUDIT_WINDOW_SECS: i32 = 600;

/// The MP4 of a succeeded job. Supports `Range` (and `If-Range`) for resuming and seeking.
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs", operation_id = "download_output",
    security(("bearer" = ["jobs:read"])),
    params(
        ("id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id (a UUID, hyphenated)."),
        ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`."),
    ),
    responses(
        (status = 200, description = "The MP4.", content_type = "video/mp4", body = Vec<u8>, headers(
            ("Content-Disposition" = String, description = "`attachment` with the input's name, `.mp4`."),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("ETag" = String),
        )),
        (status = 206, description = "The requested range.", content_type = "video/mp4", body = Vec<u8>, headers(
            ("Content-Range" = String, description = "`bytes START-END/TOTAL`"),
        )),
        (status = 404, description = "job_not_found"),
        (status = 409, description = "job_not_ready"),
        (status = 410, description = "output_gone"),
        (status = 416, description = "range_not_satisfiable"),
    ))]
#[tracing::instrument(name = "download_output", skip_all, fields(job_id = %id.0))]
pub async fn output(
    State(state): State<AppState>,
    caller: Caller,
    id: JobIdPath,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(Scope::JobsRead)?;
    let job = crate::routes::visible_job(&state, &caller, id.0).await?;
    if job.files_deleted_at.is_some() {
        return Err(ApiError::OutputGone);
    }
    let output = match (&job.status, &job.output) {
        (JobStatus::Succeeded, Some(output)) => output,
        (status, _) => return Err(ApiError::JobNotReady(status.as_str())),
    };
    // Every request that can read bytes is covered by a `job.downloaded` row of its actor: one is
    // written unless that actor has one for this job from the last few minutes, so a player's
    // range requests (seeking) make one row, and no range (a suffix `bytes=-N` included, or
    // `bytes=1-` followed by `bytes=0-0`) reads the output unaudited.
    let range = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client_ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    audit_download(&state, &caller, &job, "job.downloaded", client_ip, serde_json::json!({ "range": range })).await?;
    let mut response = match state.storage.local_path(&output.key) {
        // ServeFile answers Range / If-Range / HEAD; only GET and HEAD reach this handler.
        Some(path) => {
            let served = ServeFile::new(&path).oneshot(request).await.map_err(ApiError::internal)?;
            if served.status() == StatusCode::NOT_FOUND {
                tracing::error!(path = %path.display(), "output of a succeeded job is missing");
                return Err(ApiError::OutputGone);
            }
            served.into_response()
        }
        None => {
            let (parts, _) = request.into_parts();
            super::ranged::serve(&state.storage, &output.key, &parts.method, &parts.headers).await?
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0, must-revalidate"));
    let disposition = content_disposition(&job.input.filename);
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(ApiError::internal)?);
    Ok(response)
}

/// Writes the `action` row (`job.downloaded`, `job.poster_downloaded`) of a request that can read
/// a job's bytes, unless its actor has one for this job from the last [`DOWNLOAD_AUDIT_WINDOW_SECS`]
/// (one row per player, not per range request). Each file has its own action, so a poster shown
/// first does not cover the MP4's download.
pub(super) async fn audit_download(
    state: &AppState,
    caller: &Caller,
    job: &mediaq_shared::Job,
    action: &'static str,
    client_ip: Option<std::net::IpAddr>,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let event =
        AuditEvent::new(caller.actor(), action).job(job.id).request(request_id::current(), client_ip).details(details);
    audit::record_unless_recent(&state.pool, &event, DOWNLOAD_AUDIT_WINDOW_SECS).await?;
    Ok(())
}

/// `attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266 / RFC 8187).
pub fn content_disposition(original: &OriginalFilename) -> String {
    let name = original.with_mp4_extension();
    let fallback: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names() {
        let d = content_disposition(&OriginalFilename::sanitize("my clip.webm"));
        assert_eq!(d, "attachment; filename=\"my clip.mp4\"; filename*=UTF-8''my%20clip.mp4");
    }

    #[test]
    fn unicode_and_specials_are_escaped() {
        // The stored name is already sanitized (quotes became `_`); % and ; remain and are encoded.
        let d = content_disposition(&OriginalFilename::sanitize("café \"x\" 50%;.webm"));
        assert_eq!(d, "attachment; filename=\"caf_ _x_ 50_;.mp4\"; filename*=UTF-8''caf%C3%A9%20_x_%2050%25%3B.mp4");
        assert!(!d.contains(['\r', '\n', '\0']));
    }
}
