//! Streams an upload into storage while enforcing the size limit and checking the leading
//! bytes; the storage writer hashes (SHA-256) and writes (a local temp file, or an S3 multipart
//! upload at the final key). Whatever was written is removed (or the multipart upload aborted)
//! when the [`Receiver`] or its [`Received`] is dropped without being stored, so any failure
//! (or a client that disconnects, which drops the request future) leaves nothing behind.
//!
//! The request task only counts bytes and checks the first 4 KiB; hashing and writing happen
//! beside it, fed whole chunks (no copy) through a small bounded channel, so memory per upload
//! stays small (plus, for S3, the 5 MiB parts in flight).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mediaq_shared::{
    storage::{ObjectWriter, Storage, StoredObject},
    JobId,
};

use sha2::Sha256;

use super::sniff::{self, HEAD_LEN};
use crate::error::ApiError;

/// How fast a client must send: something every `idle`, and on average `min_rate` bytes per
/// second once the upload has run for `grace` (so that a byte every few seconds cannot hold an
/// upload slot for hours).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub idle: Duration,
    pub min_rate: u64,
    pub grace: Duration,
}

impl Pace {
    pub fn from_config(config: &crate::config::ApiConfig) -> Self {
        Self { idle: config.upload_idle_timeout, min_rate: config.upload_min_rate, grace: config.upload_rate_grace }
    }

    /// Refuses an upload that, `elapsed` after it started, has received fewer than `min_rate`
    /// bytes per second on average.
    fn check(&self, received: u64, elapsed: Duration) -> Result<(), ApiError> {
        if elapsed < self.grace {
            return Ok(());
        }
        let due = (self.min_rate as f64 * elapsed.as_secs_f64()) as u64;
        if received < due {
            Err(ApiError::UploadTooSlow(self.min_rate))
        } else {
            Ok(())
        }
    }
}

pub struct Receiver {
    started: Instant,
    writer: ObjectWriter,
    id: JobId,
    key: String,
    size: u64,
    head: Vec<u8>,
    checked: bool,
    limit: u64,
}

/// A complete, durable (local: fsynced) upload that passed the content check, not yet
/// committed under its key.
pub struct Received {
    pub id: JobId,
    pub key: String,
    pub object: StoredObject,
    pub size: u64,
    pub sha256: String,
    /// The hash's state after these bytes (a resumable upload's next segment continues it).
    pub running: Sha256,
}

impl Receiver {
    /// Starts receiving the input of a new job (its id fixes the key S3 writes to).
    pub async fn create(storage: &Storage, limit: u64) -> Result<Self, ApiError> {
        let id = JobId::generate();
        let key = Storage::input_key(id);
        let writer = storage.writer(&key).await?;
        Ok(Self {
            started: Instant::now(),
            writer,
            id,
            key,
            size: 0,
            head: Vec::with_capacity(HEAD_LEN),
            checked: false,
            limit,
        })
    }

    /// Starts receiving one PATCH of the resumable upload of job `id`, from offset `start`, into
    /// its own segment object: at most `limit` bytes. `head` holds the upload's first bytes
    /// received before (the content check runs once it has [`HEAD_LEN`] of them), `None` when
    /// they were checked already; `seed` is the hash of every byte before `start`.
    pub async fn segment(
        storage: &Storage,
        id: JobId,
        start: u64,
        limit: u64,
        head: Option<Vec<u8>>,
        seed: Sha256,
    ) -> Result<Self, ApiError> {
        let key = Storage::segment_key(id, start);
        let writer = storage.writer_continuing(&key, seed).await?;
        let mut head = head.unwrap_or_else(|| vec![0; HEAD_LEN]);
        head.truncate(HEAD_LEN);
        let checked = head.len() == HEAD_LEN;
        Ok(Self { started: Instant::now(), writer, id, key, size: 0, head, checked, limit })
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Copies a body stream in, cutting off a client that stays silent for `pace.idle` or sends
    /// slower than `pace.min_rate` on average.
    pub async fn copy_from<S, B, E>(
        &mut self,
        stream: S,
        pace: Pace,
        on_stream_error: impl Fn(E) -> ApiError,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: Into<Bytes>,
    {
        let mut stream = stream;
        loop {
            // Wake up when the average rate would fall below the minimum, even if nothing comes.
            let rate_due = pace.min_rate.max(1);
            let until_slow = Duration::from_secs_f64((self.size + 1) as f64 / rate_due as f64)
                .max(pace.grace)
                .saturating_sub(self.started.elapsed());
            let wait = pace.idle.min(until_slow + Duration::from_millis(10));
            match tokio::time::timeout(wait, stream.next()).await {
                Err(_) if wait == pace.idle => return Err(ApiError::UploadTimeout(pace.idle.as_secs())),
                Err(_) => pace.check(self.size, self.started.elapsed())?,
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(on_stream_error(e)),
                Ok(Some(Ok(chunk))) => {
                    self.write(chunk.into()).await?;
                    pace.check(self.size, self.started.elapsed())?;
                }
            }
        }
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), ApiError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(ApiError::PayloadTooLarge { limit: self.limit });
        }
        self.size = size;
        if !self.checked {
            let want = HEAD_LEN - self.head.len();
            self.head.extend_from_slice(&chunk[..want.min(chunk.len())]);
            if self.head.len() == HEAD_LEN {
                // Refuse a PNG after its first 4 KiB, not after its last byte.
                sniff::check_content(&self.head, false)?;
                self.checked = true;
            }
        }
        self.writer.write(chunk).await?;
        Ok(())
    }

    /// Finishes the upload: checks short files, lets the writer flush, hash and fsync (local)
    /// or complete the multipart upload (S3).
    pub async fn finish(self) -> Result<Received, ApiError> {
        if self.size == 0 {
            return Err(ApiError::EmptyUpload);
        }
        if !self.checked {
            sniff::check_content(&self.head, true)?;
        }
        self.finish_bytes().await
    }

    /// Finishes one segment of a resumable upload; `last`: it ends the upload, so a file shorter
    /// than the content check's window is checked now.
    pub async fn finish_segment(self, last: bool) -> Result<Received, ApiError> {
        if last && !self.checked {
            sniff::check_content(&self.head, true)?;
        }
        self.finish_bytes().await
    }

    async fn finish_bytes(self) -> Result<Received, ApiError> {
        let written = self.writer.finish().await?;
        Ok(Received {
            id: self.id,
            key: self.key,
            object: written.object,
            size: written.size,
            sha256: written.sha256,
            running: written.running,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_rate_is_checked_after_the_grace_period() {
        let pace = Pace { idle: Duration::from_secs(30), min_rate: 1000, grace: Duration::from_secs(10) };
        assert!(pace.check(0, Duration::from_secs(9)).is_ok(), "within the grace period anything goes");
        assert!(pace.check(20_000, Duration::from_secs(20)).is_ok());
        assert!(matches!(pace.check(19_000, Duration::from_secs(20)), Err(ApiError::UploadTooSlow(1000))));
        // A byte every 25 s never reaches the average.
        assert!(pace.check(4, Duration::from_secs(100)).is_err());
    }
}
