//! Serving a stored object with HTTP Range (one range per request), for stores that are not
//! local files. Mirrors what `tower_http::services::ServeFile` answers for local files: 200 with
//! `Accept-Ranges`, `Last-Modified` and `Content-Length`; 206 with `Content-Range`; 416 with
//! `Content-Range: bytes */size`; `If-Range` (an HTTP date) falls back to the whole object; HEAD
//! has no body.

use std::time::SystemTime;

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use mediaq_shared::storage::Storage;

use crate::error::ApiError;

pub async fn serve(storage: &Storage, key: &str, method: &Method, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (size, modified) = match storage.head(key).await {
        Ok(found) => found,
        Err(e) if e.is_not_found() => {
            tracing::error!(%key, "output of a succeeded job is missing");
            return Err(ApiError::OutputGone);
        }
        Err(e) => return Err(e.into()),
    };
    let last_modified = http_date(modified);
    let range = match requested_range(headers, &last_modified) {
        None => None,
        Some(spec) => match parse_range(spec, size) {
            Some(range) => Some(range),
            None => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                insert(response.headers_mut(), header::CONTENT_RANGE, &format!("bytes */{size}"));
                return Ok(response);
            }
        },
    };
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let body = if *method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        let fetched = match storage.get(key, range.clone()).await {
            Err(e) if e.is_not_found() => return Err(ApiError::OutputGone),
            other => other?,
        };
        Body::from_stream(fetched.body)
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    insert(headers, header::ACCEPT_RANGES, "bytes");
    insert(headers, header::LAST_MODIFIED, &last_modified);
    insert(headers, header::CONTENT_LENGTH, &length.to_string());
    if let Some(r) = &range {
        insert(headers, header::CONTENT_RANGE, &format!("bytes {}-{}/{size}", r.start, r.end - 1));
    }
    Ok(response)
}

/// The Range header to honour: absent when `If-Range` names another version.
fn requested_range<'a>(headers: &'a HeaderMap, last_modified: &str) -> Option<&'a str> {
    let range = headers.get(header::RANGE)?.to_str().ok()?;
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(validator) if validator.trim() != last_modified => None,
        _ => Some(range),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against an object of `size` bytes; `None` when it is
/// malformed, names several ranges, or cannot be satisfied.
pub fn parse_range(spec: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = spec.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let n: u64 = last.parse().ok()?;
        size.saturating_sub(n)..size
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() { size } else { last.parse::<u64>().ok()?.saturating_add(1).min(size) };
        start..end
    };
    (range.start < range.end && range.start < size).then_some(range)
}

fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_parse() {
        assert_eq!(parse_range("bytes=100-1099", 5000), Some(100..1100));
        assert_eq!(parse_range("bytes=100-", 5000), Some(100..5000));
        assert_eq!(parse_range("bytes=-16", 5000), Some(4984..5000));
        assert_eq!(parse_range("bytes=4000-99999", 5000), Some(4000..5000));
    }

    #[test]
    fn unsatisfiable_or_multiple_ranges_are_refused() {
        for bad in ["bytes=5010-", "bytes=10-5", "bytes=0-1,5-6", "items=0-1", "bytes=-0", "bytes=x-"] {
            assert_eq!(parse_range(bad, 5000), None, "{bad}");
        }
    }
}
