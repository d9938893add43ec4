//! Streams an upload into storage while enforcing the size limit and checking the leading
//! bytes; the storage writer hashes (SHA-256) and writes (a local temp file, or an S3 multipart
//! upload at the final key). Whatever was written is removed (or the multipart upload aborted)
//! when the [`Receiver`] or its [`Received`] is dropped without being stored, so any failure
//! (or a client that disconnects, which drops the request future) leaves nothing behind.
//!
//! The request task only counts bytes and checks the first 4 KiB; hashing and writing happen
//! beside it, fed whole chunks (no copy) through a small bounded channel, so memory per upload
//! stays small (plus, for S3, the 5 MiB parts in flight).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mediaq_shared::{
    storage::{ObjectWriter, Storage, StoredObject},
    JobId,
};

use super::sniff::{self, HEAD_LEN};
use crate::error::ApiError;

pub struct Receiver {
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
}

impl Receiver {
    /// Starts receiving the input of a new job (its id fixes the key S3 writes to).
    pub async fn create(storage: &Storage, limit: u64) -> Result<Self, ApiError> {
        let id = JobId::generate();
        let key = Storage::input_key(id);
        let writer = storage.writer(&key).await?;
        Ok(Self { writer, id, key, size: 0, head: Vec::with_capacity(HEAD_LEN), checked: false, limit })
    }

    /// Copies a body stream in, cutting off a client that stays silent for `idle`.
    pub async fn receive<S, B, E>(
        &mut self,
        stream: S,
        idle: Duration,
        on_stream_error: impl Fn(E) -> ApiError,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: Into<Bytes>,
    {
        let mut stream = stream;
        loop {
            match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => return Err(ApiError::UploadTimeout(idle.as_secs())),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(on_stream_error(e)),
                Ok(Some(Ok(chunk))) => self.write(chunk.into()).await?,
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
        let written = self.writer.finish().await?;
        Ok(Received { id: self.id, key: self.key, object: written.object, size: written.size, sha256: written.sha256 })
    }
}
