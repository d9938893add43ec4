//! What every attempt of this worker process shares, and the worker's own (non-media) failures.

use std::sync::Arc;

use mediaq_shared::storage::{Storage, StorageError};
use sqlx::PgPool;

use crate::{config::WorkerConfig, selfcheck::SandboxPolicy};

/// The worker process's state, passed to every attempt.
pub struct WorkerState {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: WorkerConfig,
    /// The layers every child must show, and the namespaces it gets (found at start-up).
    pub sandbox: SandboxPolicy,
    /// Becomes true when the shutdown grace period is over: running attempts hand their jobs back.
    pub abandon: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
    /// Jobs canceled while processing, heard through LISTEN/NOTIFY.
    pub cancellations: crate::cancellations::Cancellations,
    /// Resumable uploads that received bytes (or ended), heard through LISTEN/NOTIFY.
    pub upload_progress: crate::cancellations::UploadProgress,
}

/// A failure that is the worker's (database, storage), not the media's.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] StorageError),
}
