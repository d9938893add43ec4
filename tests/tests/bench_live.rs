//! Benchmark (ignored: run by `scripts/bench-live.sh`, never in CI): from the last byte
//! acknowledged to `succeeded`, a live upload (converted while it arrives, sent at real-time
//! pace in 1 s PATCHes through the real tus route, `/v1/uploads`) against the classic path
//! (the whole file uploaded with `POST /v1/jobs`, then converted), for BENCH_SIZE (1280x720) VP8 +
//! Opus recordings of BENCH_LENGTHS seconds; and the CPU seconds of each conversion (the child's
//! rusage, from `job_attempts`). Runs alternate live / classic; medians are reported.

use std::time::{Duration, Instant};

use mediaq_e2e::{
    fixtures::{self, Recipe},
    live::{slices, TusUpload},
    TestEnv,
};
use serde_json::Value;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A MediaRecorder-style recording of `seconds` at `size` (default 1280x720, BENCH_SIZE),
/// written live: no Cues, no Duration.
fn recording(seconds: u32, size: &str) -> std::path::PathBuf {
    let name: &'static str = Box::leak(format!("bench_live_{size}_{seconds}s.webm").into_boxed_str());
    let t: &'static str = Box::leak(seconds.to_string().into_boxed_str());
    let source: &'static str = Box::leak(format!("testsrc2=size={size}:rate=30").into_boxed_str());
    let args: &'static [&'static str] = Box::leak(
        vec![
            "-f",
            "lavfi",
            "-i",
            source,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            t,
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "2500k",
            "-c:a",
            "libopus",
            "-live",
            "1",
            "-cluster_time_limit",
            "1000",
            "-f",
            "webm",
        ]
        .into_boxed_slice(),
    );
    fixtures::path(&Recipe { name, args, parts: &[] })
}

/// Polls the job every 20 ms until it is terminal; returns when that was seen.
async fn wait_done(env: &TestEnv, id: uuid::Uuid, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_one(env.pool()).await.unwrap();
        match status.as_str() {
            "succeeded" => return Instant::now(),
            "failed" | "canceled" => panic!("job {id} ended {status}"),
            _ if Instant::now() > deadline => panic!("job {id} not done after {timeout:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// CPU seconds (user + system) of the job's successful attempt.
async fn cpu_seconds(env: &TestEnv, id: uuid::Uuid) -> f64 {
    sqlx::query_scalar("SELECT user_cpu_s + system_cpu_s FROM job_attempts WHERE job_id = $1 AND outcome = 'succeeded'")
        .bind(id)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

/// Live: PATCHes at real-time pace, the last one with the length. Seconds from its `204` to
/// succeeded.
async fn live(env: &TestEnv, api: &mediaq_e2e::Api, bytes: &[u8], seconds: u32) -> (f64, f64) {
    let mut upload = TusUpload::create(api, None).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let parts = slices(bytes, seconds as usize);
    let (last, parts) = parts.split_last().unwrap();
    for part in parts {
        tick.tick().await;
        upload.append(part).await;
    }
    tick.tick().await;
    upload.append_last(last).await;
    let acknowledged = Instant::now();
    let done = wait_done(env, upload.uuid(), Duration::from_secs(600)).await;
    (done.duration_since(acknowledged).as_secs_f64(), cpu_seconds(env, upload.uuid()).await)
}

/// Classic: the whole file in one `POST /v1/jobs`; seconds from its 202 to succeeded.
async fn classic(env: &TestEnv, api: &mediaq_e2e::Api, bytes: &[u8]) -> (f64, f64) {
    let resp = api.upload(bytes.to_vec(), "video/webm", Some("recording.webm")).await;
    assert_eq!(resp.status(), 202);
    let acknowledged = Instant::now();
    let job: Value = resp.json().await.unwrap();
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let done = wait_done(env, id, Duration::from_secs(600)).await;
    (done.duration_since(acknowledged).as_secs_f64(), cpu_seconds(env, id).await)
}

#[tokio::test]
#[ignore = "benchmark: scripts/bench-live.sh"]
async fn bench_live_against_classic() {
    let lengths: Vec<u32> = std::env::var("BENCH_LENGTHS")
        .unwrap_or_else(|_| "10,60".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let preset = std::env::var("MEDIAQ_X264_PRESET").unwrap_or_else(|_| "veryfast".into());
    let size = std::env::var("BENCH_SIZE").unwrap_or_else(|_| "1280x720".into());
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker_with(&[("MEDIAQ_X264_PRESET", &preset)]).await;
    for seconds in lengths {
        let bytes = std::fs::read(recording(seconds, &size)).unwrap();
        let (mut live_s, mut live_cpu, mut classic_s, mut classic_cpu) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            // Alternate which path goes first.
            for path in if round % 2 == 0 { ["live", "classic"] } else { ["classic", "live"] } {
                let (latency, cpu) = if path == "live" {
                    live(&env, &api, &bytes, seconds).await
                } else {
                    classic(&env, &api, &bytes).await
                };
                println!(
                    "BENCH run {seconds}s {path} round {round}: {latency:.3} s after the last byte, {cpu:.2} CPU s"
                );
                let (l, c) =
                    if path == "live" { (&mut live_s, &mut live_cpu) } else { (&mut classic_s, &mut classic_cpu) };
                l.push(latency);
                c.push(cpu);
            }
        }
        let (ls, cs, lc, cc) = (median(live_s), median(classic_s), median(live_cpu), median(classic_cpu));
        println!(
            "BENCH {seconds}s {size} preset {preset}: last byte -> succeeded live {ls:.3} s, classic {cs:.3} s; \
             CPU live {lc:.2} s, classic {cc:.2} s (live/classic {:.3}); medians of {rounds}",
            lc / cc
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("BENCH load average at the end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
