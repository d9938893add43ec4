//! The local backend through the Storage interface (S3 is covered end to end in tests/tests/s3.rs).

use super::*;
use crate::config::Redacted;
use sha2::{Digest, Sha256};

fn local(root: &Path) -> Storage {
    let config = CommonConfig {
        database_url: Redacted("postgres://unused".into()),
        storage_dir: root.to_owned(),
        storage_url: None,
        s3_endpoint: None,
        s3_region: "us-east-1".into(),
        s3_allow_http: false,
        work_dir_setting: Some(root.join("work")),
        db_max_connections: 1,
        db_timeout: std::time::Duration::from_secs(1),
        metrics_token: None,
    };
    Storage::open(&config).unwrap()
}

fn tmp_files(storage: &Storage) -> usize {
    std::fs::read_dir(storage.tmp_dir().unwrap()).unwrap().count()
}

#[tokio::test]
async fn local_writes_are_hashed_and_appear_only_once_committed() {
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let mut writer = storage.writer("inputs/a.webm").await.unwrap();
    writer.write(Bytes::from_static(b"hello ")).await.unwrap();
    writer.write(Bytes::from_static(b"world")).await.unwrap();
    let written = writer.finish().await.unwrap();
    assert_eq!(written.size, 11);
    assert_eq!(written.sha256, hex::encode(Sha256::digest(b"hello world")));
    let path = storage.local_path("inputs/a.webm").unwrap();
    assert!(!path.exists(), "not visible before the commit");
    storage.commit(written.object).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    assert_eq!(tmp_files(&storage), 0);
    assert_eq!(storage.head("inputs/a.webm").await.unwrap().0, 11);
}

#[tokio::test]
async fn chunks_larger_than_the_writers_budget_and_floods_of_tiny_ones_are_written_whole() {
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let mut writer = storage.writer("inputs/a.webm").await.unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut expected = Sha256::new();
    for _ in 0..3 {
        writer.write(Bytes::from(big.clone())).await.unwrap();
        expected.update(&big);
    }
    for i in 0..5_000u32 {
        writer.write(Bytes::from(vec![i as u8])).await.unwrap();
        expected.update([i as u8]);
    }
    writer.write(Bytes::new()).await.unwrap();
    let written = writer.finish().await.unwrap();
    assert_eq!(written.size, 9_005_000);
    assert_eq!(written.sha256, hex::encode(expected.finalize()));
    storage.commit(written.object).await.unwrap();
    let stored = std::fs::read(storage.local_path("inputs/a.webm").unwrap()).unwrap();
    assert_eq!(stored.len(), 9_005_000);
    assert_eq!(&stored[..big.len()], &big[..]);
}

#[tokio::test]
async fn abandoned_local_writes_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let mut writer = storage.writer("inputs/a.webm").await.unwrap();
    writer.write(Bytes::from_static(b"partial")).await.unwrap();
    drop(writer);
    let mut writer = storage.writer("inputs/b.webm").await.unwrap();
    writer.write(Bytes::from_static(b"complete")).await.unwrap();
    drop(writer.finish().await.unwrap());
    assert_eq!(tmp_files(&storage), 0);
    assert!(storage.list("inputs").await.unwrap().is_empty());
}

#[tokio::test]
async fn prefixes_delete_every_attempts_output_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let (a, b) = (JobId::generate(), JobId::generate());
    for key in [Storage::output_key(a, 1), Storage::output_key(a, 2), Storage::output_key(b, 1)] {
        std::fs::write(storage.local_path(&key).unwrap(), b"x").unwrap();
    }
    assert_eq!(storage.delete_prefix(&Storage::output_prefix(a)).await.unwrap(), 2);
    let left: Vec<String> = storage.list("outputs").await.unwrap().into_iter().map(|l| l.key).collect();
    assert_eq!(left, [Storage::output_key(b, 1)]);
    storage.delete(&Storage::output_key(b, 1)).await.unwrap();
    storage.delete(&Storage::output_key(b, 1)).await.unwrap();
}

#[tokio::test]
async fn ranges_of_local_objects_stream_the_exact_bytes() {
    use futures_util::TryStreamExt;
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let data: Vec<u8> = (0..700_000u32).map(|i| i as u8).collect();
    std::fs::write(storage.local_path("outputs/x.mp4").unwrap(), &data).unwrap();
    let fetched = storage.get("outputs/x.mp4", Some(100..600_100)).await.unwrap();
    assert_eq!(fetched.size, data.len() as u64);
    let chunks: Vec<Bytes> = fetched.body.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), &data[100..600_100]);
}

/// The worker's fetch writes only a new file of its own: a link planted at the destination (in a
/// job directory the sandbox user owns) fails the fetch and the link's target is untouched
/// (issue #26, item 4).
#[tokio::test]
async fn fetching_never_writes_through_a_planted_link() {
    let root = tempfile::tempdir().unwrap();
    let storage = local(root.path());
    let mut writer = storage.writer("inputs/b.webm").await.unwrap();
    writer.write(Bytes::from_static(b"input bytes")).await.unwrap();
    storage.commit(writer.finish().await.unwrap().object).await.unwrap();
    let victim = root.path().join("passwd");
    std::fs::write(&victim, b"root:x:0:0\n").unwrap();
    let job = tempfile::tempdir().unwrap();
    let dest = job.path().join("input.webm");
    std::os::unix::fs::symlink(&victim, &dest).unwrap();
    let err = storage.fetch_to("inputs/b.webm", &dest).await.unwrap_err();
    assert!(matches!(&err, StorageError::Io(e) if e.kind() == io::ErrorKind::AlreadyExists), "{err:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root:x:0:0\n");
    // With nothing at the name, the fetch writes a 0600 file of its own.
    std::fs::remove_file(&dest).unwrap();
    storage.fetch_to("inputs/b.webm", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"input bytes");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dest).unwrap().permissions()) & 0o777,
        0o600
    );
}
