//! Resumable uploads (tus): an upload's job exists from its creation (`receiving`); each PATCH
//! streams into a segment object of its own (both backends: no S3 part minimum, since every
//! PATCH is one object), made durable before the offset moves on in the database. The first
//! acknowledged segment enqueues the job, so a worker converts while bytes still arrive; the
//! last one records the whole upload's SHA-256 and completes it.
//!
//! The whole upload's hash is carried across PATCHes: each segment's writer continues the hash
//! of the bytes before it (kept in [`UploadHashes`], in memory); a PATCH that lands on another
//! API process, or after a restart, rebuilds it once from the stored segments.

use std::{collections::HashMap, sync::Mutex};

use axum::body::BodyDataStream;
use chrono::Utc;
use futures_util::StreamExt;
use mediaq_shared::{
    db::{audit, audit::AuditEvent, uploads, uploads::Upload},
    db::{fair, jobs},
    queue::{self, Lane},
    storage::Storage,
    FailureCode, InputFacts, Job, JobId, JobStatus, OriginalFilename,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    receiver::{Pace, Receiver},
    sniff::{self, HEAD_LEN},
    store::{insert_job, NewJob},
    Origin, DEFAULT_FILENAME,
};
use crate::{app::AppState, auth::Caller, error::ApiError, request_id, tus};

/// Hash states of uploads in progress, by the offset they have reached.
#[derive(Default)]
pub struct UploadHashes(Mutex<HashMap<JobId, (u64, Sha256)>>);

/// Uploads whose hash state is kept at once (about 200 bytes each); past this, one entry is
/// forgotten for each new one (rebuilt from storage if its upload goes on).
const MAX_KEPT_HASHES: usize = 4096;

impl UploadHashes {
    fn take(&self, id: JobId, offset: u64) -> Option<Sha256> {
        let mut kept = self.0.lock().expect("upload hashes lock");
        match kept.remove(&id) {
            Some((at, hash)) if at == offset => Some(hash),
            _ => None,
        }
    }

    fn keep(&self, id: JobId, offset: u64, hash: Sha256) {
        let mut kept = self.0.lock().expect("upload hashes lock");
        if kept.len() >= MAX_KEPT_HASHES && !kept.contains_key(&id) {
            if let Some(forgotten) = kept.keys().next().copied() {
                kept.remove(&forgotten);
            }
        }
        kept.insert(id, (offset, hash));
    }
}

/// What a creation request says about the file, checked like a classic upload's headers.
pub struct NewUpload {
    pub length: Option<u64>,
    pub filename: OriginalFilename,
    pub content_type: &'static str,
    /// `Upload-Metadata` as sent (replayed on HEAD).
    pub metadata: Option<String>,
}

impl NewUpload {
    /// The declared length and metadata; `filetype` and `filename` pass the checks of
    /// `POST /v1/jobs` (a WebM/Matroska type, an extension that agrees), with the same defaults.
    pub fn checked(length: Option<u64>, meta: tus::Metadata) -> Result<Self, ApiError> {
        let content_type = sniff::check_declared_type(meta.filetype.as_deref().unwrap_or("video/webm"))?;
        let filename = OriginalFilename::sanitize(meta.filename.as_deref().unwrap_or(DEFAULT_FILENAME));
        sniff::check_extension(&filename)?;
        Ok(Self { length, filename, content_type, metadata: meta.raw })
    }
}

/// Records the job (`receiving`) and its upload, in one transaction.
pub(super) async fn record_new(state: &AppState, origin: &Origin, new: &NewUpload) -> Result<(Job, Upload), ApiError> {
    let id = JobId::generate();
    let input = InputFacts {
        filename: new.filename.clone(),
        size: 0,
        sha256: None,
        content_type: new.content_type.to_owned(),
        key: Storage::segment_prefix(id),
    };
    let details = json!({
        "filename": input.filename.as_str(),
        "content_type": input.content_type,
        "resumable": true,
        "upload_length": new.length,
    });
    let expires = Utc::now() + state.config.upload_expiry.min(state.config.upload_max_lifetime);
    let mut tx = state.pool.begin().await?;
    // The quota's check counts the declared length (1 byte when deferred: the job's size then
    // grows with each PATCH, which later checks count).
    let job = NewJob { id, input: &input, status: JobStatus::Receiving, quota_bytes: new.length.unwrap_or(1), details };
    let job = insert_job(&mut tx, state, origin, job).await?;
    let upload = uploads::create(&mut tx, id, new.length, expires, new.metadata.as_deref()).await?;
    tx.commit().await?;
    tracing::info!(job_id = %id, length = new.length, "resumable upload created");
    Ok((job, upload))
}

/// One PATCH: `Upload-Offset` and, for a deferred length, the `Upload-Length` it may bring.
pub struct Patch {
    pub offset: u64,
    pub length: Option<u64>,
}

/// The upload of `job` (a job the caller may see), or `upload_not_found`.
pub async fn find(state: &AppState, job: &Job) -> Result<Upload, ApiError> {
    uploads::get(&state.pool, job.id).await?.ok_or(ApiError::UploadNotFound)
}

/// Appends one PATCH's body to the upload of `job`: the bytes are durable in storage before the
/// offset moves. A body cut short (the connection dropped, the client went silent) keeps what
/// arrived, so the client resumes from there. Returns the upload as it now is.
pub async fn append(
    state: &AppState,
    caller: &Caller,
    job: &Job,
    patch: Patch,
    body: &mut BodyDataStream,
) -> Result<Upload, ApiError> {
    let mut upload = find(state, job).await?;
    if job.status.is_terminal() {
        return Err(ApiError::UploadClosed(format!("its job is {}", job.status.as_str())));
    }
    if patch.offset != upload.received {
        return Err(ApiError::UploadOffsetMismatch(upload.received));
    }
    if upload.is_complete() {
        return Ok(upload);
    }
    let max =
        caller.token.as_ref().map_or(state.config.max_upload_bytes, |g| g.max_bytes.min(state.config.max_upload_bytes));
    if let Some(length) = patch.length {
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
            None => {
                let mut conn = state.pool.acquire().await?;
                if !uploads::set_length(&mut conn, job.id, length).await? {
                    return Err(ApiError::UploadOffsetMismatch(upload.received));
                }
                upload.length = Some(length);
            }
        }
    }
    let room = match upload.length {
        Some(length) => length - upload.received,
        None => max.saturating_sub(upload.received),
    };
    // Held while the body arrives, like a classic upload's.
    let _slot = state.uploads.take(&caller.key_id)?;
    let started = std::time::Instant::now();
    let (head, seed) = resume_point(state, job.id, &upload).await?;
    let mut receiver = Receiver::segment(&state.storage, job.id, upload.received, room, head, seed.clone()).await?;
    let limit_error = |e| match (e, upload.length) {
        (ApiError::PayloadTooLarge { .. }, Some(_)) => ApiError::UploadLengthExceeded(room),
        (e, _) => e,
    };
    let interrupted =
        match receiver.copy_from(&mut *body, Pace::from_config(&state.config), |_| ApiError::UploadIncomplete).await {
            Ok(()) => None,
            // Keep what arrived: the client resumes from the new offset.
            Err(e @ (ApiError::UploadIncomplete | ApiError::UploadTimeout(_) | ApiError::UploadTooSlow(_)))
                if receiver.size() > 0 =>
            {
                Some(e)
            }
            Err(e) => return Err(refuse_content(state, caller, job.id, limit_error(e)).await),
        };
    let end = upload.received + receiver.size();
    let last = interrupted.is_none() && upload.length == Some(end);
    if receiver.size() == 0 {
        if last && end == 0 {
            // A deferred upload declared empty: there is nothing to convert.
            let refused = ApiError::NotWebm("the upload is empty".into());
            return Err(refuse_content(state, caller, job.id, refused).await);
        }
        // An empty PATCH; with a deferred length now known, it may be the one that completes.
        if last {
            let sha256 = hex::encode(seed.finalize());
            if record_segment(state, caller, job.id, None, Some((&sha256, end))).await? {
                upload.completed_at = Some(Utc::now());
            }
        }
        return Ok(upload);
    }
    let arrived = started.elapsed();
    let received = match receiver.finish_segment(last).await {
        Ok(received) => received,
        Err(e) => return Err(refuse_content(state, caller, job.id, e).await),
    };
    let segment = uploads::Segment { start: upload.received, size: received.size, key: received.key.clone() };
    state.storage.commit(received.object).await?;
    let durable = started.elapsed();
    let recorded = record_segment(
        state,
        caller,
        job.id,
        Some((&segment, upload.length.is_none())),
        last.then_some((received.sha256.as_str(), end)),
    )
    .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            // Another PATCH moved the offset first: this one's bytes are not the upload's.
            let _ = state.storage.delete(&segment.key).await;
            let now = uploads::get(&state.pool, job.id).await?.map_or(upload.received, |u| u.received);
            return Err(ApiError::UploadOffsetMismatch(now));
        }
        Err(e) => {
            let _ = state.storage.delete(&segment.key).await;
            return Err(e);
        }
    }
    if !last {
        state.upload_hashes.keep(job.id, end, received.running);
    }
    state.metrics.record_upload(segment.size);
    // Where a PATCH's time goes: its bytes arriving (and written), made durable, recorded.
    tracing::debug!(
        job_id = %job.id,
        bytes = segment.size,
        arrived_ms = arrived.as_secs_f64() * 1e3,
        durable_ms = (durable - arrived).as_secs_f64() * 1e3,
        recorded_ms = (started.elapsed() - durable).as_secs_f64() * 1e3,
        "segment stored"
    );
    if let Some(e) = interrupted {
        tracing::info!(job_id = %job.id, offset = end, "a PATCH ended early; its bytes were kept");
        return Err(e);
    }
    upload.received = end;
    if last {
        upload.completed_at = Some(Utc::now());
    }
    Ok(upload)
}

/// Records an acknowledged segment (the offset moves on; a deferred upload's bytes count against
/// the key's daily quota here, under its lock) and, with the whole upload's hash, completes the
/// upload. A job waiting for bytes is queued once its first bytes passed the content check:
/// in the live lane while its upload is unfinished (within its key's live limit), else in the
/// CPU lane; a task still waiting in the live lane when the upload completes moves to the CPU
/// lane.
async fn record_segment(
    state: &AppState,
    caller: &Caller,
    id: JobId,
    segment: Option<(&uploads::Segment, bool)>,
    complete_with: Option<(&str, u64)>,
) -> Result<bool, ApiError> {
    let expires = Utc::now() + state.config.upload_expiry;
    let mut tx = state.pool.begin().await?;
    let mut checked = complete_with.is_some();
    if let Some((segment, deferred)) = segment {
        if deferred {
            crate::quota::check_bytes_locked(&mut tx, &state.config, &caller.key_id, segment.size).await?;
        }
        if !uploads::append(&mut tx, id, segment, expires, state.config.upload_max_lifetime).await? {
            return Ok(false);
        }
        checked |= segment.start + segment.size >= HEAD_LEN as u64;
    }
    if let Some((sha256, size)) = complete_with {
        if !uploads::complete(&mut tx, id, sha256).await? {
            return Ok(false);
        }
        fair::move_to_cpu_lane(&mut tx, id).await?;
        let event = AuditEvent::new(caller.actor(), "upload.completed")
            .job(id)
            .request(request_id::current(), None)
            .details(json!({ "size_bytes": size, "sha256": sha256 }));
        audit::record(&mut *tx, &event).await?;
    }
    if checked {
        if let Some(status) = jobs::take_for_queue(&mut tx, id, state.config.live_per_key).await? {
            queue::enqueue_placed(&mut tx, id, Lane::for_status(status), None, false).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// The upload's first bytes (up to the content check's window) and the hash of everything
/// received, from memory or rebuilt from the stored segments.
async fn resume_point(state: &AppState, id: JobId, upload: &Upload) -> Result<(Option<Vec<u8>>, Sha256), ApiError> {
    let kept = state.upload_hashes.take(id, upload.received);
    if let (Some(hash), true) = (&kept, upload.received >= HEAD_LEN as u64) {
        return Ok((None, hash.clone()));
    }
    let mut head = Vec::with_capacity(HEAD_LEN);
    let mut hash = Sha256::new();
    let rebuild = kept.is_none();
    for segment in uploads::segments(&state.pool, id, 0).await? {
        if !rebuild && head.len() >= HEAD_LEN {
            break;
        }
        let mut body = state.storage.get(&segment.key, None).await?.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let want = HEAD_LEN.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..want]);
            if rebuild {
                hash.update(&chunk);
            }
        }
    }
    Ok((Some(head), kept.unwrap_or(hash)))
}

/// A PATCH refused for its content (not WebM, over the length): a content refusal discards the
/// upload (its job fails `invalid_media`, its bytes are deleted), so no later PATCH continues it.
async fn refuse_content(state: &AppState, caller: &Caller, id: JobId, error: ApiError) -> ApiError {
    if !matches!(error, ApiError::NotWebm(_) | ApiError::UnsupportedMediaType(_) | ApiError::ExtensionMismatch(_)) {
        return error;
    }
    let ended = async {
        let mut tx = state.pool.begin().await?;
        if uploads::refuse(&mut tx, id, FailureCode::InvalidMedia, &format!("the upload was refused: {error}")).await? {
            let event = AuditEvent::new(caller.actor(), "upload.refused")
                .job(id)
                .request(request_id::current(), None)
                .details(json!({ "code": error.code() }));
            audit::record(&mut *tx, &event).await?;
        }
        tx.commit().await?;
        state.storage.delete_input(&Storage::segment_prefix(id)).await?;
        Ok::<_, ApiError>(())
    };
    if let Err(e) = ended.await {
        tracing::error!(error = %e, job_id = %id, "could not discard a refused upload");
    }
    error
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
