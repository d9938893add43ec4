//! Streaming writes: the caller pushes chunks, a helper hashes (SHA-256) and writes them, and
//! the result becomes visible under its key only once complete.
//!
//! - local: a blocking thread writes a temp file (starting writeback every MiB so the
//!   final fsync is short) and fsyncs it; [`StoredObject::commit`] renames it into place.
//! - S3: a task feeds a multipart upload at the final key in 5 MiB parts (at most two in
//!   flight), completes it on [`ObjectWriter::finish`], and aborts it when the writer is
//!   dropped or fails, so neither an object nor parts stay behind.
//!
//! Memory per write stays bounded by bytes, not by chunks (a chunk can be anything from one
//! byte to hyper's 400 KB read buffer): at most [`IN_FLIGHT_BYTES`] wait for the writer, plus
//! (S3) the parts in flight.

use std::{fs::File, io::Write, os::fd::AsRawFd, path::PathBuf, sync::Arc};

use bytes::Bytes;
use object_store::{path::Path as ObjectPath, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use tempfile::{NamedTempFile, TempPath};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
};

use super::StorageError;

/// Bytes handed to the writer and not yet written (hashed and in the page cache, or given to
/// the multipart upload). A chunk larger than this counts as this much.
const IN_FLIGHT_BYTES: usize = 1 << 20;
/// Messages in the channel; the byte budget is the real bound.
const CHANNEL_MESSAGES: usize = 64;
/// Local: start writeback of what was written every this many bytes, so the disk writes while
/// the rest arrives and the final flush waits for about this much (a resumable upload's 5 MiB
/// PATCH waits for its flush before its `204`: at 8 MiB it waited for all of it).
const WRITEBACK_EVERY: u64 = 1 << 20;
/// S3: part size (S3's minimum for every part but the last) and parts uploading at once.
pub(super) const PART_SIZE: usize = 5 << 20;
pub(super) const PARTS_IN_FLIGHT: usize = 2;
/// How long an abort waits for parts in flight to end.
const ABORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

enum Msg {
    /// A chunk and the budget it holds (returned once it is written).
    Chunk(Bytes, u32),
    /// Everything was sent: flush, hash and complete. A channel closed without it aborts.
    Finish,
}

enum Target {
    Local { temp: TempPath, dest: PathBuf },
    S3 { store: Arc<dyn ObjectStore>, path: ObjectPath },
}

pub struct ObjectWriter {
    chunks: Option<mpsc::Sender<Msg>>,
    budget: Arc<Semaphore>,
    task: JoinHandle<Result<Sha256, StorageError>>,
    target: Option<Target>,
    size: u64,
}

/// A complete write: its size, its hash, and the object (not yet committed).
pub struct Written {
    pub size: u64,
    /// Hex SHA-256 of the bytes hashed: the seed's, then this object's.
    pub sha256: String,
    /// The hash's state after this object (a resumable upload continues it in its next segment).
    pub running: Sha256,
    pub object: StoredObject,
}

/// A complete object that is removed when dropped unless [`StoredObject::commit`]ted.
pub struct StoredObject {
    target: Option<Target>,
}

impl ObjectWriter {
    pub(super) fn local(temp: NamedTempFile, dest: PathBuf, seed: Sha256) -> Self {
        let (file, temp) = temp.into_parts();
        let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
        let budget = Arc::new(Semaphore::new(IN_FLIGHT_BYTES));
        let chunks = Chunks { rx, budget: budget.clone() };
        let task = tokio::task::spawn_blocking(move || write_file(file, chunks, seed));
        Self { chunks: Some(tx), budget, task, target: Some(Target::Local { temp, dest }), size: 0 }
    }

    pub(super) fn s3(store: Arc<dyn ObjectStore>, path: ObjectPath, seed: Sha256) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
        let budget = Arc::new(Semaphore::new(IN_FLIGHT_BYTES));
        let chunks = Chunks { rx, budget: budget.clone() };
        let task = tokio::spawn(write_multipart(store.clone(), path.clone(), chunks, seed));
        Self { chunks: Some(tx), budget, task, target: Some(Target::S3 { store, path }), size: 0 }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let len = chunk.len() as u64;
        if len == 0 {
            return Ok(());
        }
        // Wait until the writer has room; a writer that stopped closes the budget.
        let held = chunk.len().min(IN_FLIGHT_BYTES) as u32;
        let room = self.budget.acquire_many(held).await.map(|permit| permit.forget());
        if room.is_err() {
            return Err(self.writer_error().await);
        }
        let sender = self.chunks.as_ref().expect("open until finish");
        if sender.send(Msg::Chunk(chunk, held)).await.is_err() {
            // The writer stopped: its error says why (disk full, store refused...).
            return Err(self.writer_error().await);
        }
        self.size += len;
        Ok(())
    }

    async fn writer_error(&mut self) -> StorageError {
        self.chunks = None;
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => std::io::Error::other("the storage writer stopped early").into(),
            Err(e) => std::io::Error::other(e).into(),
        }
    }

    /// Flushes, fsyncs or completes the write, and returns the hash.
    pub async fn finish(mut self) -> Result<Written, StorageError> {
        let sender = self.chunks.take().expect("open until finish");
        if sender.send(Msg::Finish).await.is_err() {
            return Err(self.writer_error().await);
        }
        drop(sender);
        let running = (&mut self.task).await.map_err(std::io::Error::other)??;
        let sha256 = hex::encode(running.clone().finalize());
        Ok(Written { size: self.size, sha256, running, object: StoredObject { target: self.target.take() } })
    }
}

impl StoredObject {
    /// Local: renames the temp file into place and fsyncs the directory. S3: keeps the object.
    pub(super) fn commit(mut self) -> Result<(), StorageError> {
        match self.target.take() {
            Some(Target::Local { temp, dest }) => {
                temp.persist(&dest).map_err(|e| e.error)?;
                if let Some(parent) = dest.parent() {
                    super::sync_dir(parent)?;
                }
                Ok(())
            }
            Some(Target::S3 { .. }) | None => Ok(()),
        }
    }
}

impl Drop for StoredObject {
    fn drop(&mut self) {
        // Local: the TempPath removes the file. S3: the object is complete, delete it.
        if let Some(Target::S3 { store, path }) = self.target.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = store.delete(&path).await {
                        tracing::warn!(error = %e, %path, "could not delete an uncommitted object");
                    }
                });
            }
        }
    }
}

/// The writer's end: the messages, and the byte budget it hands back as chunks are written.
/// Dropping it (the writer ended, well or not) closes the budget, so a caller waiting for room
/// learns at once that nobody will make any.
struct Chunks {
    rx: mpsc::Receiver<Msg>,
    budget: Arc<Semaphore>,
}

impl Chunks {
    fn done(&self, held: u32) {
        self.budget.add_permits(held as usize);
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        self.budget.close();
    }
}

/// The local writer thread: hashes and writes every chunk, starts writeback as it goes, and
/// fsyncs at the end. Returns the hash's state.
fn write_file(mut file: File, mut chunks: Chunks, mut hasher: Sha256) -> Result<Sha256, StorageError> {
    let (mut written, mut flushed) = (0u64, 0u64);
    loop {
        match chunks.rx.blocking_recv() {
            Some(Msg::Chunk(chunk, held)) => {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                chunks.done(held);
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
            Some(Msg::Finish) => {
                // The data and what reading it back needs (size, extents); the rename that
                // publishes it is made durable by the directory's fsync.
                file.sync_data()?;
                return Ok(hasher);
            }
            None => return Err(std::io::Error::other("the write was abandoned").into()),
        }
    }
}

/// The S3 writer task: one multipart upload at the final key.
async fn write_multipart(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    mut chunks: Chunks,
    mut hasher: Sha256,
) -> Result<Sha256, StorageError> {
    let upload = store.put_multipart(&path).await?;
    let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    loop {
        match chunks.rx.recv().await {
            Some(Msg::Chunk(chunk, held)) => {
                hasher.update(&chunk);
                if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    abort(parts, &path).await;
                    return Err(e.into());
                }
                parts.put(chunk);
                chunks.done(held);
            }
            Some(Msg::Finish) => {
                // On failure, finish aborts the upload itself.
                parts.finish().await?;
                return Ok(hasher);
            }
            None => {
                abort(parts, &path).await;
                return Err(std::io::Error::other("the write was abandoned").into());
            }
        }
    }
}

/// Aborts a multipart upload once its parts in flight have ended (a part that lands after the
/// abort would otherwise stay in the bucket, invisible and billed).
async fn abort(mut parts: WriteMultipart, path: &ObjectPath) {
    let settled = tokio::time::timeout(ABORT_PATIENCE, parts.wait_for_capacity(0)).await;
    if let Ok(Err(e)) = settled {
        tracing::debug!(error = %e, %path, "a part failed before the abort");
    }
    if let Err(e) = parts.abort().await {
        tracing::warn!(error = %e, %path, "could not abort a multipart upload");
    }
}
