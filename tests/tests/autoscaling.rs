//! Autoscaling (deploy/k8s, docs/DEPLOY.md "Kubernetes"): the figure the workers scale on, and a
//! scale-in that loses nothing.
//!
//! The figure is the view `mediaq_worker_demand` (migrations/20261208300001_queue_depth.sql):
//! KEDA's trigger query, read from deploy/k8s as KEDA runs it, against a database holding jobs in
//! every state, and the API's `mediaq_worker_demand` gauge (what an HPA reads through
//! prometheus-adapter). The states no API call can make without a worker (processing, retries,
//! hand-backs) are seeded as rows; the rest comes through the real API: a whole upload (queued), a
//! live upload with stored bytes (receiving, task queued) and one created without bytes.

use std::{path::Path, time::Duration};

use mediaq_e2e::{fixtures, live::TusUpload, transcoders_of, wait_for, TestEnv};
use mediaq_shared::db::stats::{worker_demand, WorkerDemand};
use sqlx::PgPool;

/// The trigger's query as deploy/k8s/components/keda/scaledobject.yaml gives it to KEDA.
fn keda_query() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/components/keda/scaledobject.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let queries: Vec<&str> =
        text.lines().filter_map(|l| l.trim().strip_prefix("query:")).map(|q| q.trim().trim_matches('"')).collect();
    assert_eq!(queries.len(), 1, "one trigger query in {}: {queries:?}", path.display());
    queries[0].to_owned()
}

/// A job row in `status`; `next_attempt` seconds from now (None: never scheduled); `received`
/// makes it a resumable upload with that many bytes stored.
async fn seed(pool: &PgPool, status: &str, next_attempt: Option<i64>, received: Option<i64>) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO jobs (id, status, attempts, input_filename, input_size, input_content_type, input_key,
                           next_attempt_at, owner)
         VALUES ($1, $2, CASE WHEN $3::bigint IS NULL THEN 0 ELSE 1 END, 'clip.webm', 1000, 'video/webm',
                 'inputs/' || $1 || '.webm', now() + make_interval(secs => $3::bigint), 'tester')",
    )
    .bind(id)
    .bind(status)
    .bind(next_attempt)
    .execute(pool)
    .await
    .unwrap();
    if let Some(received) = received {
        sqlx::query("INSERT INTO uploads (job_id, received, expires_at) VALUES ($1, $2, now() + interval '1 day')")
            .bind(id)
            .bind(received)
            .execute(pool)
            .await
            .unwrap();
    }
    id
}

async fn keda_value(pool: &PgPool, query: &str) -> i64 {
    // KEDA reads one number from the first row's first column.
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.to_owned())).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn the_trigger_query_counts_what_wants_a_worker() {
    let env = TestEnv::new().await;
    let pool = env.pool();
    let query = keda_query();
    assert_eq!(query, "SELECT demand FROM mediaq_worker_demand");
    assert_eq!(keda_value(pool, &query).await, 0, "an empty queue wants no worker");

    let api = env.api().await;
    let webm = fixtures::bytes(&fixtures::VP8_VORBIS);
    // Through the API: a whole upload (queued, due), a live upload with its first bytes stored
    // (receiving, its task queued), one created that has sent nothing (no task yet).
    let resp = api.upload(webm.clone(), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    let mut live = TusUpload::create(&api, None).await;
    live.append(&webm[..webm.len() / 2]).await;
    let _silent = TusUpload::create(&api, None).await;

    // Seeded: what workers would have made.
    seed(pool, "queued", Some(-1), None).await; // handed back on SIGTERM: due at once
    seed(pool, "queued", Some(-30), None).await; // a retry whose backoff is over
    let later = seed(pool, "queued", Some(600), None).await; // a retry in 10 minutes
    seed(pool, "queued", Some(90), None).await; // another
    seed(pool, "receiving", Some(-1), Some(4096)).await; // a live upload handed back
    seed(pool, "receiving", Some(300), Some(4096)).await; // a live upload's retry, later
    let busy = seed(pool, "processing", None, None).await;
    seed(pool, "processing", None, Some(8192)).await; // a live upload being converted
    for finished in ["succeeded", "failed", "canceled", "expired"] {
        seed(pool, finished, None, None).await;
    }

    let want =
        WorkerDemand { due: 3, live_uploads: 2, running: 2, retries_later: 3, uploads_without_bytes: 1, demand: 7 };
    assert_eq!(worker_demand(pool).await.unwrap(), want);
    assert_eq!(keda_value(pool, &query).await, 7, "KEDA's figure is the view's demand");

    // The figure follows the queue: a retry comes due, a busy worker finishes.
    sqlx::query("UPDATE jobs SET next_attempt_at = now() - interval '1 second' WHERE id = $1")
        .bind(later)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = $1")
        .bind(busy)
        .execute(pool)
        .await
        .unwrap();
    let now = worker_demand(pool).await.unwrap();
    assert_eq!((now.due, now.running, now.retries_later, now.demand), (4, 1, 2, 7), "{now:?}");

    // The completed live upload becomes an ordinary queued job: still one slot wanted.
    live.append_last(&webm[webm.len() / 2..]).await;
    let now = worker_demand(pool).await.unwrap();
    assert_eq!((now.due, now.live_uploads, now.demand), (5, 1, 7), "{now:?}");

    // The API serves the same figure on /metrics (for an HPA through prometheus-adapter).
    let text = reqwest::get(api.url("/metrics")).await.unwrap().text().await.unwrap();
    let gauge: Vec<&str> = text.lines().filter(|l| l.starts_with("mediaq_worker_demand ")).collect();
    assert_eq!(gauge, ["mediaq_worker_demand 7"], "{text}");
}

/// A scale-in is a SIGTERM to a worker that may be mid-job. Here the job is a live upload whose
/// second half has not been sent, so its attempt cannot end within the grace on any machine: the
/// worker must wait out MEDIAQ_SHUTDOWN_GRACE, hand the attempt back (the job waits as
/// `receiving`, still counted as wanting a worker), exit 0; another worker finishes it once the
/// rest arrives. (scripts/containers/e2e.py's scale-in check does the same to a container.)
#[tokio::test]
async fn a_scale_in_hands_back_a_live_attempt_whatever_the_speed() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let mut worker = env.worker_with(&[("MEDIAQ_SHUTDOWN_GRACE", "1s")]).await;
    let webm = fixtures::bytes(&fixtures::BENCH_CLIP);
    let half = webm.len() / 2;
    let mut upload = TusUpload::create(&api, None).await;
    upload.append(&webm[..half]).await;
    let id = upload.id.clone();
    wait_for(Duration::from_secs(60), "the transcoder to start", || {
        let running = !transcoders_of(&id).is_empty();
        async move { running.then_some(()) }
    })
    .await;
    assert_eq!(worker_demand(env.pool()).await.unwrap().running, 1);

    let signalled = std::time::Instant::now();
    worker.service.signal(libc::SIGTERM);
    let status = worker.service.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{}", worker.service.log_text());
    assert!(signalled.elapsed() >= Duration::from_secs(1), "exited before its grace ended: the attempt could not have");
    assert!(transcoders_of(&id).is_empty(), "no transcoder outlives its worker");
    let job = api.job(&id).await;
    assert_eq!(job["status"], "receiving", "handed back to wait for its bytes: {job}");
    assert_eq!(job["attempt_history"][0]["outcome"], "interrupted", "{job}");
    let demand = worker_demand(env.pool()).await.unwrap();
    assert_eq!((demand.live_uploads, demand.running, demand.demand), (1, 0, 1), "{demand:?}");

    let _next = env.worker().await;
    upload.append_last(&webm[half..]).await;
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
}
