//! The janitor: retention (jobs read `expired`), stale temp files and job directories,
//! orphaned objects, and apalis rows apalis never prunes; every deletion audited.

use std::{
    fs::File,
    path::Path,
    time::{Duration, SystemTime},
};

use mediaq_e2e::{bin_dir, files_under, fixtures, TestEnv};
use serde_json::Value;

fn age(path: &Path, by: Duration) {
    let t = SystemTime::now() - by;
    if path.is_dir() {
        // Directories' mtimes are set through a file handle too.
        File::open(path).unwrap().set_modified(t).unwrap();
    } else {
        File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    }
}

#[tokio::test]
async fn the_janitor_expires_old_jobs_and_removes_what_nobody_references() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let mut worker = env.worker().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job: Value =
            api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        assert_eq!(api.wait_terminal(&id, Duration::from_secs(60)).await.1["status"], "succeeded");
        ids.push(id);
    }
    worker.service.signal(libc::SIGTERM);
    worker.service.wait_exit(Duration::from_secs(15)).await;
    let (old, recent) = (&ids[0], &ids[1]);
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '8 days' WHERE id = $1::uuid")
        .bind(old)
        .execute(env.pool())
        .await
        .unwrap();

    let storage = env.storage_dir();
    let stale_tmp = storage.join("tmp/upload-stale.part");
    let fresh_tmp = storage.join("tmp/upload-fresh.part");
    let orphan_in = storage.join(format!("inputs/{}.webm", uuid::Uuid::now_v7()));
    let orphan_out = storage.join(format!("outputs/{}-a1.mp4", uuid::Uuid::now_v7()));
    let young_orphan = storage.join(format!("inputs/{}.webm", uuid::Uuid::now_v7()));
    let dead_dir = storage.join(format!("work/{}-a1-XXXXXX", uuid::Uuid::now_v7()));
    for f in [&stale_tmp, &fresh_tmp, &orphan_in, &orphan_out, &young_orphan] {
        std::fs::write(f, b"x").unwrap();
    }
    std::fs::create_dir(&dead_dir).unwrap();
    std::fs::write(dead_dir.join("output.mp4"), b"x").unwrap();
    // A live upload's attempt runs as long as the recording: its (old) directory stays while that
    // attempt is the job's current one; its earlier attempt's directory goes.
    let live = api
        .client
        .post(api.url("/v1/uploads"))
        .header("tus-resumable", "1.0.0")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 201);
    let live: Value = live.json().await.unwrap();
    let live_id = live["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE jobs SET status = 'processing', attempts = 2 WHERE id = $1::uuid")
        .bind(&live_id)
        .execute(env.pool())
        .await
        .unwrap();
    let running_dir = storage.join(format!("work/{live_id}-a2-Abc123"));
    let superseded_dir = storage.join(format!("work/{live_id}-a1-Def456"));
    for d in [&running_dir, &superseded_dir] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("output.mp4"), b"x").unwrap();
        age(d, Duration::from_secs(3 * 3600));
    }
    for f in [&stale_tmp, &orphan_in, &orphan_out] {
        age(f, Duration::from_secs(2 * 3600));
    }
    age(&dead_dir, Duration::from_secs(3 * 3600));
    sqlx::query("UPDATE apalis.jobs SET done_at = now() - interval '2 days'").execute(env.pool()).await.unwrap();
    sqlx::query("UPDATE apalis.workers SET last_seen = now() - interval '2 days'").execute(env.pool()).await.unwrap();

    let out = std::process::Command::new(bin_dir().join("mediaq-worker"))
        .arg("janitor")
        .env("DATABASE_URL", &env.database_url)
        .env("MEDIAQ_STORAGE_DIR", storage)
        .env("MEDIAQ_TRANSCODE_TIMEOUT", "1h")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep["ran"], true);
    assert_eq!(sweep["expired_jobs"], 1, "{sweep}");
    assert_eq!(sweep["temp_files"], 1, "{sweep}");
    assert_eq!(sweep["work_dirs"], 2, "{sweep}");
    assert_eq!(sweep["orphans"], 2, "{sweep}");
    assert_eq!(sweep["queue_rows"], 2, "{sweep}");
    assert!(sweep["dead_workers"].as_u64().unwrap() >= 1, "{sweep}");

    // The old job reads expired, its files are gone; the recent one is untouched.
    let job = api.job(old).await;
    assert_eq!(job["status"], "expired", "{job}");
    assert!(job["files_deleted_at"].is_string());
    let resp = api.client.get(api.url(&format!("/v1/jobs/{old}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    let job = api.job(recent).await;
    assert_eq!(job["status"], "succeeded");
    let resp = api.client.get(api.url(&format!("/v1/jobs/{recent}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!stale_tmp.exists() && !orphan_in.exists() && !orphan_out.exists() && !dead_dir.exists());
    assert!(fresh_tmp.exists() && young_orphan.exists(), "young files are left alone");
    assert!(running_dir.exists() && !superseded_dir.exists(), "the running attempt's directory stays");
    // What is left in outputs/ is the recent job's MP4 and poster; the old job's poster went too.
    let mut left: Vec<String> = files_under(&storage.join("outputs"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [format!("{recent}-a1.jpg"), format!("{recent}-a1.mp4")]);
    let resp = api.client.get(api.url(&format!("/v1/jobs/{old}/poster"))).send().await.unwrap();
    assert_eq!(resp.status(), 410);

    let audits: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, count(*) FROM audit_events WHERE actor = 'janitor' GROUP BY action ORDER BY action",
    )
    .fetch_all(env.pool())
    .await
    .unwrap();
    let count = |a: &str| audits.iter().find(|(x, _)| x == a).map_or(0, |(_, n)| *n);
    assert_eq!(count("job.expired"), 1, "{audits:?}");
    assert_eq!(count("storage.temp_removed"), 1, "{audits:?}");
    assert_eq!(count("storage.workdir_removed"), 2, "{audits:?}");
    assert_eq!(count("storage.orphan_removed"), 2, "{audits:?}");
    assert_eq!(count("queue.pruned"), 1, "{audits:?}");

    // A second run finds nothing more.
    let out = std::process::Command::new(bin_dir().join("mediaq-worker"))
        .arg("janitor")
        .env("DATABASE_URL", &env.database_url)
        .env("MEDIAQ_STORAGE_DIR", storage)
        .output()
        .unwrap();
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep["expired_jobs"], 0, "{sweep}");
    assert_eq!(sweep["orphans"], 0, "{sweep}");
}
