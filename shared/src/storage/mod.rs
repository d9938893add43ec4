//! Where media lives: local disk (the default) or an S3-compatible object store, behind one
//! small interface. Every key is server-generated; client filenames never reach a key or a path.
//!
//! Keys: `inputs/{job_id}.webm` (accepted uploads) and `outputs/{job_id}-a{attempt}.mp4`
//! (converted files, one per attempt). Job directories of the worker are always local
//! (MEDIAQ_WORK_DIR); so are the local backend's temp files (`tmp/` under its root).
//!
//! - [`local`]: files under MEDIAQ_STORAGE_DIR; writes go to `tmp/`, are fsynced and renamed
//!   into place, and the rename is made durable (object_store's `LocalFileSystem` does not fsync,
//!   so this backend is our own).
//! - [`s3`]: `object_store`'s S3 client; uploads are multipart uploads at the final key (S3
//!   completes them atomically), aborted on any refusal.

pub mod local;
pub mod s3;
mod writer;

use std::{
    io,
    ops::Range,
    path::{Path, PathBuf},
    time::SystemTime,
};

use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use local::sync_dir;
pub use writer::{ObjectWriter, StoredObject, Written};

use crate::{config::CommonConfig, config::StoreConfig, JobId};

/// A storage failure. Local I/O errors keep their kind (a full disk is told apart); store
/// errors are the remote store's.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("the object store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Io(e) => e.kind() == io::ErrorKind::NotFound,
            Self::Store(e) => matches!(e, object_store::Error::NotFound { .. }),
            _ => false,
        }
    }

    /// A short, secret-free explanation for operators (readiness, logs).
    pub fn reason(&self) -> String {
        match self {
            Self::Store(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {
                "the object store refused the request (HTTP 401/403): check AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY and the bucket's permissions"
                    .into()
            }
            Self::Store(object_store::Error::NotFound { .. }) => {
                "the object store answered 404: does the bucket of MEDIAQ_STORAGE_URL exist?".into()
            }
            Self::Store(e) => {
                let mut text = format!("the object store failed: {e}");
                text.truncate(400);
                text
            }
            Self::Timeout(t) => format!("the object store did not answer within {}s", t.as_secs()),
            Self::Io(e) => format!("local storage failed: {e}"),
            Self::Config(e) => e.clone(),
        }
    }
}

/// A stored object as listed: its key and when it was written.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub modified: SystemTime,
}

/// What a read returns: the object's size and modification time, and the requested bytes.
pub struct Fetched {
    pub size: u64,
    pub modified: SystemTime,
    pub body: BoxStream<'static, Result<Bytes, StorageError>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(local::Local),
    S3(s3::S3),
}

#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
    work_dir: PathBuf,
}

impl Storage {
    /// Opens the configured store (creating local folders). Never contacts a remote store, so a
    /// process starts even while the store is unreachable or refuses its credentials.
    pub fn open(config: &CommonConfig) -> Result<Self, StorageError> {
        let backend = match &config.store() {
            StoreConfig::Local => Backend::Local(local::Local::open(&config.storage_dir)?),
            StoreConfig::S3(s3) => Backend::S3(s3::S3::open(s3)?),
        };
        let work_dir = config.work_dir();
        std::fs::create_dir_all(&work_dir)?;
        Ok(Self { backend, work_dir: work_dir.canonicalize()? })
    }

    /// For logs: the local root or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(l) => l.root().display().to_string(),
            Backend::S3(s) => s.describe(),
        }
    }

    /// Local job directories of the worker.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The local backend's temp folder (uploads being received); `None` for S3.
    pub fn tmp_dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(l) => Some(l.tmp_dir()),
            Backend::S3(_) => None,
        }
    }

    /// The file holding `key` on local disk; `None` for S3 (fetch it with [`Self::fetch_to`]).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(l) => Some(l.path(key)),
            Backend::S3(_) => None,
        }
    }

    pub fn input_key(id: JobId) -> String {
        format!("inputs/{id}.webm")
    }

    /// A new object for the bytes of a resumable upload from offset `start` (one per PATCH;
    /// unique, so that two PATCHes racing for one offset never write the same object: the
    /// database records the one that won). The segments are the job's input.
    pub fn segment_key(id: JobId, start: u64) -> String {
        format!("{}{start:020}.{}", Self::segment_prefix(id), uuid::Uuid::new_v4().simple())
    }

    /// The prefix of every segment key of a job's upload; also the job's `input_key` (a key
    /// ending in `.` names the upload's segments, not one object).
    pub fn segment_prefix(id: JobId) -> String {
        format!("uploads/{id}.")
    }

    /// Whether an input key names a resumable upload's segments.
    pub fn is_segmented(input_key: &str) -> bool {
        input_key.starts_with("uploads/") && input_key.ends_with('.')
    }

    /// Removes a job's input: one object, or every segment of a resumable upload.
    pub async fn delete_input(&self, input_key: &str) -> Result<(), StorageError> {
        if Self::is_segmented(input_key) {
            self.delete_prefix(input_key).await.map(|_| ())
        } else {
            self.delete(input_key).await
        }
    }

    /// Each attempt writes its own output key, so a late attempt never overwrites another's.
    pub fn output_key(id: JobId, attempt: i32) -> String {
        format!("outputs/{id}-a{attempt}.mp4")
    }

    /// The attempt's poster, beside its output (under the same prefix, so deleted with it).
    pub fn poster_key(id: JobId, attempt: i32) -> String {
        format!("outputs/{id}-a{attempt}.jpg")
    }

    /// A file of the attempt's stream (`init.mp4`, `seg-{n}.m4s`), beside its output (under the
    /// same prefix, so deleted with it).
    pub fn stream_key(id: JobId, attempt: i32, file: &str) -> String {
        format!("outputs/{id}-a{attempt}.{file}")
    }

    /// The prefix of every output key of a job (one per attempt: `outputs/{id}-a{n}.mp4`).
    pub fn output_prefix(id: JobId) -> String {
        format!("outputs/{id}-a")
    }

    /// Starts a streaming write of `key`, hashed (SHA-256) as it goes. Nothing is visible under
    /// `key` before [`ObjectWriter::finish`] (S3) or [`Self::commit`] (local); dropping the
    /// writer or its result leaves nothing behind.
    pub async fn writer(&self, key: &str) -> Result<ObjectWriter, StorageError> {
        self.writer_continuing(key, sha2::Sha256::default()).await
    }

    /// A writer like [`Self::writer`] whose hash continues `seed` (the hash of the bytes before
    /// this object: a resumable upload's earlier segments).
    pub async fn writer_continuing(&self, key: &str, seed: sha2::Sha256) -> Result<ObjectWriter, StorageError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.writer(key, seed)?),
            Backend::S3(s) => Ok(s.writer(key, seed)),
        }
    }

    /// Makes a finished write durable under its key (local: rename + directory fsync; S3: it
    /// already is, and the object is no longer deleted on drop).
    pub async fn commit(&self, object: StoredObject) -> Result<(), StorageError> {
        object.commit()
    }

    /// Stores an open local file, from its start, under `key` (the worker's output, read from
    /// the descriptor the worker checked, never by path again). The local backend copies it into
    /// a file of its own (0600, fsync + rename, on the blocking pool); S3 uploads it in parts.
    pub async fn put_file(&self, from: std::fs::File, key: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(l) => {
                let (local, key) = (l.clone(), key.to_owned());
                tokio::task::spawn_blocking(move || local.store_file(from, &key)).await.map_err(io::Error::other)??;
                Ok(())
            }
            Backend::S3(s) => s.put_file(from, key).await,
        }
    }

    /// Copies the object `key` into the new local file `dest` (the worker's input, in a job
    /// directory another user may write to): `dest` is created with `O_CREAT | O_EXCL |
    /// O_NOFOLLOW`, mode 0600, so anything planted at its name (a link to `/etc/passwd`) fails
    /// the fetch instead of being written through.
    pub async fn fetch_to(&self, key: &str, dest: &Path) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(l) => {
                let mut source = std::fs::File::open(l.path(key))?;
                io::copy(&mut source, &mut create_new_file(dest)?)?;
                Ok(())
            }
            Backend::S3(s) => s.fetch_to(key, dest).await,
        }
    }

    /// Reads `key`, or the byte range `range` of it (already checked against its size).
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched, StorageError> {
        match &self.backend {
            Backend::Local(l) => l.get(key, range).await,
            Backend::S3(s) => s.get(key, range).await,
        }
    }

    /// A URL that reads `key` without credentials for `expires_in`: S3 only (`None` on local disk).
    pub async fn presigned_get(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::S3(s) => s.presign_get(key, expires_in).await.map(Some),
        }
    }

    /// Size and modification time of `key`.
    pub async fn head(&self, key: &str) -> Result<(u64, SystemTime), StorageError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.head(key)?),
            Backend::S3(s) => s.head(key).await,
        }
    }

    /// Removes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.remove(key)?),
            Backend::S3(s) => s.delete(key).await,
        }
    }

    /// Removes every object whose key starts with `prefix` (e.g. all outputs of a job).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        let (folder, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let keys: Vec<String> = match &self.backend {
            Backend::Local(l) => l.list(folder)?.into_iter().map(|o| o.key).filter(|k| k.starts_with(prefix)).collect(),
            Backend::S3(s) => s.list_starting_with(prefix).await?,
        };
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Every object in `folder` (`inputs` or `outputs`).
    pub async fn list(&self, folder: &str) -> Result<Vec<Listed>, StorageError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.list(folder)?),
            Backend::S3(s) => s.list(folder).await,
        }
    }

    /// Readiness: the store accepts writes (local: a temp file; S3: a probe object written and
    /// deleted under the prefix, with a short timeout).
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.check_writable()?),
            Backend::S3(s) => s.check_ready().await,
        }
    }
}

#[cfg(test)]
mod tests;

/// Creates the new file `path` for writing, mode 0600, never through a link or over an existing
/// name (`O_CREAT | O_EXCL | O_NOFOLLOW`: `AlreadyExists` instead).
pub(crate) fn create_new_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
