//! Decides from an upload's first bytes, its declared Content-Type and its filename whether it is
//! a browser recording: WebM, or the Matroska that Chrome writes for H.264
//! (`video/x-matroska;codecs=avc1`, DocType `matroska`, often saved as `.webm`). All three must
//! agree; any disagreement is a 415 with a code saying which. The codecs inside are the worker's
//! to check (a closed list; anything else fails the job with `unsupported_codec`).

use mediaq_shared::OriginalFilename;

use super::ebml::{self, EbmlError};
use crate::error::ApiError;

/// How many leading bytes the check needs (the EBML header is far smaller).
pub const HEAD_LEN: usize = 4096;

/// Content types a client may declare for an upload (what `MediaRecorder` labels its output).
const WEBM_TYPES: [&str; 4] = ["video/webm", "audio/webm", "video/x-matroska", "audio/x-matroska"];
/// Extensions an upload's filename may have.
const WEBM_EXTENSIONS: [&str; 4] = ["webm", "weba", "mkv", "mka"];
/// EBML DocTypes accepted: WebM, and Matroska (Chrome's H.264 recordings).
const DOC_TYPES: [&str; 2] = ["webm", "matroska"];

/// Checks a declared Content-Type (for the raw-body upload) before any byte is read.
pub fn check_declared_type(content_type: &str) -> Result<&'static str, ApiError> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    WEBM_TYPES.into_iter().find(|t| *t == essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted: send video/webm, audio/webm or video/x-matroska, or multipart/form-data with a `file` field"
        ))
    })
}

/// Checks the Content-Type of a multipart file part. Browsers send `video/webm`, `audio/webm`,
/// or `application/octet-stream` (or nothing) when they do not know the type.
pub fn check_part_type(content_type: Option<&str>) -> Result<(), ApiError> {
    match content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(t) if t.is_empty() || t == "application/octet-stream" || WEBM_TYPES.contains(&t.as_str()) => Ok(()),
        Some(t) => Err(ApiError::UnsupportedMediaType(format!(
            "the file was sent as {t:?}; only WebM/Matroska recordings (video/webm, audio/webm, video/x-matroska) are accepted"
        ))),
    }
}

/// Checks the filename's extension (no extension is fine).
pub fn check_extension(filename: &OriginalFilename) -> Result<(), ApiError> {
    match filename.extension() {
        None => Ok(()),
        Some(ext) if WEBM_EXTENSIONS.contains(&ext.as_str()) => Ok(()),
        Some(ext) => Err(ApiError::ExtensionMismatch(format!(
            "the file name ends in .{ext}, but only WebM/Matroska recordings (.webm, .weba, .mkv, .mka) are accepted"
        ))),
    }
}

/// Checks the leading bytes: `infer` must see Matroska/WebM and the EBML DocType must be `webm` or
/// `matroska`.
/// `complete` says whether `head` is the whole file (a short file may end inside the header).
pub fn check_content(head: &[u8], complete: bool) -> Result<(), ApiError> {
    match infer::get(head) {
        Some(kind) if matches!(kind.mime_type(), "video/webm" | "video/x-matroska") => {}
        Some(kind) => {
            return Err(ApiError::NotWebm(format!(
                "the file is {} (.{}), not a WebM video",
                kind.mime_type(),
                kind.extension()
            )))
        }
        None if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) => {} // EBML without a recognisable DocType: judged below
        None => return Err(ApiError::NotWebm("the file is not a WebM video (it has no EBML header)".into())),
    }
    match ebml::doc_type(head) {
        Ok(doc_type) if DOC_TYPES.contains(&doc_type.as_str()) => Ok(()),
        Ok(doc_type) => Err(ApiError::NotWebm(format!(
            "the file is an EBML file with DocType {doc_type:?}; only WebM or Matroska (DocType \"webm\" or \"matroska\") is accepted"
        ))),
        Err(EbmlError::Truncated) if !complete => {
            Err(ApiError::internal("EBML header longer than the sniffing window"))
        }
        Err(e) => Err(ApiError::NotWebm(format!("the file is not a valid WebM file: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webm_header(doc_type: &[u8]) -> Vec<u8> {
        let mut body = vec![0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x80 | doc_type.len() as u8];
        body.extend_from_slice(doc_type);
        let mut v = vec![0x1A, 0x45, 0xDF, 0xA3, 0x80 | body.len() as u8];
        v.extend(body);
        v.extend([0x18, 0x53, 0x80, 0x67]); // Segment follows
        v
    }

    #[test]
    fn accepts_webm_nul_padded_webm_and_matroska() {
        check_content(&webm_header(b"webm"), true).unwrap();
        check_content(&webm_header(b"webm\0"), true).unwrap();
        // Chrome's H.264 recordings.
        check_content(&webm_header(b"matroska"), true).unwrap();
    }

    #[test]
    fn rejects_other_doctypes_png_and_text() {
        let codes = |r: Result<(), ApiError>| r.unwrap_err().code();
        assert_eq!(codes(check_content(&webm_header(b"mkv3d"), true)), "not_webm");
        assert_eq!(codes(check_content(&webm_header(b"0000"), true)), "not_webm");
        assert_eq!(codes(check_content(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", true)), "not_webm");
        assert_eq!(codes(check_content(b"hello, world", true)), "not_webm");
        assert_eq!(codes(check_content(b"<!doctype html><html>", true)), "not_webm");
    }

    #[test]
    fn declared_types() {
        assert_eq!(check_declared_type("video/webm").unwrap(), "video/webm");
        assert_eq!(check_declared_type("Audio/WebM; codecs=opus").unwrap(), "audio/webm");
        assert_eq!(check_declared_type("video/x-matroska;codecs=avc1,opus").unwrap(), "video/x-matroska");
        check_part_type(Some("video/x-matroska;codecs=avc1")).unwrap();
        assert_eq!(check_declared_type("video/mp4").unwrap_err().code(), "unsupported_media_type");
        check_part_type(None).unwrap();
        check_part_type(Some("application/octet-stream")).unwrap();
        assert_eq!(check_part_type(Some("image/png")).unwrap_err().code(), "unsupported_media_type");
    }

    #[test]
    fn extensions() {
        check_extension(&OriginalFilename::sanitize("a.WEBM")).unwrap();
        check_extension(&OriginalFilename::sanitize("a.weba")).unwrap();
        check_extension(&OriginalFilename::sanitize("recording")).unwrap();
        check_extension(&OriginalFilename::sanitize("chrome.mkv")).unwrap();
        assert_eq!(check_extension(&OriginalFilename::sanitize("a.mp4")).unwrap_err().code(), "extension_mismatch");
    }
}
