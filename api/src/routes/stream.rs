//! The HLS stream behind a signed `stream` link (`/v1/play/{token}/stream.m3u8`): the playlist
//! of the segments the worker checked and stored for the job's current attempt, growing while
//! the job converts (`EXT-X-PLAYLIST-TYPE:EVENT`) and closed with `EXT-X-ENDLIST` once the job
//! has ended; `init.mp4` and `seg-{n}.m4s` resolve under the same token (relative URLs).

use axum::{
    body::Body,
    http::{header, HeaderValue, Method},
    response::{IntoResponse, Response},
};
use mediaq_shared::{db::segments, storage::Storage, Job, JobStatus};

use crate::{app::AppState, error::ApiError};

/// The files a `stream` link opens besides the playlist.
pub fn is_stream_file(name: &str) -> bool {
    name == "init.mp4" || segment_index(name).is_some()
}

fn segment_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".m4s")?;
    // Canonical decimal only: one name per segment.
    (!digits.is_empty()
        && digits.len() <= 9
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0')))
    .then(|| digits.parse().ok())
    .flatten()
}

/// Serves `file` (`stream.m3u8`, `init.mp4` or `seg-{n}.m4s`) of `job`'s stream.
pub async fn serve(state: &AppState, job: &Job, file: &str, method: &Method) -> Result<Response, ApiError> {
    if job.files_deleted_at.is_some() {
        return Err(ApiError::OutputGone);
    }
    let attempt = job.attempts.max(1);
    let list = segments::list(&state.pool, job.id, attempt).await?;
    if file == "stream.m3u8" {
        let ended = !matches!(job.status, JobStatus::Queued | JobStatus::Processing);
        if ended && list.is_empty() {
            return Err(ApiError::JobNotReady("the job has no stream"));
        }
        let mut response = playlist(&list, ended).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }
    let (name, content_type) = match segment_index(file) {
        Some(n) if list.iter().any(|s| s.seq as i64 == i64::from(n)) => (file, "video/iso.segment"),
        None if file == "init.mp4" && !list.is_empty() => (file, "video/mp4"),
        _ => return Err(ApiError::RouteNotFound),
    };
    let key = Storage::stream_key(job.id, attempt, name);
    let fetched = match state.storage.get(&key, None).await {
        Err(e) if e.is_not_found() => return Err(ApiError::OutputGone),
        other => other?,
    };
    let body = if *method == Method::HEAD { Body::empty() } else { Body::from_stream(fetched.body) };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(fetched.size));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// The playlist of `list` (in order from 0), closed when `ended`.
pub fn playlist(list: &[segments::Segment], ended: bool) -> String {
    use std::fmt::Write;
    let target = list.iter().map(|s| s.duration_s.round() as u64).max().unwrap_or(1).max(1);
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for segment in list {
        let _ = write!(text, "#EXTINF:{:.3},\nseg-{}.m4s\n", segment.duration_s, segment.seq);
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_canonical() {
        assert_eq!(segment_index("seg-0.m4s"), Some(0));
        assert_eq!(segment_index("seg-12.m4s"), Some(12));
        for bad in ["seg-.m4s", "seg-01.m4s", "seg-1.mp4", "seg--1.m4s", "seg-1234567890.m4s", "seg-+1.m4s"] {
            assert_eq!(segment_index(bad), None, "{bad}");
        }
        assert!(is_stream_file("init.mp4"));
        assert!(!is_stream_file("output.mp4"));
    }

    #[test]
    fn the_playlist_grows_then_ends() {
        let s = |seq, duration_s| segments::Segment { seq, duration_s, bytes: 1 };
        let open = playlist(&[s(0, 2.0), s(1, 2.4)], false);
        assert!(open.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(open.contains("#EXTINF:2.400,\nseg-1.m4s\n"));
        assert!(!open.contains("ENDLIST"));
        assert!(playlist(&[s(0, 2.0)], true).ends_with("#EXT-X-ENDLIST\n"));
        assert!(playlist(&[], false).contains("#EXT-X-TARGETDURATION:1\n"));
    }
}
