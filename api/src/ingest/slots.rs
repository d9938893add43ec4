//! How many uploads one API process receives at once (MEDIAQ_MAX_CONCURRENT_UPLOADS).
//!
//! Every upload in flight holds a storage writer (for the local disk, a thread of the blocking
//! pool for as long as the client keeps sending, and up to 1 MiB waiting for it) and hyper's read
//! buffer. Without a cap, a crowd of slow clients would grow memory without bound and take every
//! blocking thread (512), which file downloads need too. Past the cap, an upload is refused at
//! once with 503 `server_busy` and Retry-After, before any byte is stored.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::ApiError, metrics::ApiMetrics};

pub struct UploadSlots {
    free: Arc<Semaphore>,
    max: usize,
    metrics: Arc<ApiMetrics>,
}

/// One upload's place; given back when dropped (the upload ended, however it ended).
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
}

impl UploadSlots {
    pub fn new(max: usize, metrics: Arc<ApiMetrics>) -> Self {
        Self { free: Arc::new(Semaphore::new(max)), max, metrics }
    }

    /// Uploads being received now.
    pub fn in_flight(&self) -> usize {
        self.max - self.free.available_permits()
    }

    /// A place for one more upload, or `server_busy` when all are taken.
    pub fn take(&self) -> Result<UploadSlot, ApiError> {
        match self.free.clone().try_acquire_owned() {
            Ok(permit) => Ok(UploadSlot { _permit: permit }),
            Err(_) => {
                self.metrics.upload_refused_busy();
                tracing::warn!(max = self.max, "upload refused: MEDIAQ_MAX_CONCURRENT_UPLOADS uploads in flight");
                Err(ApiError::ServerBusy(self.max))
            }
        }
    }
}
