//! Resumable uploads (tus): an upload's job exists from its creation (`receiving`); each PATCH
//! streams into a segment object of its own (both backends: no S3 part minimum, since every
//! PATCH is one object), made durable before the offset moves on in the database. The first
//! acknowledged segment enqueues the job, so a worker converts while bytes still arrive; the
//! last one records the whole upload's SHA-256 and completes it.
//!
//! The whole upload's hash is carried across PATCHes: each segment's writer continues the hash
//! of the bytes before it (kept in [`InProgress`], in memory); a PATCH that lands on another
//! API process, or after a restart, rebuilds it once from the stored segments.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

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
    tus_rules::{self, PatchPlan, PatchRequest},
    Origin, DEFAULT_FILENAME,
};
use crate::{app::AppState, auth::Caller, error::ApiError, request_id, tus};

/// Resumable uploads in progress on this API process: the one PATCH each may have in flight,
/// and the running hash of each, by the offset it has reached.
#[derive(Default)]
pub struct InProgress {
    patching: Mutex<HashSet<JobId>>,
    hashes: Mutex<HashMap<JobId, (u64, Sha256)>>,
}

/// Uploads whose hash state is kept at once (about 200 bytes each); past this, one entry is
/// forgotten for each new one (rebuilt from storage if its upload goes on).
const MAX_KEPT_HASHES: usize = 4096;

/// The one PATCH in flight of an upload; the upload is free again when it is dropped.
struct PatchHold<'a> {
    in_progress: &'a InProgress,
    id: JobId,
}

impl Drop for PatchHold<'_> {
    fn drop(&mut self) {
        self.in_progress.patching.lock().expect("patching lock").remove(&self.id);
    }
}

impl InProgress {
    /// Takes upload `id` for one PATCH, or `upload_busy` while another PATCH holds it (so one
    /// upload, and the token that made it, holds at most one upload slot).
    fn hold(&self, id: JobId) -> Result<PatchHold<'_>, ApiError> {
        if !self.patching.lock().expect("patching lock").insert(id) {
            tracing::info!(job_id = %id, "PATCH refused: another PATCH to this upload is in progress");
            return Err(ApiError::UploadBusy);
        }
        Ok(PatchHold { in_progress: self, id })
    }

    /// The hash of the upload's first `offset` bytes, if kept (it stays kept: a PATCH that
    /// stores nothing leaves it for the next one).
    fn hash_at(&self, id: JobId, offset: u64) -> Option<Sha256> {
        match self.hashes.lock().expect("upload hashes lock").get(&id) {
            Some((at, hash)) if *at == offset => Some(hash.clone()),
            _ => None,
        }
    }

    fn keep_hash(&self, id: JobId, offset: u64, hash: Sha256) {
        let mut kept = self.hashes.lock().expect("upload hashes lock");
        if kept.len() >= MAX_KEPT_HASHES && !kept.contains_key(&id) {
            if let Some(forgotten) = kept.keys().next().copied() {
                kept.remove(&forgotten);
            }
        }
        kept.insert(id, (offset, hash));
    }

    fn forget(&self, id: JobId) {
        self.hashes.lock().expect("upload hashes lock").remove(&id);
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

/// The upload of `job` (a job the caller may see), or `upload_not_found`.
pub async fn find(state: &AppState, job: &Job) -> Result<Upload, ApiError> {
    uploads::get(&state.pool, job.id).await?.ok_or(ApiError::UploadNotFound)
}

/// Appends one PATCH's body to the upload of `job`: plan (the tus rules) -> receive (the body
/// into a segment object, durable) -> record (the offset moves on). A body cut short (the
/// connection dropped, the client went silent) keeps what arrived, so the client resumes from
/// there. Returns the upload as it now is.
pub async fn append(
    state: &AppState,
    caller: &Caller,
    job: &Job,
    request: PatchRequest,
    body: &mut BodyDataStream,
) -> Result<Upload, ApiError> {
    // One PATCH at a time per upload, refused before its body is read.
    let _hold = state.in_progress.hold(job.id)?;
    let mut upload = find(state, job).await?;
    let limits = tus_rules::Limits {
        max_bytes: caller
            .token
            .as_ref()
            .map_or(state.config.max_upload_bytes, |g| g.max_bytes.min(state.config.max_upload_bytes)),
        max_segments: state.config.max_upload_segments,
    };
    let segments = uploads::segment_count(&state.pool, job.id).await?;
    let plan = match tus_rules::plan(&upload, segments, job.status, &request, limits, Utc::now())? {
        PatchPlan::AlreadyComplete => return Ok(upload),
        PatchPlan::Receive(plan) => plan,
    };
    if let Some(length) = plan.sets_length {
        let mut conn = state.pool.acquire().await?;
        if !uploads::set_length(&mut conn, job.id, length).await? {
            return Err(ApiError::UploadOffsetMismatch(upload.received));
        }
        upload.length = Some(length);
    }
    if plan.declared_empty() {
        // A deferred upload declared empty: there is nothing to convert.
        let refused = ApiError::NotWebm("the upload is empty".into());
        return Err(refuse_content(state, caller, job.id, refused).await);
    }
    // Held while the body arrives, like a classic upload's.
    let _slot = state.uploads.take(&caller.key_id)?;
    let received = receive(state, caller, job.id, &upload, &plan, body).await?;
    let end = plan.start + received.size;
    let completes = plan.completes(received.size, received.cut_short.is_some());
    let sha256 = completes.then(|| hex::encode(received.running.clone().finalize()));
    if received.segment.is_some() || completes {
        let segment = received.segment.as_ref().map(|s| (s, upload.length.is_none()));
        let recorded = record_segment(state, caller, job.id, segment, sha256.as_deref().map(|h| (h, end))).await;
        if !matches!(recorded, Ok(true)) {
            if let Some(segment) = &received.segment {
                let _ = state.storage.delete(&segment.key).await;
            }
        }
        match recorded {
            Ok(true) => {}
            // Another API process moved the offset first: this PATCH's bytes are not the upload's.
            Ok(false) if received.segment.is_none() => return Ok(upload),
            Ok(false) => {
                let now = uploads::get(&state.pool, job.id).await?.map_or(upload.received, |u| u.received);
                return Err(ApiError::UploadOffsetMismatch(now));
            }
            Err(e) => return Err(e),
        }
    }
    if completes {
        state.in_progress.forget(job.id);
        upload.completed_at = Some(Utc::now());
    } else {
        state.in_progress.keep_hash(job.id, end, received.running);
    }
    upload.received = end;
    if let Some(e) = received.cut_short {
        tracing::info!(job_id = %job.id, offset = end, "a PATCH ended early; its bytes were kept");
        return Err(e);
    }
    Ok(upload)
}

/// A PATCH's received body: its bytes stored as one durable segment (none if it brought none),
/// and the hash of the whole upload up to its end.
struct ReceivedBody {
    size: u64,
    segment: Option<uploads::Segment>,
    running: Sha256,
    /// Why the body ended early, if it did (its bytes are kept).
    cut_short: Option<ApiError>,
}

/// Receives the body into a segment object of its own and makes it durable.
async fn receive(
    state: &AppState,
    caller: &Caller,
    id: JobId,
    upload: &Upload,
    plan: &tus_rules::Receive,
    body: &mut BodyDataStream,
) -> Result<ReceivedBody, ApiError> {
    let started = std::time::Instant::now();
    let (head, seed) = resume_point(state, id, upload).await?;
    let mut receiver = Receiver::segment(&state.storage, id, plan.start, plan.room, head, seed.clone()).await?;
    let limit_error = |e| match (e, plan.length) {
        (ApiError::PayloadTooLarge { .. }, Some(_)) => ApiError::UploadLengthExceeded(plan.room),
        (e, _) => e,
    };
    let cut_short =
        match receiver.copy_from(&mut *body, Pace::from_config(&state.config), |_| ApiError::UploadIncomplete).await {
            Ok(()) => None,
            // Keep what arrived: the client resumes from the new offset.
            Err(e @ (ApiError::UploadIncomplete | ApiError::UploadTimeout(_) | ApiError::UploadTooSlow(_)))
                if receiver.size() > 0 =>
            {
                Some(e)
            }
            Err(e) => return Err(refuse_content(state, caller, id, limit_error(e)).await),
        };
    if receiver.size() == 0 {
        return Ok(ReceivedBody { size: 0, segment: None, running: seed, cut_short });
    }
    let arrived = started.elapsed();
    let last = plan.completes(receiver.size(), cut_short.is_some());
    let received = match receiver.finish_segment(last).await {
        Ok(received) => received,
        Err(e) => return Err(refuse_content(state, caller, id, e).await),
    };
    let segment = uploads::Segment { start: plan.start, size: received.size, key: received.key.clone() };
    state.storage.commit(received.object).await?;
    state.metrics.record_upload(segment.size);
    // Where a PATCH's time goes: its bytes arriving (and written), made durable.
    tracing::debug!(
        job_id = %id,
        bytes = segment.size,
        arrived_ms = arrived.as_secs_f64() * 1e3,
        durable_ms = (started.elapsed() - arrived).as_secs_f64() * 1e3,
        "segment stored"
    );
    Ok(ReceivedBody { size: segment.size, segment: Some(segment), running: received.running, cut_short })
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
/// received, from memory or rebuilt from the stored segments (hashed on a blocking thread, not
/// on the async threads that serve every request).
async fn resume_point(state: &AppState, id: JobId, upload: &Upload) -> Result<(Option<Vec<u8>>, Sha256), ApiError> {
    // At offset 0 there is nothing before: the hash starts empty.
    let kept = state.in_progress.hash_at(id, upload.received).or_else(|| (upload.received == 0).then(Sha256::new));
    if let (Some(hash), true) = (&kept, upload.received >= HEAD_LEN as u64) {
        return Ok((None, hash.clone()));
    }
    let rebuild = kept.is_none();
    if rebuild {
        tracing::info!(job_id = %id, offset = upload.received, "rebuilding an upload's hash from its segments");
    }
    let (chunks, mut to_hash) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hash = Sha256::new();
        while let Some(chunk) = to_hash.blocking_recv() {
            hash.update(&chunk);
        }
        hash
    });
    let mut head = Vec::with_capacity(HEAD_LEN);
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
                chunks.send(chunk).await.map_err(ApiError::internal)?;
            }
        }
    }
    drop(chunks);
    let rebuilt = hasher.await.map_err(ApiError::internal)?;
    Ok((Some(head), kept.unwrap_or(rebuilt)))
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
