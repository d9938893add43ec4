//! Streams an upload into a temp file under the storage root while enforcing the size limit,
//! hashing (SHA-256) and checking the leading bytes. The temp file is removed when the
//! [`Receiver`] is dropped without being stored, so any failure (or a client that disconnects,
//! which drops the request future) leaves nothing behind.
//!
//! The request task only counts bytes and checks the first 4 KiB; hashing and writing happen
//! on a blocking thread fed whole chunks (no copy) through a small bounded channel, so that
//! receiving, hashing and writing overlap, and memory per upload stays well under 1 MiB.
//! Written data is pushed to disk every few MiB, so the final fsync is short.

use std::{fs::File, io::Write, os::fd::AsRawFd, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::sync::mpsc;

use super::sniff::{self, HEAD_LEN};
use crate::error::ApiError;

/// Chunks in flight between the request task and the writer thread.
const CHANNEL_CHUNKS: usize = 8;
/// Start writeback of what was written every this many bytes.
const WRITEBACK_EVERY: u64 = 8 << 20;

pub struct Receiver {
    chunks: Option<mpsc::Sender<Bytes>>,
    writer: tokio::task::JoinHandle<std::io::Result<String>>,
    path: TempPath,
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
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || write_all(file, rx));
        Ok(Self { chunks: Some(tx), writer, path, size: 0, head: Vec::with_capacity(HEAD_LEN), checked: false, limit })
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
        let sender = self.chunks.as_ref().expect("open until finish");
        if sender.send(chunk).await.is_err() {
            // The writer stopped: its error says why (disk full, I/O error).
            return Err(self.writer_error().await);
        }
        Ok(())
    }

    async fn writer_error(&mut self) -> ApiError {
        self.chunks = None;
        match (&mut self.writer).await {
            Ok(Err(e)) => e.into(),
            Ok(Ok(_)) => ApiError::internal("the upload writer stopped early"),
            Err(e) => ApiError::internal(e),
        }
    }

    /// Finishes the upload: checks short files, lets the writer flush, hash and fsync.
    pub async fn finish(mut self) -> Result<Received, ApiError> {
        if self.size == 0 {
            return Err(ApiError::EmptyUpload);
        }
        if !self.checked {
            sniff::check_content(&self.head, true)?;
        }
        self.chunks = None;
        let sha256 = (&mut self.writer).await.map_err(ApiError::internal)??;
        Ok(Received { path: self.path, size: self.size, sha256 })
    }
}

/// The writer thread: hashes and writes every chunk, starts writeback as it goes, and fsyncs
/// once the sender is closed. Returns the hex SHA-256.
fn write_all(file: File, mut chunks: mpsc::Receiver<Bytes>) -> std::io::Result<String> {
    let mut file = file;
    let mut hasher = Sha256::new();
    let (mut written, mut flushed) = (0u64, 0u64);
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if written - flushed >= WRITEBACK_EVERY {
            // SAFETY: sync_file_range on our own open file; it only starts writeback.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    flushed as i64,
                    (written - flushed) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            flushed = written;
        }
    }
    file.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}
