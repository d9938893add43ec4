//! The operators' dashboard (`/admin`) in a real browser: Debian's Chromium driven by
//! playwright-core (tests/browser/admin.mjs) against the real API and a worker whose stand-in
//! transcoder crashes some jobs, so the page has successes, failures and dead letters to plot.
//! A non-admin key is refused; Retry on a dead letter sends it through again and it converts.
//! Screenshots and observations go to target/browser-screenshots/admin/ (docs/admin-dashboard.png
//! is one of them).
//!
//! Needs `node`, `/usr/bin/chromium` (or MEDIAQ_CHROMIUM) and tests/browser/node_modules, as
//! tests/tests/browser.rs does; missing, they fail the test.

use std::{path::PathBuf, process::Command, time::Duration};

use mediaq_e2e::{
    bin_dir, fixtures,
    services::{client_with_key, create_key},
    Api, TestEnv,
};
use serde_json::Value;

/// Mirrors `failures()` in worker/engine/src/bin/mediaq-flaky-transcode.rs.
fn injected_failures(job_id: &str) -> u32 {
    job_id.bytes().map(u32::from).sum::<u32>() % 4
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("MEDIAQ_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

#[tokio::test]
async fn the_dashboard_plots_seeded_jobs_refuses_a_user_key_and_retries_a_dead_letter() {
    assert!(
        chromium().exists(),
        "the dashboard test needs Chromium at {} (scripts/test.sh installs it)",
        chromium().display()
    );
    assert!(
        browser_dir().join("node_modules/playwright-core/package.json").exists(),
        "the dashboard test needs playwright-core: `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let env = TestEnv::new().await;
    let api = env.api().await;
    let flaky = bin_dir().join("mediaq-flaky-transcode");
    let _worker =
        env.worker_with(&[("MEDIAQ_TRANSCODE_BIN", flaky.to_str().unwrap()), ("MEDIAQ_MAX_ATTEMPTS", "1")]).await;
    // Seed: uploads until one job crashes exactly once (it converts when retried) and at least
    // two succeed; the others crash and become dead letters too.
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    let mut ids = Vec::new();
    for _ in 0..40 {
        let job: Value = api.upload(webm.clone(), "video/webm", None).await.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
        let once = ids.iter().any(|id| injected_failures(id) == 1);
        if once && ids.iter().filter(|id| injected_failures(id) == 0).count() >= 2 {
            break;
        }
    }
    let retry = ids.iter().find(|id| injected_failures(id) == 1).expect("a job that crashes once").clone();
    for id in &ids {
        api.wait_terminal(id, Duration::from_secs(120)).await;
    }
    let admin_key = create_key(&env.database_url, "ops", "admin", "ops");
    check_routes(&api, &admin_key, &ids, webm.len()).await;
    let out = bin_dir().parent().expect("target dir").join("browser-screenshots").join("admin");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let output = Command::new("node")
        .arg(browser_dir().join("admin.mjs"))
        .env("MEDIAQ_PAGE_URL", api.url("/admin"))
        .env("MEDIAQ_ADMIN_KEY", &admin_key)
        .env("MEDIAQ_USER_KEY", &api.key)
        .env("MEDIAQ_RETRY_JOB", &retry)
        .env("MEDIAQ_OUT", &out)
        .env("MEDIAQ_CHROMIUM", chromium())
        .output()
        .expect("run node (scripts/test.sh installs nodejs)");
    let observations = std::fs::read_to_string(out.join("observations.json")).unwrap_or_default();
    assert!(
        output.status.success(),
        "admin scenario failed:\nstdout: {}\nstderr: {}\nobservations: {observations}\nscreenshots: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        out.display()
    );
    // The page's Retry did it, as the admin key, and the job converts on its second attempt.
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE job_id = $1::uuid AND action = 'job.retried'")
            .bind(&retry)
            .fetch_one(env.pool())
            .await
            .unwrap();
    let admin_id = &admin_key["mq_".len().."mq_".len() + 16];
    assert_eq!(actor, format!("key:{admin_id}"));
    let (_, job) = api.wait_terminal(&retry, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
}

/// The numbers the page shows, from the routes themselves: exact for the seeded jobs.
async fn check_routes(api: &Api, admin_key: &str, ids: &[String], size: usize) {
    let admin = client_with_key(admin_key);
    let get = |path: &str| {
        let (admin, url) = (admin.clone(), api.url(path));
        async move {
            let resp = admin.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let failed = ids.iter().filter(|id| injected_failures(id) > 0).count() as i64;
    let succeeded = ids.len() as i64 - failed;
    for path in
        ["/v1/admin/series", "/v1/admin/failures", "/v1/admin/dead-letters", "/v1/admin/workers", "/v1/admin/tenants"]
    {
        let resp = api.client.get(api.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path} refuses a key without the admin scope");
    }
    let series = get("/v1/admin/series").await;
    let buckets = series["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60, "{series}");
    let sum = |field: &str| buckets.iter().map(|b| b[field].as_f64().unwrap()).sum::<f64>();
    assert_eq!(sum("succeeded_per_min"), succeeded as f64, "{series}");
    assert_eq!(sum("failed_per_min"), failed as f64, "{series}");
    assert_eq!(sum("started_per_min"), ids.len() as f64, "{series}");
    assert_eq!(buckets.last().unwrap()["queue_depth"], 0, "{series}");
    assert!(buckets.iter().any(|b| b["media_s_per_cpu_s"].as_f64().is_some_and(|s| s > 0.0)), "{series}");
    assert!(buckets.iter().any(|b| b["wait_p95_s"].as_f64().is_some_and(|w| w >= 0.0)), "{series}");
    let day = get("/v1/admin/series?window=day").await;
    assert_eq!(day["buckets"].as_array().unwrap().len(), 96);
    let failures = get("/v1/admin/failures").await;
    let groups = failures["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{failures}");
    assert_eq!(groups[0]["code"], "transcoder_crashed");
    assert_eq!(groups[0]["count"], failed);
    assert_eq!(groups[0]["latest"].as_array().unwrap().len() as i64, failed.min(3));
    let dead = get("/v1/admin/dead-letters").await;
    assert_eq!(dead["total"], failed, "{dead}");
    assert!(dead["dead_letters"].as_array().unwrap().iter().all(|d| d["input_stored"] == true), "{dead}");
    let workers = get("/v1/admin/workers").await;
    let list = workers["workers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{workers}");
    assert_eq!(list[0]["sandbox"]["seccomp"], true, "{workers}");
    assert_eq!(list[0]["sandbox_missing"], serde_json::json!([]), "{workers}");
    assert_eq!(list[0]["attempts"], serde_json::json!([]), "{workers}");
    let tenants = get("/v1/admin/tenants").await;
    let tester = tenants["tenants"].as_array().unwrap().iter().find(|t| t["owner"] == "tester").expect("the uploader");
    assert_eq!(tester["bytes_24h"], (size * ids.len()) as i64, "{tenants}");
    assert_eq!(tester["active_jobs"], 0, "{tenants}");
    let resp = admin.get(api.url("/v1/admin/series?window=week")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
