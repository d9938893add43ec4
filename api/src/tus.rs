//! The tus 1.0 protocol's edge (<https://tus.io/protocols/resumable-upload>): its headers parsed
//! into types, and the headers of its responses. What an upload *is* lives in
//! `ingest::resumable`; the routes are `routes::uploads`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::ApiError;

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration";
/// The one body type of PATCH (and of creation-with-upload).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Headers a browser may send (CORS) and read back from tus responses.
pub const REQUEST_HEADERS: [&str; 6] =
    ["tus-resumable", "upload-length", "upload-offset", "upload-metadata", "upload-defer-length", "upload-concat"];
pub const RESPONSE_HEADERS: [&str; 9] = [
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-expires",
    "upload-metadata",
];

/// Every tus request but OPTIONS must say `Tus-Resumable: 1.0.0` (412 otherwise).
pub fn check_resumable(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(VERSION) => Ok(()),
        _ => Err(ApiError::TusVersionUnsupported),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let text = value.to_str().ok().map(str::trim).unwrap_or_default();
    // Digits only: no sign, no spaces, no exponent.
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!("{name} must be a non-negative integer")));
    }
    text.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("{name} must be a non-negative integer")))
}

/// How long an upload will be, as its creation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredLength {
    Known(u64),
    /// `Upload-Defer-Length: 1`: told by a later PATCH.
    Deferred,
}

impl DeclaredLength {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let deferred = match headers.get("upload-defer-length") {
            None => false,
            Some(v) if v.as_bytes() == b"1" => true,
            Some(_) => return Err(ApiError::BadRequest("Upload-Defer-Length must be 1".into())),
        };
        match (upload_length(headers)?, deferred) {
            (Some(_), true) => Err(ApiError::BadRequest("send Upload-Length or Upload-Defer-Length, not both".into())),
            (Some(n), false) => Ok(Self::Known(n)),
            (None, true) => Ok(Self::Deferred),
            (None, false) => Err(ApiError::BadRequest("send Upload-Length (or Upload-Defer-Length: 1)".into())),
        }
    }

    pub fn known(self) -> Option<u64> {
        match self {
            Self::Known(n) => Some(n),
            Self::Deferred => None,
        }
    }
}

pub fn upload_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    number(headers, "upload-length")
}

/// A PATCH's `Upload-Offset` (required).
pub fn upload_offset(headers: &HeaderMap) -> Result<u64, ApiError> {
    number(headers, "upload-offset")?.ok_or_else(|| ApiError::BadRequest("a PATCH needs Upload-Offset".into()))
}

/// A PATCH's body must be `application/offset+octet-stream` (415 otherwise).
pub fn check_patch_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!("a tus PATCH body must be {OFFSET_OCTET_STREAM}")))
    }
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs. mediaq reads `filename` and
/// `filetype` (also `name`/`type`, as some clients send); the raw header is kept for HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub raw: Option<String>,
    pub filename: Option<String>,
    pub filetype: Option<String>,
    /// `priority`: `low`, `normal` or `high`.
    pub priority: Option<String>,
}

/// Longest `Upload-Metadata` accepted.
const MAX_METADATA: usize = 4096;

impl Metadata {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get("upload-metadata") else { return Ok(Self::default()) };
        let bad = |why: &str| ApiError::BadRequest(format!("Upload-Metadata: {why}"));
        let raw = value.to_str().map_err(|_| bad("not ASCII"))?;
        if raw.len() > MAX_METADATA {
            return Err(bad("longer than 4096 bytes"));
        }
        let mut meta = Self { raw: Some(raw.to_owned()).filter(|r| !r.trim().is_empty()), ..Self::default() };
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad("a key is empty or not printable ASCII"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad("a value is not base64"))?;
            let text = String::from_utf8(bytes).map_err(|_| bad("a value is not UTF-8"))?;
            match key {
                "filename" | "name" => meta.filename = meta.filename.or(Some(text)),
                "filetype" | "type" => meta.filetype = meta.filetype.or(Some(text)),
                "priority" => meta.priority = meta.priority.or(Some(text)),
                _ => {}
            }
        }
        Ok(meta)
    }
}

/// An HTTP date (`Upload-Expires`).
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Adds `Tus-Resumable` and the given headers to a response's.
pub fn put(headers: &mut HeaderMap, pairs: &[(&'static str, String)]) {
    headers.insert("tus-resumable", HeaderValue::from_static(VERSION));
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn lengths_are_known_or_deferred_never_both() {
        assert_eq!(
            DeclaredLength::from_headers(&headers(&[("upload-length", "42")])).unwrap(),
            DeclaredLength::Known(42)
        );
        assert_eq!(
            DeclaredLength::from_headers(&headers(&[("upload-defer-length", "1")])).unwrap(),
            DeclaredLength::Deferred
        );
        for bad in [
            headers(&[]),
            headers(&[("upload-length", "-1")]),
            headers(&[("upload-length", "1e3")]),
            headers(&[("upload-length", "5"), ("upload-defer-length", "1")]),
            headers(&[("upload-defer-length", "0")]),
        ] {
            assert!(DeclaredLength::from_headers(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_values_are_base64() {
        let m = Metadata::from_headers(&headers(&[(
            "upload-metadata",
            "filename Y2xpcC53ZWJt,filetype dmlkZW8vd2VibQ==,is_confidential",
        )]))
        .unwrap();
        assert_eq!(m.filename.as_deref(), Some("clip.webm"));
        assert_eq!(m.filetype.as_deref(), Some("video/webm"));
        assert!(Metadata::from_headers(&headers(&[("upload-metadata", "filename not*base64")])).is_err());
        assert_eq!(Metadata::from_headers(&HeaderMap::new()).unwrap(), Metadata::default());
    }

    #[test]
    fn versions_and_dates() {
        assert!(check_resumable(&headers(&[("tus-resumable", "1.0.0")])).is_ok());
        assert!(matches!(
            check_resumable(&headers(&[("tus-resumable", "0.2.2")])),
            Err(ApiError::TusVersionUnsupported)
        ));
        let at = DateTime::parse_from_rfc3339("2014-06-25T16:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(http_date(at), "Wed, 25 Jun 2014 16:00:00 GMT");
    }
}
