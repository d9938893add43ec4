//! Benchmarks (ignored: run by `scripts/bench-hosts.sh`, never in CI): throughput in jobs per
//! minute with 1, 2 and 3 worker hosts (network namespaces, S3 storage), and the per-job cost of
//! S3 storage against local disk. Rounds alternate; medians are reported.

use std::time::{Duration, Instant};

use mediaq_e2e::{
    fixtures,
    hosts::{self, Cluster},
    s3::{pairs, S3Server},
    Api, TestEnv,
};
use serde_json::Value;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn upload(api: &Api, bytes: &[u8]) -> String {
    let resp = api.upload(bytes.to_vec(), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "benchmark: scripts/bench-hosts.sh"]
async fn bench_jobs_per_minute_by_host_count() {
    hosts::assert_prerequisites();
    let jobs = env_usize("BENCH_JOBS", 24);
    let rounds = env_usize("BENCH_ROUNDS", 2);
    let clip = fixtures::bytes(&fixtures::BENCH_CLIP);
    let mut results: Vec<(u8, f64)> = Vec::new();
    let mut order: Vec<u8> = Vec::new();
    for r in 0..rounds {
        order.extend(if r % 2 == 0 { [1, 2, 3] } else { [3, 2, 1] });
    }
    for count in order {
        let env = TestEnv::new().await;
        let s3 = S3Server::start(env.logs.path()).await;
        let api = env.api_with(&pairs(&s3.env())).await;
        let _cluster = Cluster::start(&env, &s3, count, &[("MEDIAQ_X264_PRESET", "veryfast")]).await;
        let started = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..jobs {
            ids.push(upload(&api, &clip).await);
        }
        for id in &ids {
            let (_, job) = api.wait_terminal(id, Duration::from_secs(1800)).await;
            assert_eq!(job["status"], "succeeded", "{job}");
        }
        let per_minute = jobs as f64 / started.elapsed().as_secs_f64() * 60.0;
        println!("BENCH hosts={count} jobs={jobs} jobs_per_minute={per_minute:.1}");
        results.push((count, per_minute));
    }
    for count in 1..=3u8 {
        let runs: Vec<f64> = results.iter().filter(|r| r.0 == count).map(|r| r.1).collect();
        println!("BENCH_SUMMARY hosts={count} median_jobs_per_minute={:.1} runs={runs:.1?}", median(runs.clone()));
    }
}

#[tokio::test]
#[ignore = "benchmark: scripts/bench-hosts.sh"]
async fn bench_storage_overhead_s3_vs_local() {
    let jobs = env_usize("BENCH_STORAGE_JOBS", 5);
    let rounds = env_usize("BENCH_ROUNDS", 2) * 2;
    let clip = fixtures::bytes(&fixtures::BENCH_CLIP);
    let (mut local, mut s3_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let use_s3 = round % 2 == 1;
        let env = TestEnv::new().await;
        let s3 = S3Server::start(env.logs.path()).await;
        let vars = if use_s3 { s3.env() } else { Vec::new() };
        let mut worker_vars = vars.clone();
        worker_vars.push(("MEDIAQ_X264_PRESET".into(), "veryfast".into()));
        let api = env.api_with(&pairs(&vars)).await;
        let _worker = env.worker_with(&pairs(&worker_vars)).await;
        for _ in 0..jobs {
            let started = Instant::now();
            let id = upload(&api, &clip).await;
            let (_, job) = api.wait_terminal(&id, Duration::from_secs(600)).await;
            assert_eq!(job["status"], "succeeded", "{job}");
            // The output's download is part of a job's storage cost too.
            let body = api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
            assert_eq!(body.bytes().await.unwrap().len() as u64, job["output"]["size_bytes"].as_u64().unwrap());
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if use_s3 {
                s3_times.push(ms)
            } else {
                local.push(ms)
            }
        }
    }
    let (l, s) = (median(local.clone()), median(s3_times.clone()));
    println!("BENCH_SUMMARY storage=local median_ms_per_job={l:.0} runs={local:.0?}");
    println!("BENCH_SUMMARY storage=s3 median_ms_per_job={s:.0} runs={s3_times:.0?}");
    println!("BENCH_SUMMARY s3_overhead_ms_per_job={:.0} ratio={:.3}", s - l, s / l);
}
