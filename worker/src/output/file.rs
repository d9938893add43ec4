//! The worker's side of the child's output: the child is untrusted, so what it leaves at the
//! output path is opened without following links (`O_NOFOLLOW`) or blocking (`O_NONBLOCK`: a
//! FIFO does not hang the worker), checked through that descriptor (a regular file with one
//! link, owned by the user the child ran as, within the size limit, shaped like a faststart MP4:
//! `ftyp` first, `moov` before `mdat`, box sizes that add up to the file), then hashed and stored
//! from the same descriptor. The path is never used again, so nothing can be swapped in between.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use mediaq_shared::FailureCode;
use sha2::{Digest, Sha256};

/// An output file that passed every check, open for reading.
#[derive(Debug)]
pub struct VerifiedOutput {
    pub file: File,
    pub size: u64,
}

/// Why an output was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Not a plain file of the child's own: a symlink, FIFO, device, socket, directory, a hard
    /// link, or a file of another owner. Only a child that got past its sandbox leaves one.
    #[error("the output is not a plain file of the converter's own ({0})")]
    NotPlain(String),
    #[error("the output is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the output is not a faststart MP4 ({0})")]
    NotMp4(String),
    #[error("the poster is not a JPEG ({0})")]
    NotJpeg(String),
    #[error("the output could not be read: {0}")]
    Unreadable(String),
}

impl Refused {
    /// The job's failure code for this refusal.
    pub fn code(&self) -> FailureCode {
        match self {
            Refused::NotPlain(_) => FailureCode::SandboxViolation,
            Refused::TooLarge { .. } => FailureCode::OutputSizeExceeded,
            Refused::NotMp4(_) | Refused::NotJpeg(_) | Refused::Unreadable(_) => FailureCode::TranscodeError,
        }
    }
}

/// Opens and checks `path`, which must be a regular file owned by `owner` with one link and at
/// most `max_bytes` long.
pub fn open(path: &Path, owner: u32, max_bytes: u64) -> Result<VerifiedOutput, Refused> {
    let mut output = open_plain(path, owner, max_bytes)?;
    check_mp4(&mut output).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Refused::NotMp4(e.to_string()),
        _ => Refused::Unreadable(e.to_string()),
    })?;
    Ok(output)
}

/// Opens and checks the poster at `path` as [`open`] does the MP4 (a plain file of `owner`
/// within `max_bytes`), shaped like a JPEG (SOI first, EOI last). `None` when there is none.
pub fn open_poster(path: &Path, owner: u32, max_bytes: u64) -> Result<Option<VerifiedOutput>, Refused> {
    // The child is gone: nothing can appear at the path after this look.
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let mut poster = open_plain(path, owner, max_bytes)?;
    check_jpeg(&mut poster).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Refused::NotJpeg(e.to_string()),
        _ => Refused::Unreadable(e.to_string()),
    })?;
    Ok(Some(poster))
}

/// A regular file of `owner` with one link, at most `max_bytes` long, opened without following
/// links or blocking.
pub(crate) fn open_plain(path: &Path, owner: u32, max_bytes: u64) -> Result<VerifiedOutput, Refused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Refused::NotPlain("a symbolic link".into()),
            _ => Refused::Unreadable(e.to_string()),
        })?;
    let meta = file.metadata().map_err(|e| Refused::Unreadable(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(Refused::NotPlain(describe(&meta)));
    }
    if meta.nlink() != 1 {
        return Err(Refused::NotPlain(format!("a file with {} links", meta.nlink())));
    }
    if meta.uid() != owner {
        return Err(Refused::NotPlain(format!("a file owned by uid {}, not {owner}", meta.uid())));
    }
    if meta.len() > max_bytes {
        return Err(Refused::TooLarge { size: meta.len(), limit: max_bytes });
    }
    Ok(VerifiedOutput { file, size: meta.len() })
}

/// A baseline JFIF/EXIF JPEG as libav's mjpeg encoder writes it: SOI and a marker first, EOI last.
fn check_jpeg(poster: &mut VerifiedOutput) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if poster.size < 8 {
        return Err(bad("shorter than a JPEG header"));
    }
    let mut head = [0u8; 3];
    poster.file.seek(SeekFrom::Start(0))?;
    poster.file.read_exact(&mut head)?;
    if head != [0xFF, 0xD8, 0xFF] {
        return Err(bad("it does not start with a JPEG SOI marker"));
    }
    let mut tail = [0u8; 2];
    poster.file.seek(SeekFrom::Start(poster.size - 2))?;
    poster.file.read_exact(&mut tail)?;
    if tail != [0xFF, 0xD9] {
        return Err(bad("it does not end with a JPEG EOI marker"));
    }
    Ok(())
}

fn describe(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    what.into()
}

/// Walks the top-level boxes: `ftyp` first, `moov` before `mdat`, sizes that end at the end.
fn check_mp4(output: &mut VerifiedOutput) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let (file, size) = (&mut output.file, output.size);
    let mut pos = 0u64;
    let mut seen: Vec<[u8; 4]> = Vec::new();
    while pos < size {
        file.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 16];
        let want = (size - pos).min(16) as usize;
        file.read_exact(&mut head[..want])?;
        if want < 8 {
            return Err(bad(format!("{} stray bytes at the end", want)));
        }
        let kind: [u8; 4] = head[4..8].try_into().expect("4 bytes");
        let len = match u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) {
            0 => size - pos,
            1 if want == 16 => u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
            1 => return Err(bad("a truncated box header".into())),
            n => u64::from(n),
        };
        if len < 8 || len > size - pos {
            return Err(bad(format!("a box of {len} bytes at offset {pos}")));
        }
        seen.push(kind);
        pos += len;
        if seen.len() > 1_000 {
            return Err(bad("too many top-level boxes".into()));
        }
    }
    let index = |name: &[u8; 4]| seen.iter().position(|k| k == name);
    if seen.first() != Some(b"ftyp") {
        return Err(bad("it does not start with an ftyp box".into()));
    }
    match (index(b"moov"), index(b"mdat")) {
        (Some(moov), Some(mdat)) if moov < mdat => Ok(()),
        (Some(_), None) => Ok(()),
        (None, _) => Err(bad("it has no moov box".into())),
        _ => Err(bad("its moov box is after its mdat box".into())),
    }
}

/// SHA-256 of the whole file, read through the checked descriptor.
pub fn sha256(output: &mut VerifiedOutput) -> io::Result<String> {
    output.file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let read = io::copy(&mut (&output.file).take(output.size), &mut hasher)?;
    if read != output.size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the output shrank while being read"));
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4() -> Vec<u8> {
        let mut data = Vec::new();
        for (kind, body) in [(b"ftyp", 12usize), (b"moov", 20), (b"mdat", 30)] {
            data.extend_from_slice(&((body + 8) as u32).to_be_bytes());
            data.extend_from_slice(kind);
            data.extend(std::iter::repeat_n(0u8, body));
        }
        data
    }

    fn me() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn a_plain_faststart_mp4_passes_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.mp4");
        std::fs::write(&path, mp4()).unwrap();
        let mut out = open(&path, me(), 1 << 20).expect("accepted");
        assert_eq!(out.size, 86);
        assert_eq!(sha256(&mut out).unwrap(), hex::encode(Sha256::digest(mp4())));
    }

    #[test]
    fn links_fifos_directories_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, mp4()).unwrap();
        let path = dir.path().join("output.mp4");

        std::os::unix::fs::symlink(&secret, &path).unwrap();
        assert_eq!(open(&path, me(), 1 << 20).unwrap_err(), Refused::NotPlain("a symbolic link".into()));
        std::fs::remove_file(&path).unwrap();

        std::fs::hard_link(&secret, &path).unwrap();
        assert!(matches!(open(&path, me(), 1 << 20), Err(Refused::NotPlain(m)) if m.contains("2 links")));
        std::fs::remove_file(&path).unwrap();

        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening does not block on a FIFO without a writer.
        assert_eq!(open(&path, me(), 1 << 20).unwrap_err(), Refused::NotPlain("a FIFO".into()));
        std::fs::remove_file(&path).unwrap();

        std::fs::create_dir(&path).unwrap();
        assert_eq!(open(&path, me(), 1 << 20).unwrap_err(), Refused::NotPlain("a directory".into()));
        std::fs::remove_dir(&path).unwrap();

        std::fs::write(&path, mp4()).unwrap();
        let other = me().wrapping_add(1);
        assert!(matches!(open(&path, other, 1 << 20), Err(Refused::NotPlain(m)) if m.contains("owned by")));
        assert_eq!(open(&path, me(), 85).unwrap_err(), Refused::TooLarge { size: 86, limit: 85 });
        assert_eq!(open(&path, me(), 85).unwrap_err().code(), FailureCode::OutputSizeExceeded);
    }

    #[test]
    fn posters_are_checked_like_outputs_and_may_be_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poster.jpg");
        assert!(open_poster(&path, me(), 1 << 20).unwrap().is_none());
        let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[0u8; 16], &[0xFF, 0xD9]].concat();
        std::fs::write(&path, &jpeg).unwrap();
        assert_eq!(open_poster(&path, me(), 1 << 20).unwrap().expect("a poster").size, 22);
        assert_eq!(open_poster(&path, me(), 21).unwrap_err(), Refused::TooLarge { size: 22, limit: 21 });
        std::fs::write(&path, &jpeg[..20]).unwrap();
        assert!(matches!(open_poster(&path, me(), 1 << 20), Err(Refused::NotJpeg(m)) if m.contains("EOI")));
        std::fs::write(&path, mp4()).unwrap();
        assert!(matches!(open_poster(&path, me(), 1 << 20), Err(Refused::NotJpeg(m)) if m.contains("SOI")));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere.jpg"), &path).unwrap();
        assert_eq!(open_poster(&path, me(), 1 << 20).unwrap_err(), Refused::NotPlain("a symbolic link".into()));
    }

    #[test]
    fn files_not_shaped_like_a_faststart_mp4_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.mp4");
        let mut late_moov = mp4();
        late_moov.rotate_left(20); // ftyp moved to the end
        let mut overlong = mp4();
        overlong[3] = 200; // ftyp claims more bytes than the file has
        let mut mdat_first = mp4();
        let moov: Vec<u8> = mdat_first.drain(20..48).collect();
        mdat_first.extend(moov);
        for (what, data) in [
            ("shell script", b"#!/bin/sh\nrm -rf /\n".to_vec()),
            ("rotated", late_moov),
            ("overlong box", overlong),
            ("moov after mdat", mdat_first),
            ("empty", Vec::new()),
        ] {
            std::fs::write(&path, &data).unwrap();
            let err = open(&path, me(), 1 << 20).expect_err(what);
            assert!(matches!(err, Refused::NotMp4(_)), "{what}: {err:?}");
            assert_eq!(err.code(), FailureCode::TranscodeError);
        }
    }
}
