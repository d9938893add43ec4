//! Streams an upload into a temp file under the storage root while enforcing the size limit,
//! hashing (SHA-256) and checking the leading bytes. The temp file is removed when the
//! [`Receiver`] is dropped without being stored, so any failure (or a client that disconnects,
//! which drops the request future) leaves nothing behind.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::sniff::{self, HEAD_LEN};
use crate::error::ApiError;

const WRITE_BUFFER: usize = 1 << 20;

pub struct Receiver {
    file: BufWriter<tokio::fs::File>,
    path: TempPath,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    checked: bool,
    limit: u64,
}

/// A complete, fsynced upload that passed the content check.
pub struct Received {
    pub path: TempPath,
    pub size: u64,
    pub sha256: String,
}

impl Receiver {
    pub fn create(tmp_dir: &std::path::Path, limit: u64) -> Result<Self, ApiError> {
        let temp = tempfile::Builder::new().prefix("upload-").suffix(".part").tempfile_in(tmp_dir)?;
        let (file, path) = temp.into_parts();
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file)),
            path,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::with_capacity(HEAD_LEN),
            checked: false,
            limit,
        })
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
        B: AsRef<[u8]>,
    {
        let mut stream = stream;
        loop {
            match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => return Err(ApiError::UploadTimeout(idle.as_secs())),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(on_stream_error(e)),
                Ok(Some(Ok(chunk))) => self.write(chunk.as_ref()).await?,
            }
        }
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
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
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Finishes the upload: checks short files, flushes and fsyncs.
    pub async fn finish(mut self) -> Result<Received, ApiError> {
        if self.size == 0 {
            return Err(ApiError::EmptyUpload);
        }
        if !self.checked {
            sniff::check_content(&self.head, true)?;
        }
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        Ok(Received { path: self.path, size: self.size, sha256: hex::encode(self.hasher.finalize()) })
    }
}
