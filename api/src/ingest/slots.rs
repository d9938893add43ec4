//! How many uploads one API process receives at once (MEDIAQ_MAX_CONCURRENT_UPLOADS).
//!
//! Every upload in flight holds a storage writer (for the local disk, a thread of the blocking
//! pool for as long as the client keeps sending, and up to 1 MiB waiting for it) and hyper's read
//! buffer. Without a cap, a crowd of slow clients would grow memory without bound and take every
//! blocking thread (512), which file downloads need too. Past the cap, an upload is refused at
//! once with 503 `server_busy` and Retry-After, before any byte is stored.
//!
//! The slots are shared by everyone, so one key must not take them all (64 slow uploads from one
//! key would refuse every other client): each API key, together with every upload token it
//! minted, holds at most MEDIAQ_MAX_UPLOADS_PER_KEY of them; past that its uploads get 429
//! `too_many_uploads`. (Slow clients are also cut off by the minimum average rate, see
//! `receive::Pace`.)

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::ApiError, metrics::ApiMetrics};

pub struct UploadSlots {
    free: Arc<Semaphore>,
    max: usize,
    per_key: Arc<Mutex<HashMap<String, usize>>>,
    max_per_key: usize,
    metrics: Arc<ApiMetrics>,
}

/// One upload's place; given back when dropped (the upload ended, however it ended).
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    _key: KeyHold,
}

/// One of a key's places; given back when dropped.
struct KeyHold {
    key: String,
    per_key: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for KeyHold {
    fn drop(&mut self) {
        let mut per_key = self.per_key.lock().expect("upload slots lock");
        if let Some(n) = per_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

impl UploadSlots {
    pub fn new(max: usize, max_per_key: usize, metrics: Arc<ApiMetrics>) -> Self {
        Self { free: Arc::new(Semaphore::new(max)), max, per_key: Arc::default(), max_per_key, metrics }
    }

    /// Uploads being received now.
    pub fn in_flight(&self) -> usize {
        self.max - self.free.available_permits()
    }

    /// A place for one more upload of `key` (an API key id: a token's uploads count for the key
    /// that minted it), or `too_many_uploads` when that key holds its share, or `server_busy`
    /// when all are taken.
    pub fn take(&self, key: &str) -> Result<UploadSlot, ApiError> {
        {
            let mut per_key = self.per_key.lock().expect("upload slots lock");
            let held = per_key.entry(key.to_owned()).or_default();
            if *held >= self.max_per_key {
                drop(per_key);
                self.metrics.request_refused("upload.refused", "too_many_uploads");
                tracing::warn!(key_id = key, max = self.max_per_key, "upload refused: the key's uploads in flight");
                return Err(ApiError::TooManyUploads(self.max_per_key));
            }
            *held += 1;
        }
        let hold = KeyHold { key: key.to_owned(), per_key: self.per_key.clone() };
        match self.free.clone().try_acquire_owned() {
            Ok(permit) => Ok(UploadSlot { _permit: permit, _key: hold }),
            Err(_) => {
                self.metrics.upload_refused_busy();
                tracing::warn!(max = self.max, "upload refused: MEDIAQ_MAX_CONCURRENT_UPLOADS uploads in flight");
                Err(ApiError::ServerBusy(self.max))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_cannot_take_every_slot() {
        let slots = UploadSlots::new(4, 2, Arc::new(ApiMetrics::new()));
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert!(matches!(slots.take("a"), Err(ApiError::TooManyUploads(2))));
        let _b1 = slots.take("b").unwrap();
        let _b2 = slots.take("b").unwrap();
        assert!(matches!(slots.take("c"), Err(ApiError::ServerBusy(4))), "the process-wide cap still holds");
        assert_eq!(slots.in_flight(), 4);
        drop(a1);
        let _a3 = slots.take("a").unwrap();
        assert!(matches!(slots.take("c"), Err(ApiError::ServerBusy(4))));
        assert_eq!(slots.per_key.lock().unwrap().get("c"), None, "a refused take gives the key's place back");
        drop(_a3);
        let c = slots.take("c").unwrap();
        assert_eq!(slots.per_key.lock().unwrap().get("c"), Some(&1));
        drop(c);
        assert_eq!(slots.per_key.lock().unwrap().get("c"), None, "a key with nothing in flight is forgotten");
    }
}
