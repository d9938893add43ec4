//! `GET /v1/play/{token}/{file}`: what a signed playback link opens (see [`crate::playback`]),
//! without any credential header: the MP4 through the same code as `GET /v1/jobs/{id}/output`
//! (Range, ETag, one audit row per viewer and window), the poster as `GET /v1/jobs/{id}/poster`,
//! and the HLS stream of a job converting ([`super::stream`]).

use axum::{
    extract::{Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use mediaq_shared::{apikey::Scope, db::jobs, Job};
use serde_json::json;

use crate::playback::{Link, LinkError, Target};
use crate::routes::jobs::{serve_output, serve_poster, Download};
use crate::{app::AppState, auth::Caller, error::ApiError, rate_limit::ClientIp};

/// A presigned S3 URL lives at most this long (or less, when the link expires sooner): a key
/// revoked after a player followed the redirect stops it within this time.
const PRESIGNED_MAX_SECS: i64 = 600;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/play/{token}/{file}", get(play))
}

/// What a signed playback link opens: the MP4 (`output.mp4`), the poster (`poster.jpg`), or the
/// HLS stream while the job converts (`stream.m3u8`, and `init.mp4`, `seg-{n}.m4s` under it).
///
/// No credential: the link itself is one (from `links.play` of the job, or `GET
/// /v1/jobs/{id}/links`). The MP4 supports `Range`, `If-Range` and `If-None-Match` like
/// `GET /v1/jobs/{id}/output`, and is sent `inline`.
#[utoipa::path(get, path = "/v1/play/{token}/{file}", tag = "jobs", operation_id = "play",
    params(
        ("token" = String, Path, description = "The signed part of the link: `{job}.{expires}.{key id}.{signature}`."),
        ("file" = String, Path, description = "What the link opens: `output.mp4`, `poster.jpg`, or the stream's `stream.m3u8`, `init.mp4`, `seg-{n}.m4s`."),
        ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX` (the MP4)."),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier response."),
    ),
    responses(
        (status = 200, description = "The MP4 or the JPEG.", content((Vec<u8> = "video/mp4"), (Vec<u8> = "image/jpeg")), headers(
            ("ETag" = String, description = "Strong tag of the file (its SHA-256)."),
            ("Accept-Ranges" = String, description = "`bytes` (the MP4)"),
        )),
        (status = 206, description = "The requested range of the MP4.", content_type = "video/mp4", body = Vec<u8>, headers(
            ("Content-Range" = String, description = "`bytes START-END/TOTAL`"),
        )),
        (status = 304, description = "Unchanged since the `If-None-Match` tag.", headers(("ETag" = String))),
        (status = 307, description = "With S3 storage and `MEDIAQ_LINK_S3_REDIRECT`: the MP4 at a presigned object URL (`Location`), valid for at most 10 minutes.", headers(
            ("Location" = String, description = "The presigned URL."),
        )),
        (status = 403, description = "link_invalid, link_expired, link_revoked"),
        (status = 404, description = "job_not_found, poster_not_available, not_found"),
        (status = 409, description = "job_not_ready"),
        (status = 410, description = "output_gone"),
        (status = 416, description = "range_not_satisfiable"),
    ))]
#[tracing::instrument(name = "play", skip_all, fields(job_id, key_id))]
pub async fn play(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path((token, file)) = path.map_err(|_| ApiError::LinkInvalid)?;
    // A `stream` link also opens the stream's init section and segments (relative URLs).
    let target = Target::from_file_name(&file)
        .or_else(|| super::stream::is_stream_file(&file).then_some(Target::Stream))
        .ok_or(ApiError::RouteNotFound)?;
    let now = chrono::Utc::now().timestamp();
    let link = state.links.verify(&token, target, now).map_err(|e| match e {
        LinkError::Invalid => ApiError::LinkInvalid,
        LinkError::Expired => ApiError::LinkExpired,
    })?;
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(link.job));
    span.record("key_id", link.key_id.as_str());
    let key = state.keys.active(&state.pool, &link.key_id).await?.ok_or(ApiError::LinkRevoked)?;
    // The key must still be allowed to read this job (owners and scopes do not change; this is
    // the same object-level check as for a request the key itself made).
    let issuer = Caller { key_id: key.id, owner: key.owner, scopes: key.scopes, token: None };
    issuer.require(Scope::JobsRead)?;
    let job = jobs::get(&state.pool, link.job).await?.filter(|j| issuer.can_see(j)).ok_or(ApiError::JobNotFound)?;
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    // A viewer is a link's key and the address it plays from: one audit row per viewer
    // and window, however many range requests the player makes.
    let actor = match ip {
        Some(ip) => format!("link:{}@{ip}", link.key_id),
        None => format!("link:{}", link.key_id),
    };
    let expires_at = chrono::DateTime::from_timestamp(link.expires, 0);
    let download = Download {
        actor,
        link: Some(json!({ "key_id": link.key_id, "expires_at": expires_at })),
        disposition: "inline",
    };
    match target {
        Target::Output => {
            if state.links.s3_redirect {
                if let Some(response) = redirect(&state, &job, &link, now, &download, request.headers(), ip).await? {
                    return Ok(response);
                }
            }
            serve_output(&state, &job, download, request).await
        }
        Target::Poster => serve_poster(&state, &job, &download, request.method(), request.headers(), ip).await,
        Target::Stream => super::stream::serve(&state, &job, &file, request.method()).await,
    }
}

/// With S3 storage: a 307 to a presigned URL of the MP4 (audited like a download); `None` on
/// local disk, where the API serves the file itself.
async fn redirect(
    state: &AppState,
    job: &Job,
    link: &Link,
    now: i64,
    download: &Download,
    headers: &axum::http::HeaderMap,
    ip: Option<std::net::IpAddr>,
) -> Result<Option<Response>, ApiError> {
    let output = super::jobs::ready_output(job)?;
    let lifetime = (link.expires - now).clamp(1, PRESIGNED_MAX_SECS) as u64;
    let Some(url) = state.storage.presigned_get(&output.key, std::time::Duration::from_secs(lifetime)).await? else {
        return Ok(None);
    };
    super::jobs::audit_download(state, job, download, headers, ip).await?;
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(&url).map_err(ApiError::internal)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(Some(response))
}
