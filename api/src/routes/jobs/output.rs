//! `GET /v1/jobs/{id}/output`: the MP4, with Range support, never sniffable as HTML; local files
//! through `ServeFile`, objects in S3 streamed through [`super::ranged`].

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::{
    apikey::Scope,
    db::{audit, audit::AuditEvent},
    Job, JobStatus, OriginalFilename, OutputFacts,
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
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier response."),
    ),
    responses(
        (status = 200, description = "The MP4.", content_type = "video/mp4", body = Vec<u8>, headers(
            ("Content-Disposition" = String, description = "`attachment` with the input's name, `.mp4`."),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("ETag" = String, description = "Strong tag of the MP4 (its SHA-256)."),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` tag.", headers(("ETag" = String))),
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
    let download = Download { actor: caller.actor(), link: None, disposition: "attachment" };
    serve_output(&state, &job, download, request).await
}

/// Who reads an output, for its audit row, and how the response presents it.
pub struct Download {
    pub actor: String,
    /// A signed link's facts (`details.link` of the audit row), when it came through one.
    pub link: Option<serde_json::Value>,
    /// `attachment` (save it) or `inline` (a playback link opened in a tab plays it).
    pub disposition: &'static str,
}

/// The MP4 of a succeeded job, whoever asked (an authorized caller, a signed link): audited,
/// with Range, `If-Range`, a strong `ETag` (its SHA-256) and `If-None-Match`.
pub async fn serve_output(
    state: &AppState,
    job: &Job,
    download: Download,
    mut request: Request,
) -> Result<Response, ApiError> {
    let output = ready_output(job)?;
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    audit_download(state, job, &download, request.headers(), ip).await?;
    let etag = format!("\"{}\"", output.sha256);
    let mut response = if etag_preconditions(request.headers_mut(), &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match state.storage.local_path(&output.key) {
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
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0, must-revalidate"));
    let disposition = content_disposition(download.disposition, &job.input.filename);
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(ApiError::internal)?);
    Ok(response)
}

/// The output facts of a job whose MP4 can be read now.
pub fn ready_output(job: &Job) -> Result<&OutputFacts, ApiError> {
    if job.files_deleted_at.is_some() {
        return Err(ApiError::OutputGone);
    }
    match (&job.status, &job.output) {
        (JobStatus::Succeeded, Some(output)) => Ok(output),
        (status, _) => Err(ApiError::JobNotReady(status.as_str())),
    }
}

/// Every request that can read bytes is covered by a `job.downloaded` row of its actor: one is
/// written unless that actor has one for this job from the last few minutes, so a player's
/// range requests (seeking) make one row, and no range (a suffix `bytes=-N` included, or
/// `bytes=1-` followed by `bytes=0-0`) reads the output unaudited.
pub async fn audit_download(
    state: &AppState,
    job: &Job,
    download: &Download,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    audit_read(state, job, "job.downloaded", download, headers, ip).await
}

/// The `action` row (`job.downloaded`, `job.poster_downloaded`) of a request that can read one
/// of a job's files, unless its actor has one for this job and action from the last
/// [`DOWNLOAD_AUDIT_WINDOW_SECS`] (one row per player, not per range request). Each file has its
/// own action, so a poster shown first does not cover the MP4's download.
pub async fn audit_read(
    state: &AppState,
    job: &Job,
    action: &'static str,
    download: &Download,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut details = serde_json::json!({ "range": range });
    if let Some(link) = &download.link {
        details["link"] = link.clone();
    }
    let event =
        AuditEvent::new(download.actor.clone(), action).job(job.id).request(request_id::current(), ip).details(details);
    audit::record_unless_recent(&state.pool, &event, DOWNLOAD_AUDIT_WINDOW_SECS).await?;
    Ok(())
}

/// `If-None-Match` against the output's strong `etag` (true: answer 304), and an `If-Range`
/// holding an entity tag, decided here (the file servers compare dates only): the range stays
/// when it names this exact tag (strong comparison), else the whole file is sent.
fn etag_preconditions(headers: &mut HeaderMap, etag: &str) -> bool {
    let hit = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if hit.is_some_and(|h| crate::etag::if_none_match_hits(h, etag)) {
        return true;
    }
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
    if let Some(validator) = if_range.filter(|v| v.starts_with('"') || v.starts_with("W/")) {
        headers.remove(header::IF_RANGE);
        if validator != etag {
            headers.remove(header::RANGE);
        }
    }
    false
}

/// `attachment` (or `inline`) with an ASCII fallback and the exact UTF-8 name (RFC 6266 / RFC 8187).
pub fn content_disposition(kind: &str, original: &OriginalFilename) -> String {
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
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names() {
        let d = content_disposition("attachment", &OriginalFilename::sanitize("my clip.webm"));
        assert_eq!(d, "attachment; filename=\"my clip.mp4\"; filename*=UTF-8''my%20clip.mp4");
    }

    #[test]
    fn unicode_and_specials_are_escaped() {
        // The stored name is already sanitized (quotes became `_`); % and ; remain and are encoded.
        let d = content_disposition("attachment", &OriginalFilename::sanitize("café \"x\" 50%;.webm"));
        assert_eq!(d, "attachment; filename=\"caf_ _x_ 50_;.mp4\"; filename*=UTF-8''caf%C3%A9%20_x_%2050%25%3B.mp4");
        assert!(!d.contains(['\r', '\n', '\0']));
    }
}
