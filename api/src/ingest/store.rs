//! Storing a received upload and recording its job, atomically.

use std::net::IpAddr;

use mediaq_shared::{
    db::{audit, audit::AuditEvent, idempotency, jobs, tokens},
    queue::{self, Lane},
    InputFacts, Job, JobId, JobStatus,
};
use serde_json::json;
use tracing::Instrument;

use super::Upload;
use crate::{app::AppState, error::ApiError};

/// Who sent the upload: the job's owner, and the audit trail's actor, request and address.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub owner: String,
    pub api_key_id: Option<String>,
    /// The upload token used, bound to the job in its transaction.
    pub token_id: Option<String>,
    /// Audit actor (`key:<id>` or `token:<id>`).
    pub actor: String,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// A per-job webhook URL (already checked).
    pub webhook_url: Option<String>,
    /// The job's priority among its owner's jobs.
    pub priority: mediaq_shared::Priority,
}

/// Stores a complete upload and records its job. Runs as its own task: once the bytes are in,
/// a client that goes away cannot leave a stored file without a job row (or the reverse).
pub async fn store(
    state: &AppState,
    upload: Upload,
    origin: Origin,
    idempotency: Option<idempotency::Lease>,
) -> Result<Job, ApiError> {
    let fingerprint = upload.fingerprint();
    let Upload { received, filename, content_type } = upload;
    let state = state.clone();
    let task = async move {
        let id = received.id;
        state.storage.commit(received.object).await?;
        let input = InputFacts {
            filename,
            size: received.size,
            sha256: Some(received.sha256),
            content_type,
            key: received.key,
        };
        let key = idempotency.map(|k| (k, fingerprint));
        match record(&state, id, &input, &origin, key.as_ref()).await {
            Ok(job) => Ok(job),
            Err(e) => {
                if let Err(rm) = state.storage.delete(&input.key).await {
                    tracing::error!(error = %rm, key = %input.key, "could not remove an unrecorded input");
                }
                Err(e)
            }
        }
    };
    tokio::spawn(task.in_current_span()).await.map_err(ApiError::internal)?
}

async fn record(
    state: &AppState,
    id: JobId,
    input: &InputFacts,
    origin: &Origin,
    idempotency: Option<&(idempotency::Lease, String)>,
) -> Result<Job, ApiError> {
    let mut tx = state.pool.begin().await?;
    let details = json!({
        "filename": input.filename.as_str(),
        "size_bytes": input.size,
        "sha256": input.sha256,
        "content_type": input.content_type,
    });
    let new = NewJob { id, input, status: JobStatus::Queued, quota_bytes: input.size, details };
    let job = insert_job(&mut tx, state, origin, new).await?;
    if let Some((lease, fingerprint)) = idempotency {
        if !idempotency::complete(&mut *tx, lease, fingerprint, id).await? {
            // The lease ran out while this upload was still arriving and another request holds
            // the key now: creating a job too would make two for one key.
            tracing::warn!(job_id = %id, "idempotency lease lost to another request; no job created");
            return Err(ApiError::IdempotencyInProgress);
        }
    }
    queue::enqueue(&mut tx, id, Lane::Cpu, None).await?;
    tx.commit().await?;
    tracing::info!(job_id = %id, size_bytes = input.size, "job created");
    Ok(job)
}

/// A job about to be inserted: its status (`queued`, or `receiving` for a resumable upload),
/// the bytes its quota check counts, and its `job.created` audit details.
pub(super) struct NewJob<'a> {
    pub id: JobId,
    pub input: &'a InputFacts,
    pub status: JobStatus,
    pub quota_bytes: u64,
    pub details: serde_json::Value,
}

/// The job's row and what comes with it, in the caller's transaction: the quota (for
/// `quota_bytes`, under the key's lock), the upload token's binding and the audit rows.
pub(super) async fn insert_job(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    origin: &Origin,
    new: NewJob<'_>,
) -> Result<Job, ApiError> {
    let NewJob { id, input, status, quota_bytes: size, details } = new;
    if let Some(key_id) = &origin.api_key_id {
        // Checked again here, under the key's lock: uploads that passed the early check together
        // are counted one after another, so together they cannot exceed the quota.
        crate::quota::check_locked(&mut *tx, &state.config, key_id, size).await?;
    }
    let who =
        jobs::NewJobOwner { owner: &origin.owner, api_key_id: origin.api_key_id.as_deref(), priority: origin.priority };
    let job = jobs::insert(&mut *tx, id, input, who, origin.webhook_url.as_deref(), status).await?;
    if let Some(token) = &origin.token_id {
        tokens::bind_job(&mut *tx, token, id).await?;
        let used = AuditEvent::new(origin.actor.clone(), "token.used")
            .job(id)
            .request(origin.request_id.clone(), origin.client_ip)
            .details(json!({ "token_id": token }));
        audit::record(&mut *tx, &used).await?;
    }
    let event = AuditEvent::new(origin.actor.clone(), "job.created")
        .job(id)
        .request(origin.request_id.clone(), origin.client_ip)
        .details(details);
    audit::record(&mut *tx, &event).await?;
    Ok(job)
}
