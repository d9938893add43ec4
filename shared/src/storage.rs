//! Local-disk storage. Every name in it is server-generated; client filenames never reach a path.
//!
//! Layout under the root:
//! - `tmp/`     uploads being received (removed on any failure)
//! - `inputs/`  accepted uploads, `{job_id}.webm`
//! - `outputs/` converted files, `{job_id}.mp4`
//! - `work/`    per-attempt job directories of the worker

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::JobId;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Opens (and creates) the storage root and its folders.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for dir in ["tmp", "inputs", "outputs", "work"] {
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

    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn input_key(id: JobId) -> String {
        format!("inputs/{id}.webm")
    }

    /// Each attempt writes its own output key, so a late attempt never overwrites another's.
    pub fn output_key(id: JobId, attempt: i32) -> String {
        format!("outputs/{id}-a{attempt}.mp4")
    }

    /// The prefix of every output key of a job (one per attempt: `outputs/{id}-a{n}.mp4`).
    pub fn output_prefix(id: JobId) -> String {
        format!("outputs/{id}-a")
    }

    /// Removes the object `key`, or every object in its folder whose name starts with the
    /// key's last segment when no object has exactly that key.
    pub fn remove_matching(&self, key: &str) -> io::Result<()> {
        let path = self.path(key);
        if path.is_file() {
            return self.remove(key);
        }
        let (Some(dir), Some(prefix)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Ok(());
        };
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The path of a stored object. Keys are produced by this module only.
    pub fn path(&self, key: &str) -> PathBuf {
        debug_assert!(!key.contains(".."), "storage keys are server-generated");
        self.root.join(key)
    }

    /// Moves a complete, fsynced file into place under `key` and makes the rename durable.
    pub fn commit_file(&self, from: &Path, key: &str) -> io::Result<PathBuf> {
        let to = self.path(key);
        std::fs::rename(from, &to)?;
        if let Some(parent) = to.parent() {
            sync_dir(parent)?;
        }
        Ok(to)
    }

    /// Removes a stored object; a missing one is not an error.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
