//! The local-disk backend. Layout under the root:
//! - `tmp/`     objects being written (removed on any failure)
//! - `inputs/`, `outputs/`  stored objects, one file per key
//!
//! A write goes to a temp file that is fsynced, renamed into place, and whose directory is
//! fsynced, so an accepted upload survives a crash.

use std::{
    io,
    ops::Range,
    path::{Path, PathBuf},
    time::SystemTime,
};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Fetched, Listed, ObjectWriter, StorageError};

/// Bytes per chunk when streaming a local file.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    /// Opens (and creates) the storage root and its folders.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for dir in ["tmp", "inputs", "outputs", "uploads"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let root = root.canonicalize()?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The path of a stored object. Keys are produced by [`super::Storage`] only.
    pub fn path(&self, key: &str) -> PathBuf {
        debug_assert!(!key.contains(".."), "storage keys are server-generated");
        self.root.join(key)
    }

    pub fn writer(&self, key: &str, seed: sha2::Sha256) -> io::Result<ObjectWriter> {
        let temp = tempfile::Builder::new().prefix("upload-").suffix(".part").tempfile_in(self.tmp_dir())?;
        Ok(ObjectWriter::local(temp, self.path(key), seed))
    }

    /// Copies an open file, from its start, into a new file of ours under `key` (mode 0600,
    /// owned by this process), fsynced and renamed into place, the rename made durable. The
    /// source is never moved or linked: it may belong to someone less trusted (the sandbox user).
    pub fn store_file(&self, mut from: std::fs::File, key: &str) -> io::Result<()> {
        use std::io::Seek;
        let mut temp = tempfile::Builder::new().prefix("output-").suffix(".part").tempfile_in(self.tmp_dir())?;
        from.seek(io::SeekFrom::Start(0))?;
        io::copy(&mut from, temp.as_file_mut())?;
        temp.as_file().sync_all()?;
        let to = self.path(key);
        temp.persist(&to).map_err(|e| e.error)?;
        if let Some(parent) = to.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Removes a stored object; a missing one is not an error.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn head(&self, key: &str) -> io::Result<(u64, SystemTime)> {
        let meta = std::fs::metadata(self.path(key))?;
        Ok((meta.len(), meta.modified()?))
    }

    /// Streams a file (or a range of it) in chunks.
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched, StorageError> {
        let mut file = tokio::fs::File::open(self.path(key)).await?;
        let meta = file.metadata().await?;
        let range = range.unwrap_or(0..meta.len());
        file.seek(io::SeekFrom::Start(range.start)).await?;
        let body = futures_util::stream::unfold((file, range.end - range.start), |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0; READ_CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => Some((Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()), (file, 0))),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(e.into()), (file, 0))),
            }
        });
        Ok(Fetched { size: meta.len(), modified: meta.modified()?, body: body.boxed() })
    }

    /// Files directly in `folder`, as keys.
    pub fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        let entries = match std::fs::read_dir(self.root.join(folder)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            entries => entries?,
        };
        let mut listed = Vec::new();
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                listed.push(Listed { key: format!("{folder}/{name}"), modified: meta.modified()? });
            }
        }
        Ok(listed)
    }

    /// Checks that the root accepts writes (readiness probe).
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = tempfile::Builder::new().prefix(".ready-").tempfile_in(self.tmp_dir())?;
        drop(probe);
        Ok(())
    }
}

/// fsyncs a directory so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
