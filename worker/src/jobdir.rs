//! An attempt's private directory, removed when dropped. When the worker is root it belongs to
//! the sandbox user, who gets a private read-only copy of the input (the stored input stays the
//! worker's and unreadable to that user).

use std::path::{Path, PathBuf};

pub struct JobDir {
    dir: tempfile::TempDir,
    owner: Option<(u32, u32)>,
}

impl JobDir {
    /// Creates `<work_dir>/<prefix>XXXXXX`, owned by `owner` when given (the worker must be root).
    pub fn create(work_dir: &Path, prefix: &str, owner: Option<(u32, u32)>) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(work_dir)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        Ok(Self { dir, owner })
    }

    /// Removes leftover directories starting with `prefix` (those of a job's earlier attempts,
    /// whose worker died with them). Returns how many were removed.
    pub fn remove_stale(work_dir: &Path, prefix: &str) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(work_dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(prefix) && entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where an input fetched from a remote store is written.
    pub fn fetched_input_path(&self) -> PathBuf {
        self.dir.path().join("input.webm")
    }

    /// Makes a fetched input readable (only) by the sandbox user, when there is one.
    pub fn hand_over(&self, fetched: &Path) -> std::io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(fetched, Some(uid), Some(gid))?;
            std::fs::set_permissions(fetched, std::os::unix::fs::PermissionsExt::from_mode(0o400))?;
        }
        Ok(())
    }

    /// The path the child reads the input from: the stored file itself, or a private copy
    /// owned by the sandbox user.
    pub fn input(&self, stored: &Path) -> std::io::Result<PathBuf> {
        let Some((uid, gid)) = self.owner else {
            return Ok(stored.to_owned());
        };
        let copy = self.dir.path().join("input.webm");
        std::fs::copy(stored, &copy)?;
        std::os::unix::fs::chown(&copy, Some(uid), Some(gid))?;
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o400))?;
        Ok(copy)
    }
}
