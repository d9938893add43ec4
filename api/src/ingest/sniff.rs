//! Decides from an upload's first bytes, its declared Content-Type and its filename whether it is
//! a recording: WebM, the Matroska that Chrome writes for H.264 (`video/x-matroska;codecs=avc1`,
//! DocType `matroska`, often saved as `.webm`), or ISO-BMFF (MP4, fragmented MP4, QuickTime MOV:
//! Chrome's and Safari's `video/mp4` recordings, phones' camera rolls). Each of the three must be
//! on its list (any one that is not is a 415 with a code saying which); the bytes decide the
//! container. The codecs inside are the worker's to check (a closed list; anything else fails the
//! job with `unsupported_codec`).

use mediaq_shared::OriginalFilename;

use super::ebml::{self, EbmlError};
use crate::error::ApiError;

mod isobmff;

/// How many leading bytes the check needs (the EBML header and the `ftyp` box are far smaller).
pub const HEAD_LEN: usize = 4096;

/// Content types a client may declare for an upload (what `MediaRecorder` labels its output, and
/// what browsers name MP4/MOV files).
const MEDIA_TYPES: [&str; 7] =
    ["video/webm", "audio/webm", "video/x-matroska", "audio/x-matroska", "video/mp4", "audio/mp4", "video/quicktime"];
/// Extensions an upload's filename may have.
const EXTENSIONS: [&str; 8] = ["webm", "weba", "mkv", "mka", "mp4", "m4v", "m4a", "mov"];
/// EBML DocTypes accepted: WebM, and Matroska (Chrome's H.264 recordings).
const DOC_TYPES: [&str; 2] = ["webm", "matroska"];
/// EBML's magic bytes (the header element's ID).
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// Checks a declared Content-Type (for the raw-body upload) before any byte is read.
pub fn check_declared_type(content_type: &str) -> Result<&'static str, ApiError> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    MEDIA_TYPES.into_iter().find(|t| *t == essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted: send video/webm, audio/webm, video/x-matroska, video/mp4, audio/mp4 or video/quicktime, or multipart/form-data with a `file` field"
        ))
    })
}

/// Checks the Content-Type of a multipart file part. Browsers send one of the media types,
/// or `application/octet-stream` (or nothing) when they do not know the type.
pub fn check_part_type(content_type: Option<&str>) -> Result<(), ApiError> {
    match content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(t) if t.is_empty() || t == "application/octet-stream" || MEDIA_TYPES.contains(&t.as_str()) => Ok(()),
        Some(t) => Err(ApiError::UnsupportedMediaType(format!(
            "the file was sent as {t:?}; only WebM/Matroska or MP4/QuickTime recordings (video/webm, audio/webm, video/x-matroska, video/mp4, audio/mp4, video/quicktime) are accepted"
        ))),
    }
}

/// The content type recorded for a multipart file part: its own when it is a media type, else
/// `video/webm` (the part was untyped or `application/octet-stream`).
pub fn part_type(content_type: Option<&str>) -> &'static str {
    let essence = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    MEDIA_TYPES.into_iter().find(|t| Some(*t) == essence.as_deref()).unwrap_or("video/webm")
}

/// Checks the filename's extension (no extension is fine).
pub fn check_extension(filename: &OriginalFilename) -> Result<(), ApiError> {
    match filename.extension() {
        None => Ok(()),
        Some(ext) if EXTENSIONS.contains(&ext.as_str()) => Ok(()),
        Some(ext) => Err(ApiError::ExtensionMismatch(format!(
            "the file name ends in .{ext}, but only WebM/Matroska or MP4/QuickTime recordings (.webm, .weba, .mkv, .mka, .mp4, .m4v, .m4a, .mov) are accepted"
        ))),
    }
}

/// Checks the leading bytes: an EBML header whose DocType is `webm` or `matroska`, or an ISO base
/// media file's first boxes (`ftyp` with a known brand, or QuickTime's leading boxes).
/// `complete` says whether `head` is the whole file (a short file may end inside the header).
pub fn check_content(head: &[u8], complete: bool) -> Result<(), ApiError> {
    if head.starts_with(&EBML_MAGIC) {
        return check_ebml(head, complete);
    }
    if isobmff::looks_like_bmff(head) {
        return match isobmff::check(head) {
            Ok(()) => Ok(()),
            Err(isobmff::BmffError::Truncated) if !complete => {
                Err(ApiError::internal("ISO-BMFF leading boxes longer than the sniffing window"))
            }
            Err(e) => Err(ApiError::NotWebm(format!("the file is not a valid MP4/MOV recording: {e}"))),
        };
    }
    match infer::get(head) {
        Some(kind) => Err(ApiError::NotWebm(format!(
            "the file is {} (.{}), not a WebM or MP4 recording",
            kind.mime_type(),
            kind.extension()
        ))),
        None => Err(ApiError::NotWebm(
            "the file is not a WebM or MP4 recording (it has neither an EBML header nor an ftyp box)".into(),
        )),
    }
}

/// The EBML header's DocType must be `webm` or `matroska`.
fn check_ebml(head: &[u8], complete: bool) -> Result<(), ApiError> {
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
        // HEIF pictures are ISO-BMFF too, with their own brands.
        assert_eq!(codes(check_content(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", true)), "not_webm");
    }

    #[test]
    fn accepts_mp4_and_mov() {
        check_content(b"\0\0\0\x1cftypiso5\0\0\x02\0iso5iso6mp41\0\0\x04\xc5moov", true).unwrap();
        check_content(b"\0\0\0\x14ftypqt  \0\0\x02\0qt  \0\0\0\x08wide", true).unwrap();
        // An ftyp that does not fit the window is not judged until the file ends.
        let mut long = b"\0\0\0\xf0ftypisom".to_vec();
        long.resize(64, 0);
        assert_eq!(check_content(&long, false).unwrap_err().code(), "internal_error");
        assert_eq!(check_content(&long, true).unwrap_err().code(), "not_webm");
    }

    #[test]
    fn declared_types() {
        assert_eq!(check_declared_type("video/webm").unwrap(), "video/webm");
        assert_eq!(check_declared_type("Audio/WebM; codecs=opus").unwrap(), "audio/webm");
        assert_eq!(check_declared_type("video/x-matroska;codecs=avc1,opus").unwrap(), "video/x-matroska");
        check_part_type(Some("video/x-matroska;codecs=avc1")).unwrap();
        assert_eq!(check_declared_type("video/mp4;codecs=avc1,opus").unwrap(), "video/mp4");
        assert_eq!(check_declared_type("audio/mp4").unwrap(), "audio/mp4");
        assert_eq!(check_declared_type("video/quicktime").unwrap(), "video/quicktime");
        assert_eq!(check_declared_type("video/ogg").unwrap_err().code(), "unsupported_media_type");
        assert_eq!(part_type(Some("Video/MP4; codecs=vp9")), "video/mp4");
        assert_eq!(part_type(Some("application/octet-stream")), "video/webm");
        assert_eq!(part_type(None), "video/webm");
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
        for name in ["a.mp4", "IMG_0001.MOV", "b.m4v", "voice.m4a"] {
            check_extension(&OriginalFilename::sanitize(name)).unwrap();
        }
        assert_eq!(check_extension(&OriginalFilename::sanitize("a.ogg")).unwrap_err().code(), "extension_mismatch");
    }
}
