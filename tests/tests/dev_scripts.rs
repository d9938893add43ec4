//! The dev scripts' folder outside the checkout (`scripts/lib.sh` `outside_dir`), used when the
//! sandbox user cannot reach the checkout: it holds what root's worker runs and writes (the
//! transcoder binary, job directories), so a folder the sandbox user owns, a link, or one others
//! may write to is refused (issue #26, item 4).

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use mediaq_e2e::sha256_hex;

/// Runs `outside_dir DIR USER` as the scripts do; its status, stdout and stderr.
fn outside_dir(dir: &Path, user: &str) -> (bool, String, String) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && outside_dir "$2" "$3""#)
        .args(["outside_dir", lib.to_str().unwrap(), dir.to_str().unwrap(), user])
        .env_remove("MEDIAQ_SANDBOX_USER")
        .output()
        .expect("run bash");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_folder_outside_the_checkout_is_never_the_sandbox_users() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: outside_dir only moves folders for root");
        return;
    }
    // A checkout nobody cannot reach (a folder in /root, or mode 0700).
    let checkout = tempfile::tempdir().unwrap();
    std::fs::set_permissions(checkout.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = checkout.path().join("target");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let out = format!("/var/tmp/mediaq-{}", &sha256_hex(dir.to_str().unwrap().as_bytes())[..16]);
    let out = Path::new(&out);
    /// Removes the folder however the test ends (it lives in /var/tmp, outside any temp dir).
    struct Clean<'a>(&'a Path);
    impl Drop for Clean<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let clean = Clean(out);
    drop(Clean(out));

    // Made first by the sandbox user: refused (it could swap the binaries root runs).
    std::fs::create_dir(out).unwrap();
    std::os::unix::fs::chown(out, Some(65534), Some(65534)).unwrap();
    let (ok, printed, err) = outside_dir(&dir, "nobody");
    assert!(!ok && err.contains("belongs to nobody"), "{ok} {printed} {err}");
    // Root's but writable by others: refused.
    std::os::unix::fs::chown(out, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, _, err) = outside_dir(&dir, "nobody");
    assert!(!ok && err.contains("only its owner may write"), "{err}");
    // A link: refused.
    std::fs::remove_dir(out).unwrap();
    std::os::unix::fs::symlink(checkout.path(), out).unwrap();
    let (ok, _, err) = outside_dir(&dir, "nobody");
    assert!(!ok && err.contains("symbolic link"), "{err}");
    // Nothing there: a folder of root's, 0755, used.
    std::fs::remove_file(out).unwrap();
    let (ok, printed, err) = outside_dir(&dir, "nobody");
    assert!(ok, "{err}");
    assert_eq!(printed, out.to_str().unwrap());
    let meta = std::fs::symlink_metadata(out).unwrap();
    assert!(meta.is_dir());
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    // And again (root's own folder from an earlier run).
    assert!(outside_dir(&dir, "nobody").0);
    drop(clean);
}
