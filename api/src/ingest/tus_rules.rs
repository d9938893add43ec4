//! The tus rules as pure functions: what a PATCH may do, given the resumable upload as it stands,
//! its job's status and the request's headers ([`PatchRequest::from_headers`], [`plan`]), what a
//! PATCH's received body makes of the upload ([`PatchPlan::completes`]), and the headers that
//! describe an upload ([`headers`]). No storage, no database: `ingest::resumable` does those, in
//! the order plan -> receive -> store -> record. The unit-test table below lists every rule.

use axum::http::{HeaderMap, Method};
use chrono::{DateTime, Utc};
use mediaq_shared::{db::uploads::Upload, JobId, JobStatus};

use crate::{error::ApiError, tus};

/// What a PATCH's headers say: `Upload-Offset` and, for a deferred length, the `Upload-Length`
/// it may bring. Parsing checks `Tus-Resumable` (412) and the body's type (415) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchRequest {
    pub offset: u64,
    pub length: Option<u64>,
}

impl PatchRequest {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::check_resumable(headers)?;
        tus::check_patch_type(headers)?;
        Ok(Self { offset: tus::upload_offset(headers)?, length: tus::upload_length(headers)? })
    }

    /// The first bytes of a creation request (`creation-with-upload`).
    pub fn creation() -> Self {
        Self { offset: 0, length: None }
    }
}

/// What an accepted PATCH does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchPlan {
    /// The upload is already complete at this offset: nothing to receive, answer its state.
    AlreadyComplete,
    Receive(Receive),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive {
    /// Where the bytes start (the upload's offset).
    pub start: u64,
    /// The most bytes this PATCH may bring: what its length leaves, or the size limit's room.
    pub room: u64,
    /// The upload's length once this PATCH's headers are applied (`None`: still deferred).
    pub length: Option<u64>,
    /// A deferred length this PATCH sets (recorded before its body is read).
    pub sets_length: Option<u64>,
}

impl Receive {
    /// Whether this PATCH may complete the upload: only when the length is known.
    pub fn may_complete(&self) -> bool {
        self.length.is_some()
    }

    /// Whether `size` bytes received (the body whole, or cut short) complete the upload.
    pub fn completes(&self, size: u64, cut_short: bool) -> bool {
        !cut_short && self.length == Some(self.start + size)
    }

    /// A deferred upload declared empty: nothing to convert (refused as `not_webm`).
    pub fn declared_empty(&self) -> bool {
        self.length == Some(0)
    }
}

/// What an upload token past its expiry may still do: finish the resumable upload it started,
/// that is PATCH and HEAD of `/v1/uploads/{its job}`, nothing else (the upload's own lifetime,
/// MEDIAQ_UPLOAD_MAX_LIFETIME, bounds that: see [`check_alive`]).
pub fn expired_token_may(job: Option<JobId>, method: &Method, path: &str) -> bool {
    let Some(job) = job else { return false };
    (method == Method::PATCH || method == Method::HEAD)
        && path.strip_prefix("/v1/uploads/").is_some_and(|id| id == job.to_string())
}

/// An unfinished upload past its expiry (no bytes for MEDIAQ_UPLOAD_EXPIRY, or older than
/// MEDIAQ_UPLOAD_MAX_LIFETIME) is gone, even before the janitor removes it: `upload_not_found`.
pub fn check_alive(upload: &Upload, now: DateTime<Utc>) -> Result<(), ApiError> {
    if !upload.is_complete() && upload.expires_at <= now {
        return Err(ApiError::UploadNotFound);
    }
    Ok(())
}

/// The limits a PATCH is held to: the caller's size limit (the server's, or its upload token's
/// if lower) and the most segments an upload may have (MEDIAQ_MAX_UPLOAD_SEGMENTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_segments: u32,
}

/// The rules of one PATCH, in the order they are checked; `segments`: how many the upload has.
pub fn plan(
    upload: &Upload,
    segments: u64,
    job: JobStatus,
    request: &PatchRequest,
    limits: Limits,
    now: DateTime<Utc>,
) -> Result<PatchPlan, ApiError> {
    let max = limits.max_bytes;
    check_alive(upload, now)?;
    if job.is_terminal() {
        return Err(ApiError::UploadClosed(format!("its job is {}", job.as_str())));
    }
    if request.offset != upload.received {
        return Err(ApiError::UploadOffsetMismatch(upload.received));
    }
    if upload.is_complete() {
        return Ok(PatchPlan::AlreadyComplete);
    }
    if segments >= u64::from(limits.max_segments) {
        return Err(ApiError::TooManySegments(limits.max_segments));
    }
    let mut sets_length = None;
    if let Some(length) = request.length {
        match upload.length {
            Some(known) if known != length => {
                return Err(ApiError::BadRequest(format!("Upload-Length is {known}; it cannot change")))
            }
            Some(_) => {}
            None if length > max => return Err(ApiError::PayloadTooLarge { limit: max }),
            None if length < upload.received => {
                return Err(ApiError::BadRequest(format!(
                    "Upload-Length is below the {} bytes received",
                    upload.received
                )))
            }
            None => sets_length = Some(length),
        }
    }
    let length = upload.length.or(sets_length);
    let room = match length {
        Some(length) => length - upload.received,
        None => max.saturating_sub(upload.received),
    };
    Ok(PatchPlan::Receive(Receive { start: upload.received, room, length, sets_length }))
}

/// The response headers of an upload's state (HEAD, and the offset after a PATCH).
pub fn headers(upload: &Upload, with_metadata: bool) -> Vec<(&'static str, String)> {
    let mut h = vec![("upload-offset", upload.received.to_string())];
    match upload.length {
        Some(length) => h.push(("upload-length", length.to_string())),
        None => h.push(("upload-defer-length", "1".to_owned())),
    }
    if !upload.is_complete() {
        h.push(("upload-expires", tus::http_date(upload.expires_at)));
    }
    if let (true, Some(meta)) = (with_metadata, &upload.metadata) {
        h.push(("upload-metadata", meta.clone()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    const LIMITS: Limits = Limits { max_bytes: 1000, max_segments: 3 };

    /// A moment before every test upload's expiry.
    fn before() -> DateTime<Utc> {
        at() - chrono::Duration::seconds(1)
    }

    fn upload(length: Option<u64>, received: u64, complete: bool) -> Upload {
        Upload {
            job_id: JobId::generate(),
            length,
            received,
            expires_at: at(),
            completed_at: complete.then(at),
            metadata: Some("filename Y2xpcC53ZWJt".into()),
        }
    }

    fn request(pairs: &[(&'static str, &str)]) -> Result<PatchRequest, ApiError> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        PatchRequest::from_headers(&h)
    }

    const V: (&str, &str) = ("tus-resumable", "1.0.0");
    const CT: (&str, &str) = ("content-type", "application/offset+octet-stream");

    fn receive(start: u64, room: u64, length: Option<u64>, sets_length: Option<u64>) -> Result<PatchPlan, String> {
        Ok(PatchPlan::Receive(Receive { start, room, length, sets_length }))
    }

    /// One row: what it checks, the upload, its job's status, the headers, the plan or the code.
    type Rule = (&'static str, Upload, JobStatus, Vec<(&'static str, &'static str)>, Result<PatchPlan, String>);

    /// Every rule of a PATCH: (what it checks, the upload, the job, the headers) -> the plan or
    /// the refusal's code. `max` is 1000 bytes throughout.
    #[test]
    fn every_patch_rule() {
        use JobStatus::*;
        let known = |received| upload(Some(100), received, false);
        let deferred = |received| upload(None, received, false);
        #[rustfmt::skip]
        let table: Vec<Rule> = vec![
            ("no Tus-Resumable: 412", known(0), Receiving, vec![CT, ("upload-offset", "0")], Err("tus_version_unsupported".into())),
            ("another tus version: 412", known(0), Receiving, vec![("tus-resumable", "0.2.2"), CT, ("upload-offset", "0")], Err("tus_version_unsupported".into())),
            ("no content type: 415", known(0), Receiving, vec![V, ("upload-offset", "0")], Err("unsupported_media_type".into())),
            ("another content type: 415", known(0), Receiving, vec![V, ("content-type", "video/webm"), ("upload-offset", "0")], Err("unsupported_media_type".into())),
            ("content type parameters are ignored", known(0), Receiving, vec![V, ("content-type", "Application/Offset+Octet-Stream; x=1"), ("upload-offset", "0")], receive(0, 100, Some(100), None)),
            ("no offset: 400", known(0), Receiving, vec![V, CT], Err("bad_request".into())),
            ("a negative offset: 400", known(0), Receiving, vec![V, CT, ("upload-offset", "-1")], Err("bad_request".into())),
            ("a malformed length: 400", deferred(0), Receiving, vec![V, CT, ("upload-offset", "0"), ("upload-length", "1e3")], Err("bad_request".into())),
            ("a failed job: 410", known(0), Failed, vec![V, CT, ("upload-offset", "0")], Err("upload_closed".into())),
            ("a canceled job: 410", known(0), Canceled, vec![V, CT, ("upload-offset", "0")], Err("upload_closed".into())),
            ("the job's status is checked before the offset", known(5), Succeeded, vec![V, CT, ("upload-offset", "0")], Err("upload_closed".into())),
            ("a queued (converting) job takes bytes", known(10), Queued, vec![V, CT, ("upload-offset", "10")], receive(10, 90, Some(100), None)),
            ("a processing job takes bytes", known(10), Processing, vec![V, CT, ("upload-offset", "10")], receive(10, 90, Some(100), None)),
            ("an offset behind: 409", known(10), Receiving, vec![V, CT, ("upload-offset", "5")], Err("upload_offset_mismatch".into())),
            ("an offset ahead: 409", known(10), Receiving, vec![V, CT, ("upload-offset", "11")], Err("upload_offset_mismatch".into())),
            ("complete: nothing to receive", upload(Some(100), 100, true), Queued, vec![V, CT, ("upload-offset", "100")], Ok(PatchPlan::AlreadyComplete)),
            ("complete, at another offset: 409", upload(Some(100), 100, true), Queued, vec![V, CT, ("upload-offset", "0")], Err("upload_offset_mismatch".into())),
            ("a known length: room is what it leaves", known(40), Receiving, vec![V, CT, ("upload-offset", "40")], receive(40, 60, Some(100), None)),
            ("a known length repeated", known(40), Receiving, vec![V, CT, ("upload-offset", "40"), ("upload-length", "100")], receive(40, 60, Some(100), None)),
            ("a known length changed: 400", known(40), Receiving, vec![V, CT, ("upload-offset", "40"), ("upload-length", "101")], Err("bad_request".into())),
            ("deferred: room is the size limit's", deferred(300), Receiving, vec![V, CT, ("upload-offset", "300")], receive(300, 700, None, None)),
            ("deferred at the limit: no room", deferred(1000), Receiving, vec![V, CT, ("upload-offset", "1000")], receive(1000, 0, None, None)),
            ("deferred, the length told: set, may complete", deferred(300), Receiving, vec![V, CT, ("upload-offset", "300"), ("upload-length", "500")], receive(300, 200, Some(500), Some(500))),
            ("deferred, the length told equals the offset", deferred(300), Receiving, vec![V, CT, ("upload-offset", "300"), ("upload-length", "300")], receive(300, 0, Some(300), Some(300))),
            ("deferred, a length over the limit: 413", deferred(0), Receiving, vec![V, CT, ("upload-offset", "0"), ("upload-length", "1001")], Err("payload_too_large".into())),
            ("deferred, a length below the offset: 400", deferred(300), Receiving, vec![V, CT, ("upload-offset", "300"), ("upload-length", "299")], Err("bad_request".into())),
            ("deferred, declared empty", deferred(0), Receiving, vec![V, CT, ("upload-offset", "0"), ("upload-length", "0")], receive(0, 0, Some(0), Some(0))),
        ];
        for (rule, upload, job, pairs, want) in table {
            let got = request(&pairs)
                .and_then(|r| plan(&upload, 0, job, &r, LIMITS, before()))
                .map_err(|e| e.code().to_owned());
            assert_eq!(got, want, "{rule}");
        }
    }

    #[test]
    fn an_upload_past_its_expiry_is_gone() {
        let req = PatchRequest { offset: 40, length: None };
        let unfinished = upload(Some(100), 40, false);
        let refused = plan(&unfinished, 0, JobStatus::Receiving, &req, LIMITS, at()).unwrap_err();
        assert_eq!(refused.code(), "upload_not_found", "at its expiry");
        assert!(plan(&unfinished, 0, JobStatus::Receiving, &req, LIMITS, before()).is_ok());
        let complete = upload(Some(100), 100, true);
        assert!(check_alive(&complete, at() + chrono::Duration::days(1)).is_ok(), "a complete upload does not expire");
    }

    #[test]
    fn segments_are_capped() {
        let req = PatchRequest { offset: 40, length: None };
        let unfinished = upload(Some(100), 40, false);
        let plan_with = |segments| plan(&unfinished, segments, JobStatus::Receiving, &req, LIMITS, before());
        assert!(plan_with(2).is_ok(), "below the cap");
        assert_eq!(plan_with(3).unwrap_err().code(), "too_many_segments", "at the cap");
        let complete = upload(Some(100), 100, true);
        let done = PatchRequest { offset: 100, length: None };
        assert_eq!(
            plan(&complete, 3, JobStatus::Queued, &done, LIMITS, before()).unwrap(),
            PatchPlan::AlreadyComplete,
            "a complete upload at the cap still answers its state"
        );
    }

    #[test]
    fn an_expired_token_may_only_finish_its_upload() {
        let job = JobId::generate();
        let own = format!("/v1/uploads/{job}");
        #[rustfmt::skip]
        let table = [
            (Some(job), Method::PATCH, own.clone(), true),
            (Some(job), Method::HEAD, own.clone(), true),
            (Some(job), Method::DELETE, own.clone(), false),
            (Some(job), Method::POST, "/v1/uploads".to_owned(), false),
            (Some(job), Method::GET, format!("/v1/jobs/{job}"), false),
            (Some(job), Method::GET, format!("/v1/jobs/{job}/links"), false),
            (Some(job), Method::PATCH, format!("/v1/uploads/{}", JobId::generate()), false),
            (Some(job), Method::PATCH, format!("{own}/x"), false),
            (None, Method::PATCH, own.clone(), false),
        ];
        for (bound, method, path, may) in table {
            assert_eq!(expired_token_may(bound, &method, &path), may, "{method} {path} (bound to {bound:?})");
        }
    }

    #[test]
    fn what_a_received_body_makes_of_the_upload() {
        let with_length = Receive { start: 40, room: 60, length: Some(100), sets_length: None };
        let deferred = Receive { start: 40, room: 960, length: None, sets_length: None };
        #[rustfmt::skip]
        let table = [
            ("the last bytes complete it", with_length, 60, false, true),
            ("the last bytes cut short do not", with_length, 60, true, false),
            ("fewer bytes do not", with_length, 59, false, false),
            ("a deferred length never completes", deferred, 960, false, false),
        ];
        for (rule, receive, size, cut, completes) in table {
            assert_eq!(receive.completes(size, cut), completes, "{rule}");
        }
        assert!(with_length.may_complete() && !deferred.may_complete());
        let empty = Receive { start: 0, room: 0, length: Some(0), sets_length: Some(0) };
        assert!(empty.declared_empty() && empty.completes(0, false));
        assert!(!with_length.declared_empty());
    }

    #[test]
    fn the_headers_of_an_upload() {
        let h = |u: &Upload, meta| headers(u, meta).into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>();
        let expires = "upload-expires: Tue, 08 Dec 2026 10:00:00 GMT".to_owned();
        assert_eq!(h(&upload(Some(100), 40, false), false), ["upload-offset: 40", "upload-length: 100", &expires]);
        assert_eq!(h(&upload(None, 40, false), false), ["upload-offset: 40", "upload-defer-length: 1", &expires]);
        assert_eq!(
            h(&upload(Some(100), 100, true), false),
            ["upload-offset: 100", "upload-length: 100"],
            "no expiry once complete"
        );
        assert_eq!(
            h(&upload(Some(100), 40, false), true),
            ["upload-offset: 40", "upload-length: 100", &expires, "upload-metadata: filename Y2xpcC53ZWJt"],
            "HEAD replays the metadata"
        );
    }
}
