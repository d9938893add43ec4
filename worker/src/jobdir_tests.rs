//! The input hand-over against a hostile sandbox user (issue #26, item 4): whatever that user
//! plants or swaps in at the input's name, the worker writes, chowns and chmods only its own file.
//! The owner is the test's own uid (a chown to oneself needs no privilege), so they run as anyone.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::*;

fn me() -> (u32, u32) {
    // SAFETY: no preconditions.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// A file the sandbox user would love to overwrite or take (`/etc/passwd`), mode 0644.
fn victim(dir: &Path) -> PathBuf {
    let path = dir.join("passwd");
    std::fs::write(&path, b"root:x:0:0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn assert_untouched(victim: &Path) {
    assert_eq!(std::fs::read(victim).unwrap(), b"root:x:0:0\n", "the victim was written through");
    let meta = std::fs::metadata(victim).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644, "the victim's mode was changed");
}

struct Setup {
    _work: tempfile::TempDir,
    _outside: tempfile::TempDir,
    job: JobDir,
    victim: PathBuf,
    stored: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = victim(outside.path());
    let stored = outside.path().join("stored.webm");
    std::fs::write(&stored, b"\x1a\x45\xdf\xa3 webm").unwrap();
    let job = JobDir::create(work.path(), "job-a1-", Some(me())).unwrap();
    Setup { _work: work, _outside: outside, job, victim, stored }
}

#[test]
fn the_input_is_the_sandbox_users_and_read_only() {
    let s = setup();
    let input = s.job.input(&s.stored).unwrap();
    assert_eq!(input, s.job.path().join(INPUT_FILE));
    assert_eq!(std::fs::read(&input).unwrap(), std::fs::read(&s.stored).unwrap());
    let meta = std::fs::symlink_metadata(&input).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (me().0, me().1, 0o400));

    // A fetched input, written through the descriptor create_input gives.
    let s = setup();
    let mut file = s.job.create_input().unwrap();
    io::Write::write_all(&mut file, b"fetched").unwrap();
    s.job.hand_over_file(&file).unwrap();
    let meta = std::fs::symlink_metadata(s.job.fetched_input_path()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o400);
}

#[test]
fn a_planted_link_is_never_written_through() {
    let s = setup();
    std::os::unix::fs::symlink(&s.victim, s.job.path().join(INPUT_FILE)).unwrap();
    let err = s.job.input(&s.stored).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(s.job.create_input().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    let err = create_exclusive(&s.job.fetched_input_path()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_untouched(&s.victim);
}

#[test]
fn a_planted_link_or_foreign_file_is_never_handed_over() {
    let s = setup();
    let at = s.job.fetched_input_path();
    // A symbolic link to the victim (old code: chown + chmod 0400 of /etc/passwd).
    std::os::unix::fs::symlink(&s.victim, &at).unwrap();
    let err = s.job.hand_over(&at).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    assert_untouched(&s.victim);
    // A hard link to it (where the kernel's protected_hardlinks does not already refuse it).
    std::fs::remove_file(&at).unwrap();
    std::fs::hard_link(&s.victim, &at).unwrap();
    let err = s.job.hand_over(&at).unwrap_err();
    assert!(err.to_string().contains("2 links"), "{err}");
    assert_untouched(&s.victim);
    // A directory, and a path outside the job directory.
    std::fs::remove_file(&at).unwrap();
    std::fs::create_dir(&at).unwrap();
    assert!(s.job.hand_over(&at).is_err());
    assert!(s.job.hand_over(&s.victim).is_err());
    assert_untouched(&s.victim);
}

/// A sandbox-user process swapping a link to the victim, a plain file and nothing at the
/// input's name as fast as it can, while the worker creates and hands over its input: the
/// victim is never written, chowned or chmodded (the old path-based calls lost this race).
#[test]
fn a_racing_link_swap_never_reaches_the_victim() {
    let s = setup();
    let at = s.job.fetched_input_path();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (dir, victim, at, stop) = (s.job.path().to_owned(), s.victim.clone(), at.clone(), stop.clone());
        std::thread::spawn(move || {
            let (link, plain) = (dir.join("swap.link"), dir.join("swap.file"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) && swaps < 1_000_000 {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&victim, &link).unwrap();
                let _ = std::fs::rename(&link, &at);
                let _ = std::fs::remove_file(&at);
                std::fs::write(&plain, b"plain").unwrap();
                let _ = std::fs::rename(&plain, &at);
                swaps += 1;
            }
            swaps
        })
    };
    let (mut created, mut handed) = (0, 0);
    for _ in 0..3000 {
        if let Ok(mut file) = create_exclusive(&at) {
            // Whatever the racer does to the name now, this descriptor is the worker's new file.
            let meta = file.metadata().unwrap();
            assert!(meta.file_type().is_file() && meta.nlink() <= 1);
            io::Write::write_all(&mut file, b"input").unwrap();
            s.job.hand_over_file(&file).unwrap();
            created += 1;
        }
        if s.job.hand_over(&at).is_ok() {
            handed += 1;
        }
        assert_untouched(&s.victim);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert_untouched(&s.victim);
    assert!(swaps > 100, "the racer ran ({swaps} swaps; {created} created, {handed} handed over)");
}
