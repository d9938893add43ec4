//! Retrying a failed job (`POST /v1/jobs/{id}/retry`, `mediaq retry`) with the real binaries: a
//! job whose only attempt crashed goes back to the queue once (however often it is asked), then
//! converts; refusals for someone else's job, a job that did not fail, and a job whose input is
//! gone. Faults come from the stand-in transcoder that crashes a job's first N attempts.

use std::{process::Output, time::Duration};

use mediaq_e2e::{
    bin_dir, error_code, fixtures, probe,
    services::{client_with_key, create_key},
    Api, TestEnv,
};
use serde_json::Value;

/// Mirrors `failures()` in worker/engine/src/bin/mediaq-flaky-transcode.rs.
fn injected_failures(job_id: &str) -> u32 {
    job_id.bytes().map(u32::from).sum::<u32>() % 4
}

async fn mediaq(api: &Api, key: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(bin_dir().join("mediaq"));
    cmd.args(args).env("MEDIAQ_URL", &api.base_url).env("MEDIAQ_API_KEY", key).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.expect("mediaq finishes").expect("run mediaq")
}

async fn retry(client: &reqwest::Client, api: &Api, id: &str) -> reqwest::Response {
    client.post(api.url(&format!("/v1/jobs/{id}/retry"))).send().await.unwrap()
}

async fn count(env: &TestEnv, sql: &'static str, id: &str) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(env.pool()).await.unwrap()
}

/// Uploads until there are `n` jobs whose first attempt alone crashes (1 in 4 of them), and
/// returns them with every other job's id.
async fn upload_until_crashing_once(api: &Api, n: usize) -> (Vec<String>, Vec<String>) {
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let (mut once, mut others) = (Vec::new(), Vec::new());
    for _ in 0..80 {
        let job: Value = api.upload(webm.clone(), "video/webm", None).await.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        if injected_failures(&id) == 1 {
            once.push(id);
            if once.len() == n {
                return (once, others);
            }
        } else {
            others.push(id);
        }
    }
    panic!("80 uploads without {n} jobs that crash exactly once");
}

#[tokio::test]
async fn a_failed_job_is_retried_once_converts_and_refusals_have_codes() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let flaky = bin_dir().join("mediaq-flaky-transcode");
    let worker_env = [("MEDIAQ_TRANSCODE_BIN", flaky.to_str().unwrap()), ("MEDIAQ_MAX_ATTEMPTS", "1")];
    let mut worker = env.worker_with(&worker_env).await;
    let (once, others) = upload_until_crashing_once(&api, 3).await;
    for id in once.iter().chain(&others) {
        api.wait_terminal(id, Duration::from_secs(120)).await;
    }
    // No worker while the retries are asked: nothing can finish in between.
    worker.service.signal(libc::SIGTERM);
    worker.service.wait_exit(Duration::from_secs(60)).await;
    let [mine, deleted, gone] = [&once[0], &once[1], &once[2]];
    let failed = api.job(mine).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "transcoder_crashed", "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");

    // Someone else's job does not exist for them.
    let mallory = client_with_key(&create_key(&env.database_url, "mallory", "jobs:write,jobs:read", "mallory"));
    let (status, code, _) = error_code(retry(&mallory, &api, mine).await).await;
    assert_eq!((status, code.as_str()), (404, "job_not_found"));

    // The owner retries: back in the queue with a new budget, one task, one audit row.
    let resp = retry(&api.client, &api, mine).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["status"], "queued", "{job}");
    assert!(job["error"].is_null(), "{job}");
    // Again, through the CLI: the same job, nothing more.
    let out = mediaq(&api, &api.key, &["retry", mine, "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).expect("--json prints the job");
    assert_eq!(again["status"], "queued", "{again}");
    let resp = retry(&api.client, &api, mine).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let tasks = "SELECT count(*) FROM apalis.jobs WHERE status = 'Pending' AND job_type = 'mediaq.transcode'
                  AND convert_from(job, 'UTF8') LIKE '%' || $1 || '%'";
    assert_eq!(count(&env, tasks, mine).await, 1, "one queue task however often it is asked");
    let audited = "SELECT count(*) FROM audit_events WHERE job_id = $1::uuid AND action = 'job.retried'";
    assert_eq!(count(&env, audited, mine).await, 1);
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE job_id = $1::uuid AND action = 'job.retried'")
            .bind(mine)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(actor.starts_with("key:"), "{actor}");

    // Input gone: files deleted by DELETE, or missing from storage.
    assert_eq!(api.client.delete(api.url(&format!("/v1/jobs/{deleted}"))).send().await.unwrap().status(), 200);
    let (status, code, _) = error_code(retry(&api.client, &api, deleted).await).await;
    assert_eq!((status, code.as_str()), (410, "input_gone"));
    let key: String = sqlx::query_scalar("SELECT input_key FROM jobs WHERE id = $1::uuid")
        .bind(gone)
        .fetch_one(env.pool())
        .await
        .unwrap();
    std::fs::remove_file(env.storage_dir().join(&key)).expect("the stored input");
    let admin = client_with_key(&create_key(&env.database_url, "ops", "admin", "ops"));
    let (status, code, _) = error_code(retry(&admin, &api, gone).await).await;
    assert_eq!((status, code.as_str()), (410, "input_gone"));
    let cli = mediaq(&api, &api.key, &["retry", deleted]).await;
    assert_eq!(cli.status.code(), Some(4), "the server refused: {}", String::from_utf8_lossy(&cli.stderr));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("input_gone"));

    // A worker comes back: the retried job converts on its second attempt.
    let _worker = env.worker_with(&worker_env).await;
    let (_, job) = api.wait_terminal(mine, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let history = job["attempt_history"].as_array().unwrap();
    assert_eq!(history[0]["error_code"], "transcoder_crashed", "{job}");
    let mp4 = api.client.get(api.url(&format!("/v1/jobs/{mine}/output"))).send().await.unwrap();
    assert_eq!(mp4.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retried.mp4");
    std::fs::write(&path, mp4.bytes().await.unwrap()).unwrap();
    assert_eq!(probe::stream(&probe::ffprobe(&path), "video").expect("video")["codec_name"], "h264");

    // A job that did not fail (this one succeeded now) is refused, by its owner and by an admin.
    let (status, code, _) = error_code(retry(&api.client, &api, mine).await).await;
    assert_eq!((status, code.as_str()), (409, "job_not_failed"));
    let (status, code, _) = error_code(retry(&admin, &api, mine).await).await;
    assert_eq!((status, code.as_str()), (409, "job_not_failed"));
}
