//! The API holds to its OpenAPI document under generated input: schemathesis, driven by
//! `/openapi.json`, sends valid and invalid requests with an admin key for a bounded time
//! (MEDIAQ_FUZZ_SECONDS, default 90; scripts/fuzz-api.sh runs longer; MEDIAQ_FUZZ_SEED, default
//! 18, picks another generator seed): no 5xx but documented
//! 503s, every status, header and body as documented. Afterwards every job is terminal and
//! storage holds only the files of live jobs.

use std::time::Duration;

use mediaq_e2e::{files_under, fuzz, services::create_key, TestEnv};

#[tokio::test]
async fn the_api_holds_to_its_document_under_generated_input() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let key = create_key(&env.database_url, "fuzz", "jobs:write,jobs:read,admin", "fuzz");
    let seconds = std::env::var("MEDIAQ_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let reports = tempfile::tempdir().unwrap();
    let run = fuzz::schemathesis(&api.base_url, &key, seconds, reports.path()).await;
    println!("{}", run.output);
    assert!(run.success, "schemathesis found failures:\n{}", run.output);

    // Every job the fuzzer made has reached a terminal status (the worker ran them), but for
    // resumable uploads it left unfinished: those wait for their bytes until they expire.
    mediaq_e2e::wait_for(Duration::from_secs(120), "every job terminal", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'processing')
               AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.job_id = jobs.id AND u.completed_at IS NULL)",
        )
        .fetch_one(env.pool())
        .await
        .unwrap();
        (open == 0).then_some(())
    })
    .await;
    // Storage holds only live jobs' files, nothing half-written.
    let live: Vec<String> = sqlx::query_scalar("SELECT id::text FROM jobs WHERE files_deleted_at IS NULL")
        .fetch_all(env.pool())
        .await
        .unwrap();
    let tmp = files_under(&env.storage_dir().join("tmp"));
    assert!(tmp.iter().all(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".ready-"))), "{tmp:?}");
    for dir in ["inputs", "outputs", "uploads"] {
        for file in files_under(&env.storage_dir().join(dir)) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(live.iter().any(|id| name.starts_with(id.as_str())), "stray file {}", file.display());
        }
    }
}
