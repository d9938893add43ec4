//! A full disk: an upload that does not fit gets 507 and leaves nothing; a transcode that does
//! not fit fails as transient (`storage_error`) and is retried once there is room. Uses a
//! small tmpfs as the storage root (needs root to mount; CI runs as root).

use std::{path::Path, process::Command, time::Duration};

use mediaq_e2e::{files_under, fixtures, TestEnv};
use serde_json::Value;

struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the struct for an existing path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

#[tokio::test]
async fn a_full_disk_gives_507_on_upload_and_a_retry_on_transcode() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let env = TestEnv::new().await;
    let Some(_tmpfs) = Tmpfs::mount(env.storage_dir(), "4m") else {
        panic!("could not mount a tmpfs on {}", env.storage_dir().display());
    };
    let api = env.api().await;
    let storage = env.storage_dir();

    // An upload larger than the free space.
    let mut big = fixtures::bytes(&fixtures::VP8_VORBIS);
    big.resize(6 << 20, 0);
    let resp = api.upload(big, "video/webm", None).await;
    assert_eq!(resp.status(), 507);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage");
    assert!(files_under(storage).is_empty(), "no partial files: {:?}", files_under(storage));
    // The API keeps serving.
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // Leave too little room for the conversion, then start a worker.
    let filler = storage.join("filler");
    let room = 40 << 10;
    std::fs::write(&filler, vec![0u8; (free_bytes(storage) - room) as usize]).unwrap();
    let _worker = env.worker_with(&[("MEDIAQ_RETRY_BASE", "1s")]).await;
    let id2 = id.clone();
    let retrying = mediaq_e2e::wait_for(Duration::from_secs(60), "a retry to be scheduled", || {
        let api = &api;
        let id = id2.clone();
        async move {
            let job = api.job(&id).await;
            (job["status"] == "queued" && job["error"]["code"] == "storage_error").then_some(job)
        }
    })
    .await;
    assert!(retrying["next_attempt_at"].is_string(), "{retrying}");
    assert!(files_under(&storage.join("work")).is_empty(), "the failed attempt cleaned up");

    // Room again: the retry succeeds.
    std::fs::remove_file(&filler).unwrap();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["attempts"].as_i64().unwrap() >= 2, "{job}");
    assert_eq!(job["attempt_history"][0]["error_code"], "storage_error", "{job}");
}
