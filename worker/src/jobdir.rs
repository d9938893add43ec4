//! An attempt's private directory, removed when dropped. When the worker is root it belongs to
//! the sandbox user, who gets a private read-only copy of the input (the stored input stays the
//! worker's and unreadable to that user).
//!
//! The directory is the sandbox user's, so anything in it may be swapped for a link (to
//! `/etc/passwd`) by a process of that user at any moment. The worker (root) therefore never
//! writes, changes owner or mode of, or follows a name in it by path: files are created relative
//! to the directory's descriptor with `O_CREAT | O_EXCL | O_NOFOLLOW` (nothing planted at the name
//! is ever opened), and owner and mode change through the file's descriptor (issue #26, item 4).
//! The directory's own name is safe: it lives in the work directory, which is the worker's.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
};

/// The name of the child's input in the directory (a private copy, or a fetched input).
pub const INPUT_FILE: &str = "input.webm";

pub struct JobDir {
    dir: tempfile::TempDir,
    /// The directory, opened without following a link; every name in it is resolved from here.
    fd: OwnedFd,
    owner: Option<(u32, u32)>,
}

impl JobDir {
    /// Creates `<work_dir>/<prefix>XXXXXX`, owned by `owner` when given (the worker must be root).
    pub fn create(work_dir: &Path, prefix: &str, owner: Option<(u32, u32)>) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(work_dir)?;
        let fd = open_at(None, dir.path(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
        if let Some((uid, gid)) = owner {
            fchown(&fd, uid, gid)?;
        }
        Ok(Self { dir, fd, owner })
    }

    /// Removes leftover directories starting with `prefix` (those of a job's earlier attempts,
    /// whose worker died with them). Returns how many were removed. A link is never followed
    /// (std's `remove_dir_all` does not follow links inside the tree either).
    pub fn remove_stale(work_dir: &Path, prefix: &str) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(work_dir)?.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if entry.file_name().to_string_lossy().starts_with(prefix) && is_dir {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where an input fetched from a remote store is written (create it with [`Self::create_input`]
    /// or [`create_exclusive`], never by path).
    pub fn fetched_input_path(&self) -> PathBuf {
        self.dir.path().join(INPUT_FILE)
    }

    /// Creates the (empty) input file, the worker's own with mode 0600, relative to the
    /// directory's descriptor with `O_CREAT | O_EXCL | O_NOFOLLOW`: anything already at the name (a
    /// planted link, a file) makes it fail with `AlreadyExists` instead of being opened. Write
    /// the input through the returned file, then give it to the sandbox user with
    /// [`Self::hand_over_file`].
    pub fn create_input(&self) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        Ok(File::from(open_at(Some(&self.fd), Path::new(INPUT_FILE), flags, 0o600)?))
    }

    /// Makes a written input readable (only) by the sandbox user, when there is one: owner and
    /// mode change through the file's descriptor, so whatever is at its name now is not touched.
    pub fn hand_over_file(&self, file: &File) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            fchown(file, uid, gid)?;
            // SAFETY: fchmod on a descriptor we own.
            if unsafe { libc::fchmod(file.as_raw_fd(), 0o400) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// [`Self::hand_over_file`] for an input written by path (`fetched`, a name in this directory):
    /// it is opened relative to the directory without following a link, and must be a regular
    /// file with one link that the worker owns (what it wrote), or nothing is changed.
    pub fn hand_over(&self, fetched: &Path) -> io::Result<()> {
        if self.owner.is_none() {
            return Ok(());
        }
        let name = match (fetched.parent(), fetched.file_name()) {
            (Some(parent), Some(name)) if parent == self.dir.path() => Path::new(name),
            _ => return Err(refused(format!("{} is not in the job directory", fetched.display()))),
        };
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = File::from(open_at(Some(&self.fd), name, flags, 0)?);
        let meta = file.metadata()?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.file_type().is_file() || meta.nlink() != 1 || meta.uid() != me {
            return Err(refused(format!(
                "the input is not the worker's plain file (mode {:o}, {} links, uid {})",
                meta.mode(),
                meta.nlink(),
                meta.uid()
            )));
        }
        self.hand_over_file(&file)
    }

    /// The path the child reads the input from: the stored file itself, or a private copy
    /// owned by the sandbox user (created exclusively, see [`Self::create_input`]).
    pub fn input(&self, stored: &Path) -> io::Result<PathBuf> {
        if self.owner.is_none() {
            return Ok(stored.to_owned());
        }
        let mut source = File::open(stored)?;
        let mut copy = self.create_input()?;
        io::copy(&mut source, &mut copy)?;
        self.hand_over_file(&copy)?;
        Ok(self.dir.path().join(INPUT_FILE))
    }
}

/// Creates the new file `path` (mode 0600, for writing) with `O_CREAT | O_EXCL | O_NOFOLLOW`
/// relative to its parent directory, itself opened without following a link at its last
/// component: a link or file planted at `path` fails the call (`AlreadyExists`) instead of being
/// written through. For a file in a job directory whose parents are the worker's
/// (`feed::assemble`'s input).
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(refused(format!("{} names no file", path.display())));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let dir = open_at(None, parent, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    Ok(File::from(open_at(Some(&dir), Path::new(name), flags, 0o600)?))
}

/// `openat(dir or AT_FDCWD, path, flags | O_CLOEXEC, mode)`.
fn open_at(dir: Option<&OwnedFd>, path: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| refused("a path with a NUL byte".into()))?;
    let dirfd = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a valid C string and descriptor; the returned descriptor is owned from here on.
    let fd = unsafe { libc::openat(dirfd, c_path.as_ptr(), flags | libc::O_CLOEXEC, libc::c_uint::from(mode)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fchown(fd: &impl AsRawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn refused(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

#[cfg(test)]
#[path = "jobdir_tests.rs"]
mod tests;
