//! Admission: everything decided about an upload before its first byte is read (scope, an upload
//! slot, the upload token, the per-job webhook URL, the declared size, the quota, the
//! Idempotency-Key), held by one guard, [`Admission`].
//!
//! The guard owns what the upload claimed: the token (single use) and the idempotency key's lease.
//! [`Admission::record`] spends them on the job it records; any failure gives them back (awaited,
//! so that a client retrying at once finds them free), and so does a request that goes away
//! mid-upload (the guard is dropped unsettled: the release runs as its own task).

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use mediaq_shared::{
    apikey::Scope,
    db::{
        idempotency::{self, Claim, Lease},
        jobs, tokens,
    },
    Job, Priority,
};
use sqlx::PgPool;

use super::{slots::UploadSlot, store, Origin, Upload};
use crate::{app::AppState, auth::Caller, error::ApiError, idempotency::IdempotencyKey, request_id};

/// Multipart framing allowance on top of the file size limit, for the early Content-Length check.
const MULTIPART_OVERHEAD: u64 = 1 << 20;

/// What an upload request says about itself in its headers, parsed once.
#[derive(Debug, Clone)]
pub struct UploadHead {
    pub content_type: String,
    pub multipart: bool,
    /// `Content-Length`, when given.
    pub declared: Option<u64>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The job's priority among its owner's jobs (`?priority=`, or tus metadata `priority`).
    pub priority: Priority,
}

impl UploadHead {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
        let content_type = text(header::CONTENT_TYPE).unwrap_or_default().to_owned();
        Ok(Self {
            multipart: content_type.to_ascii_lowercase().starts_with("multipart/form-data"),
            content_type,
            declared: text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            idempotency_key: IdempotencyKey::from_headers(headers)?,
            priority: Priority::Normal,
        })
    }
}

/// An admitted upload: its limit, who sent it, and what it claimed.
pub struct Admission {
    pool: PgPool,
    origin: Origin,
    limit: u64,
    token: Option<String>,
    idempotency: Option<Claim>,
    settled: bool,
    _slot: UploadSlot,
}

/// How an admitted upload ended.
pub enum Recorded {
    /// A new job.
    Created(Job),
    /// The job an earlier request with the same Idempotency-Key and the same upload created.
    Replayed(Job),
}

/// Admits an upload of `caller`'s, or refuses it before a byte is read.
pub async fn admit(
    state: &AppState,
    caller: &Caller,
    client_ip: IpAddr,
    head: &UploadHead,
    webhook_url: Option<&str>,
) -> Result<Admission, ApiError> {
    caller.require(Scope::JobsWrite)?;
    // Held until the upload is recorded or refused.
    let slot = state.uploads.take(&caller.key_id)?;
    let mut admission = Admission {
        pool: state.pool.clone(),
        origin: Origin {
            owner: caller.owner.clone(),
            api_key_id: Some(caller.key_id.clone()),
            token_id: caller.token.as_ref().map(|g| g.id.clone()),
            actor: caller.actor(),
            request_id: request_id::current(),
            client_ip: Some(client_ip),
            webhook_url: None,
            priority: head.priority,
        },
        limit: state.config.max_upload_bytes,
        token: None,
        idempotency: None,
        settled: false,
        _slot: slot,
    };
    if let Some(grant) = &caller.token {
        // Single use: claimed now, given back if the upload fails.
        if !grant.usable || !tokens::claim(&state.pool, &grant.id).await? {
            return Err(ApiError::Unauthorized("this upload token was already used or has expired"));
        }
        admission.token = Some(grant.id.clone());
        admission.limit = admission.limit.min(grant.max_bytes);
    }
    match admission.check(state, caller, head, webhook_url).await {
        Ok(()) => Ok(admission),
        Err(e) => Err(admission.refuse(e).await),
    }
}

impl Admission {
    /// The checks after the token's claim.
    async fn check(
        &mut self,
        state: &AppState,
        caller: &Caller,
        head: &UploadHead,
        webhook_url: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(raw) = webhook_url {
            // Per-job webhooks: API keys only, checked like an endpoint's; the owner must have a secret.
            caller.require_key()?;
            let url = crate::webhook_url::check(state, raw).await?;
            if !mediaq_shared::db::webhooks::has_secret(&state.pool, &caller.owner).await? {
                return Err(ApiError::WebhookSecretMissing);
            }
            self.origin.webhook_url = Some(url);
        }
        let allowed = if head.multipart { self.limit.saturating_add(MULTIPART_OVERHEAD) } else { self.limit };
        if head.declared.is_some_and(|len| len > allowed) {
            return Err(ApiError::PayloadTooLarge { limit: self.limit });
        }
        crate::quota::check_early(state, &caller.key_id, head.declared).await?;
        if let Some(key) = &head.idempotency_key {
            match idempotency::claim(&state.pool, &caller.owner, key.as_str()).await? {
                Claim::InProgress => return Err(ApiError::IdempotencyInProgress),
                claim => self.idempotency = Some(claim),
            }
        }
        Ok(())
    }

    /// The most bytes this upload may have.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Records the received upload as a job (or finds the job an idempotent replay refers to),
    /// spending the claims; a failure gives them back.
    pub async fn record(mut self, state: &AppState, caller: &Caller, upload: Upload) -> Result<Recorded, ApiError> {
        let result = match self.idempotency.take() {
            Some(Claim::Completed { fingerprint, job_id }) => {
                if upload.fingerprint() != fingerprint {
                    Err(ApiError::IdempotencyKeyReused)
                } else {
                    jobs::get(&state.pool, job_id)
                        .await
                        .map_err(ApiError::from)
                        .and_then(|j| j.filter(|j| caller.can_see(j)).ok_or(ApiError::JobNotFound))
                        .map(Recorded::Replayed)
                }
            }
            Some(Claim::Owned(lease)) => {
                let stored = store(state, upload, self.origin.clone(), Some(lease.clone())).await;
                if stored.is_err() {
                    // Given back below with the token.
                    self.idempotency = Some(Claim::Owned(lease));
                }
                stored.map(Recorded::Created)
            }
            _ => store(state, upload, self.origin.clone(), None).await.map(Recorded::Created),
        };
        match result {
            Ok(recorded) => {
                self.settled = true;
                Ok(recorded)
            }
            Err(e) => Err(self.refuse(e).await),
        }
    }

    /// Records a resumable upload's job (`receiving`) and its upload, spending the token; a
    /// failure gives it back.
    pub async fn record_resumable(
        mut self,
        state: &AppState,
        new: &super::resumable::NewUpload,
    ) -> Result<(Job, mediaq_shared::db::uploads::Upload), ApiError> {
        match super::resumable::record_new(state, &self.origin, new).await {
            Ok(created) => {
                self.settled = true;
                Ok(created)
            }
            Err(e) => Err(self.refuse(e).await),
        }
    }

    /// Gives the claims back (awaited) and hands `error` on.
    pub async fn refuse(mut self, error: ApiError) -> ApiError {
        self.settled = true;
        let (token, lease) = (self.token.take(), self.lease());
        release(&self.pool, token, lease).await;
        error
    }

    fn lease(&mut self) -> Option<Lease> {
        match self.idempotency.take() {
            Some(Claim::Owned(lease)) => Some(lease),
            _ => None,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (token, lease) = (self.token.take(), self.lease());
        if token.is_none() && lease.is_none() {
            return;
        }
        // A refusal before `record`, or a request future dropped mid-upload (the client went away).
        let pool = self.pool.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&pool, token, lease).await });
        }
    }
}

async fn release(pool: &PgPool, token: Option<String>, lease: Option<Lease>) {
    if let Some(token) = token {
        if let Err(e) = tokens::release(pool, &token).await {
            tracing::warn!(error = %e, "could not give an upload token back");
        }
    }
    if let Some(lease) = lease {
        if let Err(e) = idempotency::release(pool, &lease).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }
}
