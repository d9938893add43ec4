//! The fair queue, with the real binaries: uploads that pause hold no slot that finished uploads
//! need (the live lane, parking on an idle upload); a tenant with many queued jobs does not hold
//! back another's; priorities order work within a tenant; equal demand gets equal service;
//! every unfinished job carries its place in line and an estimate; a worker killed while
//! holding a live and a CPU slot loses neither job.

use std::time::{Duration, Instant};

use mediaq_e2e::services::create_key;
use mediaq_e2e::{
    fixtures,
    fixtures::Recipe,
    live::{slices, TusUpload},
    probe, wait_for, Api, TestEnv,
};
use serde_json::Value;

/// The 12 s MediaRecorder-style recording.
const RECORDING: Recipe = fixtures::RECORDING_12S;

/// A small whole file, about a second to convert.
fn small() -> Vec<u8> {
    fixtures::bytes(&fixtures::VP8_VORBIS)
}

async fn upload(api: &Api, bytes: Vec<u8>, priority: Option<&str>) -> String {
    let mut req = api.client.post(api.url("/v1/jobs")).header("content-type", "video/webm").body(bytes);
    if let Some(p) = priority {
        req = req.query(&[("priority", p)]);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    let job: Value = resp.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

/// Job ids in the order their first attempt started.
async fn start_order(env: &TestEnv) -> Vec<String> {
    let rows: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT job_id FROM job_attempts WHERE attempt = 1 ORDER BY started_at, job_id")
            .fetch_all(env.pool())
            .await
            .unwrap();
    rows.into_iter().map(|(id,)| id.to_string()).collect()
}

async fn all_terminal(api: &Api, ids: &[String], timeout: Duration) {
    for id in ids {
        let (_, job) = api.wait_terminal(id, timeout).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

#[tokio::test]
async fn paused_uploads_of_one_tenant_do_not_delay_another_and_still_convert() {
    let env = TestEnv::new().await;
    let a = env.api().await;
    let b_key = create_key(&env.database_url, "b", "jobs:write,jobs:read", "tenant-b");
    let b = env.api_as(&b_key, &[]).await;
    // One CPU slot, the default two live slots; a short idle gap so the test sees parking.
    let _worker = env.worker_with(&[("MEDIAQ_LIVE_IDLE_GAP", "3s")]).await;
    let bytes = fixtures::bytes(&RECORDING);

    // Three recordings that send a valid header and 64 KiB, then go quiet.
    let mut paused = Vec::new();
    for _ in 0..3 {
        let mut up = TusUpload::create(&a, None).await;
        up.append(&bytes[..64 << 10]).await;
        paused.push(up);
    }
    // Two take the live slots (the key's live limit is 2); the third waits for bytes.
    wait_for(Duration::from_secs(20), "two live attempts", || async {
        let mut processing = 0;
        for up in &paused {
            processing += (a.job(&up.id).await["status"] == "processing") as usize;
        }
        (processing == 2).then_some(())
    })
    .await;
    let third = a.job(&paused[2].id).await;
    assert_eq!(third["queue"]["waiting_for_bytes"], true, "{third}");

    // Another tenant's ordinary upload runs at once in the CPU lane.
    let started = Instant::now();
    let other = upload(&b, small(), None).await;
    let (_, job) = b.wait_terminal(&other, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(started.elapsed() < Duration::from_secs(30), "delayed {:?}", started.elapsed());

    // The idle live attempts hand their slots back: the jobs wait for bytes, attempts unspent.
    wait_for(Duration::from_secs(30), "the paused uploads parked", || async {
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'job.parked'")
            .fetch_one(env.pool())
            .await
            .unwrap();
        (parked >= 2).then_some(())
    })
    .await;
    for up in &paused {
        let job = a.job(&up.id).await;
        assert_eq!(job["status"], "receiving", "{job}");
    }

    // The rest arrives: every recording converts, whole.
    for up in &mut paused {
        for part in slices(&bytes[64 << 10..], 4) {
            up.append(part).await;
        }
        up.finish().await;
    }
    let dir = tempfile::tempdir().unwrap();
    for up in &paused {
        let (_, job) = a.wait_terminal(&up.id, Duration::from_secs(90)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let resp = a.client.get(a.url(&format!("/v1/jobs/{}/output", up.id))).send().await.unwrap();
        let path = dir.path().join(format!("{}.mp4", up.id));
        std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
        let got = probe::duration(&probe::ffprobe(&path));
        assert!((got - 12.0).abs() <= 0.1, "duration {got}");
    }
}

#[tokio::test]
async fn one_tenants_backlog_does_not_hold_back_another() {
    let env = TestEnv::new().await;
    let a = env.api().await;
    let b_key = create_key(&env.database_url, "b", "jobs:write,jobs:read", "tenant-b");
    let b = env.api_as(&b_key, &[]).await;
    let mut backlog = Vec::new();
    for _ in 0..12 {
        backlog.push(upload(&a, small(), None).await);
    }
    let _worker = env.worker_with(&[("MEDIAQ_WORKER_LIVE_SLOTS", "0")]).await;
    // Once the backlog is being worked through, the other tenant's job starts at the next free slot.
    wait_for(Duration::from_secs(30), "the backlog started", || async {
        (start_order(&env).await.len() >= 2).then_some(())
    })
    .await;
    let mine = upload(&b, small(), None).await;
    let started_before = start_order(&env).await.len();
    let (_, job) = b.wait_terminal(&mine, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let order = start_order(&env).await;
    let at = order.iter().position(|id| *id == mine).unwrap();
    // The job running when it arrived, and at most one more that was claimed in the same instant.
    assert!(at <= started_before + 1, "started {at}th, {started_before} had started before it: {order:?}");
    all_terminal(&a, &backlog, Duration::from_secs(120)).await;
}

#[tokio::test]
async fn priorities_order_a_tenants_work_and_equal_demand_alternates() {
    let env = TestEnv::new().await;
    let a = env.api().await;
    let b_key = create_key(&env.database_url, "b", "jobs:write,jobs:read", "tenant-b");
    let b = env.api_as(&b_key, &[]).await;
    // Queued before any worker runs, so the claim order is the queue's alone.
    let low: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(upload(&a, small(), Some("low")).await);
        }
        v
    };
    let normal = upload(&a, small(), None).await;
    let high = upload(&a, small(), Some("high")).await;
    let mut b_jobs = Vec::new();
    for _ in 0..5 {
        b_jobs.push(upload(&b, small(), None).await);
    }
    // A bad priority is refused with a clear error.
    let resp = a
        .client
        .post(a.url("/v1/jobs"))
        .query(&[("priority", "urgent")])
        .header("content-type", "video/webm")
        .body(small())
        .send()
        .await
        .unwrap();
    let (status, code, _) = mediaq_e2e::error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let job = a.job(&high).await;
    assert_eq!(job["priority"], "high", "{job}");
    assert_eq!(job["queue"]["position"], 0, "first in line: {job}");

    let _worker = env.worker_with(&[("MEDIAQ_WORKER_LIVE_SLOTS", "0")]).await;
    let mut all: Vec<String> = low.iter().chain([&normal, &high]).cloned().collect();
    all.extend(b_jobs.iter().cloned());
    for id in &all {
        let api = if b_jobs.contains(id) { &b } else { &a };
        let (_, job) = api.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let order = start_order(&env).await;
    // Within tenant A: high, normal, then the lows in their order.
    let a_order: Vec<&String> = order.iter().filter(|id| !b_jobs.contains(id)).collect();
    let want: Vec<&String> = [&high, &normal].into_iter().chain(low.iter()).collect();
    assert_eq!(a_order, want, "tenant A's order");
    // Across tenants: strictly alternating while both wait (equal demand, equal service).
    let owners: Vec<char> = order.iter().map(|id| if b_jobs.contains(id) { 'b' } else { 'a' }).collect();
    assert_eq!(owners[..10].iter().collect::<String>(), "ababababab", "{owners:?}");
    // Jain's fairness index of the service each got in the first half of the run.
    let half = &owners[..owners.len() / 2];
    let (xa, xb) =
        (half.iter().filter(|&&o| o == 'a').count() as f64, half.iter().filter(|&&o| o == 'b').count() as f64);
    let jain = (xa + xb).powi(2) / (2.0 * (xa * xa + xb * xb));
    assert!(jain >= 0.9, "Jain's index {jain} ({owners:?})");
}

#[tokio::test]
async fn every_unfinished_job_has_its_place_in_line_and_an_estimate() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(upload(&api, small(), None).await);
        }
        v
    };
    // No worker alive: a place in line, no estimate.
    let last = api.job(&ids[3]).await;
    assert_eq!(last["queue"]["position"], 3, "{last}");
    assert_eq!(last["queue"]["lane"], "cpu", "{last}");
    assert_eq!(last["queue"]["workers"], 0, "{last}");
    assert!(last["queue"]["estimated_finish_at"].is_null(), "{last}");

    let _worker = env.worker_with(&[("MEDIAQ_WORKER_LIVE_SLOTS", "0")]).await;
    let seen = wait_for(Duration::from_secs(30), "an estimate", || async {
        let job = api.job(&ids[3]).await;
        job["queue"]["estimated_finish_at"].is_string().then_some(job)
    })
    .await;
    let position = seen["queue"]["position"].as_i64().unwrap();
    // The worker is alive: at most the three ahead of it (fewer once it has taken some).
    assert!((0..=3).contains(&position), "{seen}");
    let start = chrono::DateTime::parse_from_rfc3339(seen["queue"]["estimated_start_at"].as_str().unwrap()).unwrap();
    let finish = chrono::DateTime::parse_from_rfc3339(seen["queue"]["estimated_finish_at"].as_str().unwrap()).unwrap();
    assert!(finish >= start, "{seen}");
    all_terminal(&api, &ids, Duration::from_secs(60)).await;
    // Finished: no queue facts.
    assert!(api.job(&ids[3]).await["queue"].is_null());
}

#[tokio::test]
async fn nothing_is_queued_before_the_first_bytes_pass_the_content_check() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_UPLOAD_MAX_LIFETIME", "1h")]).await;
    let bytes = fixtures::bytes(&RECORDING);
    let mut up = TusUpload::create(&api, None).await;
    up.append(&bytes[..1]).await;
    up.append(&bytes[1..100]).await;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs").fetch_one(env.pool()).await.unwrap();
    assert_eq!(tasks, 0, "queued before 4 KiB were checked");
    let job = api.job(&up.id).await;
    assert_eq!(job["queue"]["waiting_for_bytes"], true, "{job}");
    up.append(&bytes[100..8192]).await;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE job_type = 'mediaq.transcode.live'")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(tasks, 1, "queued in the live lane once checked");
    // However often bytes trickle in, the upload expires within its lifetime of its creation.
    let (created, expires): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT created_at, expires_at FROM uploads WHERE job_id = $1")
            .bind(up.uuid())
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(expires <= created + chrono::Duration::hours(1), "{created} -> {expires}");
}

#[tokio::test]
async fn a_worker_killed_holding_a_live_and_a_cpu_slot_loses_neither_job() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let fast = [("MEDIAQ_HEARTBEAT", "1s"), ("MEDIAQ_WORKER_LIVE_SLOTS", "1")];
    let mut victim = env.worker_with(&fast).await;
    let bytes = fixtures::bytes(&RECORDING);
    let parts = slices(&bytes, 12);
    let mut live = TusUpload::create(&api, None).await;
    for part in &parts[..4] {
        live.append(part).await;
    }
    // A whole file long enough to be mid-conversion at the kill.
    let whole = upload(&api, bytes.clone(), None).await;
    wait_for(Duration::from_secs(30), "both slots busy", || async {
        let (l, w) = (api.job(&live.id).await, api.job(&whole).await);
        (l["status"] == "processing" && w["status"] == "processing").then_some(())
    })
    .await;
    victim.service.signal(libc::SIGKILL);
    victim.service.wait_exit(Duration::from_secs(10)).await;
    let _rescuer = env.worker_with(&fast).await;
    for part in &parts[4..] {
        live.append(part).await;
    }
    live.finish().await;
    for id in [&live.id, &whole] {
        let (_, job) = api.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 2, "{job}");
        let resp = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mp4");
        std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
        let got = probe::duration(&probe::ffprobe(&path));
        assert!((got - 12.0).abs() <= 0.1, "duration {got}");
    }
}
