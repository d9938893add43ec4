//! Live uploads: a recording sent through the real tus route (`/v1/uploads`, one PATCH per
//! timeslice at the recorder's pace) and converted while it arrives by the real worker and
//! transcoder, checked by ffprobe; a worker killed mid-stream; an upload that stops (no CPU while
//! waiting, no stall or timeout, then `upload_abandoned`); bytes that cannot be converted.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use mediaq_e2e::{
    bin_dir, files_under, fixtures,
    fixtures::Recipe,
    live::{slices, TusUpload},
    probe,
    s3::{pairs, S3Server},
    transcoders_of, wait_for, Api, TestEnv,
};
use serde_json::Value;

/// A MediaRecorder-style recording: VP8 + Opus written as a stream (no Cues, no Duration,
/// unknown-size clusters, a cluster per second), the audio starting 40 ms after the video.
#[rustfmt::skip]
const RECORDING: Recipe = Recipe {
    name: "live_recording_20s.webm",
    args: &[
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-itsoffset", "0.04", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", "20", "-map", "0:v", "-map", "1:a", "-c:v", "libvpx", "-deadline", "realtime",
        "-cpu-used", "8", "-b:v", "1M", "-c:a", "libopus", "-live", "1", "-cluster_time_limit", "1000",
        "-f", "webm",
    ],
    parts: &[],
};
/// Seconds of media per segment (the recorder's timeslice).
const SEGMENTS: usize = 20;

async fn status(api: &Api, id: &str) -> Value {
    api.job(id).await
}

/// Sends `parts` one per `pace`, checking before the last one that a worker is converting.
async fn send_paced(api: &Api, upload: &mut TusUpload, parts: &[&[u8]], pace: Duration) {
    let mut tick = tokio::time::interval(pace);
    for (i, part) in parts.iter().enumerate() {
        tick.tick().await;
        if i + 1 == parts.len() {
            let job = status(api, &upload.id).await;
            assert_eq!(job["status"], "processing", "converting before the last segment: {job}");
        }
        upload.append(part).await;
    }
}

async fn download(api: &Api, id: &str, dir: &Path) -> std::path::PathBuf {
    let resp = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let path = dir.join(format!("{id}.mp4"));
    std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
    path
}

/// The MP4 against its input: H.264/AAC, the same duration within 0.1 s, faststart, and the
/// same offset between the first video and audio frames within 10 ms.
fn check_output(input: &Path, output: &Path) {
    let out = probe::ffprobe(output);
    assert_eq!(probe::stream(&out, "video").unwrap()["codec_name"], "h264", "{out}");
    assert_eq!(probe::stream(&out, "audio").unwrap()["codec_name"], "aac", "{out}");
    let (want, got) = (probe::decoded_duration(input), probe::duration(&out));
    assert!((want - got).abs() <= 0.1, "duration {got} s, the input's {want} s");
    let boxes = probe::top_level_boxes(&std::fs::read(output).unwrap());
    let at = |b: &str| boxes.iter().position(|x| x == b).unwrap_or_else(|| panic!("no {b}: {boxes:?}"));
    assert!(at("moov") < at("mdat"), "faststart: {boxes:?}");
    let offset = |p: &Path| match probe::first_frames(p) {
        (Some(v), Some(a)) => a - v,
        other => panic!("first frames of {}: {other:?}", p.display()),
    };
    let (want, got) = (offset(input), offset(output));
    assert!((want - got).abs() <= 0.010, "A/V offset {got:.4} s, the input's {want:.4} s");
}

#[tokio::test]
async fn a_recording_is_converted_while_it_arrives() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let input = fixtures::path(&RECORDING);
    let bytes = std::fs::read(&input).unwrap();
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();

    send_paced(&api, &mut upload, &slices(&bytes, SEGMENTS), Duration::from_secs(1)).await;
    let during = status(&api, &id).await;
    upload.finish().await;
    let last_byte = Instant::now();
    let (progress, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    let latency = last_byte.elapsed();
    eprintln!("last byte acknowledged -> succeeded: {latency:?}; progress seen {progress:?}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(during["progress"].as_f64().unwrap() > 0.0, "progress while recording: {during}");
    assert!(progress.iter().all(|p| (0.0..=1.0).contains(p)), "{progress:?}");
    // Converted as it arrived: what is left after the last byte is its tail, not 20 s of media.
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    let dir = tempfile::tempdir().unwrap();
    check_output(&input, &download(&api, &id, dir.path()).await);
    assert_eq!(job["input"]["sha256"], mediaq_e2e::sha256_hex(&bytes), "{job}");
}

#[tokio::test]
async fn a_worker_killed_mid_stream_is_caught_up_by_another() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let fast_orphans = [("MEDIAQ_HEARTBEAT", "1s")];
    let mut victim = env.worker_with(&fast_orphans).await;
    let input = fixtures::path(&RECORDING);
    let bytes = std::fs::read(&input).unwrap();
    let parts = slices(&bytes, SEGMENTS);
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();

    send_paced(&api, &mut upload, &parts[..6], Duration::from_millis(500)).await;
    let id2 = id.clone();
    wait_for(Duration::from_secs(20), "the transcoder to start", || {
        let running = !transcoders_of(&id2).is_empty();
        async move { running.then_some(()) }
    })
    .await;
    victim.service.signal(libc::SIGKILL);
    victim.service.wait_exit(Duration::from_secs(5)).await;
    let _rescuer = env.worker_with(&fast_orphans).await;
    send_paced(&api, &mut upload, &parts[6..], Duration::from_millis(500)).await;
    upload.finish().await;

    let (_, job) = api.wait_terminal(&id, Duration::from_secs(90)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["attempt_history"][0]["error_code"], "worker_crashed", "{job}");
    assert_eq!(mediaq_e2e::mp4s_under(&env.storage_dir().join("outputs")).len(), 1, "exactly one output");
    let dir = tempfile::tempdir().unwrap();
    check_output(&input, &download(&api, &id, dir.path()).await);
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command's ")".
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::test]
async fn a_stopped_upload_waits_without_cpu_then_is_abandoned() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    // Timers far shorter than the wait: they must not count while the child waits for bytes.
    let _worker = env.worker_with(&[("MEDIAQ_STALL_TIMEOUT", "2s"), ("MEDIAQ_TRANSCODE_TIMEOUT", "3s")]).await;
    let bytes = fixtures::bytes(&RECORDING);
    let parts = slices(&bytes, SEGMENTS);
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();
    for part in &parts[..3] {
        upload.append(part).await;
    }
    let id2 = id.clone();
    let pid = wait_for(Duration::from_secs(20), "the transcoder to start", || {
        let pid = transcoders_of(&id2).first().copied();
        async move { pid }
    })
    .await;
    // Once everything received is converted, the child only waits: its CPU time stops growing
    // (a child that spins never gets there, and the wait fails).
    wait_for(Duration::from_secs(60), "the transcoder to convert what it has", || async move {
        let before = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        (cpu_seconds(pid) - before < 0.02).then_some(())
    })
    .await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_seconds(pid) - before;
    assert!(used < 0.1, "the waiting transcoder used {used} s of CPU in 5 s");
    let job = status(&api, &id).await;
    assert_eq!(job["status"], "processing", "still waiting for bytes, no stall or timeout: {job}");

    upload.expire_now(env.pool()).await;
    let out = std::process::Command::new(bin_dir().join("mediaq-worker"))
        .arg("janitor")
        .env("DATABASE_URL", &env.database_url)
        .env("MEDIAQ_STORAGE_DIR", env.storage_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "janitor: {}", String::from_utf8_lossy(&out.stderr));
    let sweep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sweep["abandoned_uploads"], 1, "{sweep}");

    let (_, job) = api.wait_terminal(&id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "upload_abandoned", "{job}");
    let id2 = id.clone();
    wait_for(Duration::from_secs(10), "the transcoder to stop", || {
        let gone = transcoders_of(&id2).is_empty();
        async move { gone.then_some(()) }
    })
    .await;
    let storage = env.storage_dir().to_owned();
    wait_for(Duration::from_secs(10), "no files left", || {
        let left: Vec<_> =
            ["uploads", "outputs", "inputs", "work"].iter().flat_map(|d| files_under(&storage.join(d))).collect();
        async move { left.is_empty().then_some(()) }
    })
    .await;
    // The attempt stopped without recording another outcome.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = status(&api, &id).await;
    assert_eq!(job["error"]["code"], "upload_abandoned", "{job}");
    assert_eq!(job["attempt_history"][0]["outcome"], "canceled", "{job}");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'upload.abandoned' AND job_id = $1")
            .bind(upload.uuid())
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

/// A recording whose video track names a codec we do not convert: it passes the upload's
/// checks (magic, DocType), and the job fails with the usual code while the recorder is still
/// sending; its next PATCH is refused with a clear 4xx.
#[tokio::test]
async fn an_unconvertible_recording_fails_while_it_arrives() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let mut bytes = fixtures::bytes(&RECORDING);
    let at = bytes.windows(5).position(|w| w == b"V_VP8").expect("the video track's CodecID");
    bytes[at..at + 5].copy_from_slice(b"V_QQQ");
    let parts = slices(&bytes, SEGMENTS);
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();
    for part in &parts[..2] {
        upload.append(part).await;
    }
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "unsupported_codec", "{job}");
    let resp = upload.send(parts[2], None).await;
    let (status, code, _) = mediaq_e2e::error_code(resp).await;
    assert_eq!((status, code.as_str()), (410, "upload_closed"));
}

#[tokio::test]
async fn a_retry_of_an_unfinished_upload_waits_as_receiving() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let bytes = fixtures::bytes(&RECORDING);
    let parts = slices(&bytes, SEGMENTS);
    let mut upload = TusUpload::create(&api, None).await;
    let id = upload.id.clone();
    for part in &parts[..3] {
        upload.append(part).await;
    }
    // The second segment's object goes missing: feeding fails with a (transient) storage error.
    let segments = mediaq_shared::db::uploads::segments(env.pool(), mediaq_shared::JobId::from_uuid(upload.uuid()), 0)
        .await
        .unwrap();
    assert_eq!(segments[1].start, parts[0].len() as u64);
    let missing = env.storage_dir().join(&segments[1].key);
    let kept = std::fs::read(&missing).unwrap();
    std::fs::remove_file(&missing).unwrap();
    let _worker = env.worker_with(&[("MEDIAQ_RETRY_BASE", "3s")]).await;
    let (api2, id2) = (&api, &id);
    let job = wait_for(Duration::from_secs(30), "a retry scheduled", || async move {
        let job = api2.job(id2).await;
        (job["attempt_history"][0]["error_code"] == "storage_error").then_some(job)
    })
    .await;
    assert_eq!(job["status"], "receiving", "a retry of an unfinished upload waits as receiving: {job}");
    std::fs::write(&missing, kept).unwrap();
    for part in &parts[3..] {
        upload.append(part).await;
    }
    upload.finish().await;
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let dir = tempfile::tempdir().unwrap();
    check_output(&fixtures::path(&RECORDING), &download(&api, &id, dir.path()).await);
}

#[tokio::test]
async fn a_recording_in_s3_is_converted_while_it_arrives() {
    let env = TestEnv::new().await;
    let s3 = S3Server::start(env.logs.path()).await;
    let s3_env = s3.env();
    let api = env.api_with(&pairs(&s3_env)).await;
    let _worker = env.worker_with(&pairs(&s3_env)).await;
    let input = fixtures::path(&RECORDING);
    let bytes = std::fs::read(&input).unwrap();
    let mut upload = TusUpload::create(&api, Some(bytes.len() as u64)).await;
    let id = upload.id.clone();

    let parts = slices(&bytes, SEGMENTS);
    send_paced(&api, &mut upload, &parts, Duration::from_millis(250)).await;
    upload.finish().await;
    let (progress, job) = api.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // With the length known, progress follows the bytes converted.
    assert!(progress.iter().any(|p| *p > 0.2 && *p < 1.0), "{progress:?}");
    let dir = tempfile::tempdir().unwrap();
    check_output(&input, &download(&api, &id, dir.path()).await);
    // Segments and output in the bucket, nothing on local disk.
    let (keys, _) = s3.list();
    assert_eq!(keys.iter().filter(|k| k.contains(&format!("uploads/{id}."))).count(), parts.len(), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(&format!("outputs/{id}-a1.mp4"))), "{keys:?}");
    assert!(files_under(env.storage_dir()).is_empty(), "{:?}", files_under(env.storage_dir()));
}
