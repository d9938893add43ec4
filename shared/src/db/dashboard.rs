//! What the operators' dashboard shows (`/admin`, through the `GET /v1/admin/...` routes), from
//! what PostgreSQL already holds: the queue over time, failures by code, dead letters, live
//! workers with their sandbox layers and attempts, and each key's use against its quotas.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One bucket of the queue's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bucket {
    /// The bucket's start.
    pub t: DateTime<Utc>,
    /// Jobs waiting at the bucket's end: created, not started, not ended.
    pub queue_depth: i64,
    /// Attempts started, per minute.
    pub started_per_min: f64,
    /// Jobs that ended `succeeded`, per minute.
    pub succeeded_per_min: f64,
    /// Jobs that ended `failed`, per minute.
    pub failed_per_min: f64,
    /// Seconds from upload to the first attempt's start, of first attempts started in the bucket.
    pub wait_p50_s: Option<f64>,
    pub wait_p95_s: Option<f64>,
    /// Media seconds converted per CPU second, over the attempts that succeeded in the bucket.
    pub media_s_per_cpu_s: Option<f64>,
}

/// The queue's history over `span`, in buckets of `step` (both whole minutes), oldest first; the
/// last bucket is the current minute's.
pub async fn series(pool: &PgPool, span_min: i32, step_min: i32) -> Result<Vec<Bucket>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH b AS (
             SELECT t, t + make_interval(mins => $2::int4) AS t_end
               FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1::int4 - $2::int4),
                                    date_trunc('minute', now()), make_interval(mins => $2::int4)) AS t
           )
           SELECT b.t AS "t!",
             (SELECT count(*) FROM jobs j
               WHERE j.created_at < b.t_end AND (coalesce(j.started_at, j.finished_at) IS NULL
                                                OR coalesce(j.started_at, j.finished_at) >= b.t_end)) AS "queue_depth!",
             (SELECT count(*) FROM job_attempts a WHERE a.started_at >= b.t AND a.started_at < b.t_end) AS "started!",
             (SELECT count(*) FROM jobs j WHERE j.status = 'succeeded' AND j.finished_at >= b.t AND j.finished_at < b.t_end) AS "succeeded!",
             (SELECT count(*) FROM jobs j WHERE j.status = 'failed' AND j.finished_at >= b.t AND j.finished_at < b.t_end) AS "failed!",
             w.p50 AS wait_p50_s, w.p95 AS wait_p95_s, s.speed AS media_s_per_cpu_s
           FROM b
           LEFT JOIN LATERAL (
             SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM a.started_at - j.created_at)::float8) AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM a.started_at - j.created_at)::float8) AS p95
               FROM job_attempts a JOIN jobs j ON j.id = a.job_id
              WHERE a.attempt = 1 AND a.started_at >= b.t AND a.started_at < b.t_end
           ) w ON true
           LEFT JOIN LATERAL (
             SELECT sum(j.output_duration_s) / nullif(sum(a.user_cpu_s + a.system_cpu_s), 0) AS speed
               FROM job_attempts a JOIN jobs j ON j.id = a.job_id
              WHERE a.outcome = 'succeeded' AND a.finished_at >= b.t AND a.finished_at < b.t_end
           ) s ON true
           ORDER BY b.t"#,
        span_min,
        step_min,
    )
    .fetch_all(pool)
    .await?;
    let per_min = |n: i64| n as f64 / f64::from(step_min);
    Ok(rows
        .into_iter()
        .map(|r| Bucket {
            t: r.t,
            queue_depth: r.queue_depth,
            started_per_min: per_min(r.started),
            succeeded_per_min: per_min(r.succeeded),
            failed_per_min: per_min(r.failed),
            wait_p50_s: r.wait_p50_s,
            wait_p95_s: r.wait_p95_s,
            media_s_per_cpu_s: r.media_s_per_cpu_s,
        })
        .collect())
}

/// Failed jobs of one failure code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureGroup {
    pub code: String,
    pub count: i64,
    /// The latest few, newest first.
    pub latest: Vec<FailureExample>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureExample {
    pub id: Uuid,
    pub owner: String,
    pub filename: String,
    pub message: Option<String>,
    pub attempts: i32,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Jobs that failed within the last `span_min` minutes, by code (most frequent first), each
/// with its `examples` latest jobs.
pub async fn failures(pool: &PgPool, span_min: i32, examples: i64) -> Result<Vec<FailureGroup>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT code AS "code!", total AS "total!", id AS "id!", owner AS "owner!", input_filename AS "filename!",
                  error_message, attempts AS "attempts!", finished_at
             FROM (SELECT coalesce(error_code, 'unknown') AS code, id, owner, input_filename, error_message, attempts,
                          finished_at,
                          count(*) OVER (PARTITION BY coalesce(error_code, 'unknown')) AS total,
                          row_number() OVER (PARTITION BY coalesce(error_code, 'unknown')
                                             ORDER BY finished_at DESC NULLS LAST, id) AS n
                     FROM jobs
                    WHERE status = 'failed' AND finished_at > now() - make_interval(mins => $1)) f
            WHERE n <= $2
            ORDER BY total DESC, code, n"#,
        span_min,
        examples,
    )
    .fetch_all(pool)
    .await?;
    let mut groups: Vec<FailureGroup> = Vec::new();
    for r in rows {
        let example = FailureExample {
            id: r.id,
            owner: r.owner,
            filename: r.filename,
            message: r.error_message,
            attempts: r.attempts,
            finished_at: r.finished_at,
        };
        match groups.last_mut() {
            Some(g) if g.code == r.code => g.latest.push(example),
            _ => groups.push(FailureGroup { code: r.code, count: r.total, latest: vec![example] }),
        }
    }
    Ok(groups)
}

/// A failed job that used up its attempts (the `dead_letter_jobs` view).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub owner: String,
    pub filename: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_worker: Option<String>,
    pub last_exit_status: Option<String>,
    /// Whether its input is still stored (a retry needs it).
    pub input_stored: bool,
}

/// The newest `limit` dead letters.
pub async fn dead_letters(pool: &PgPool, limit: i64) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as!(
        DeadLetter,
        r#"SELECT d.id AS "id!", j.owner, d.input_filename AS "filename!", d.error_code, d.error_message,
                  d.attempts AS "attempts!", d.created_at AS "created_at!", d.finished_at, d.last_worker,
                  d.last_exit_status, j.files_deleted_at IS NULL AS "input_stored!"
             FROM dead_letter_jobs d JOIN jobs j ON j.id = d.id
            ORDER BY d.finished_at DESC NULLS LAST, d.id
            LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// A live worker process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveWorker {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub concurrency: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The layer report of its start-up self-check.
    pub sandbox: serde_json::Value,
    pub sandbox_missing: Vec<String>,
    /// Its attempts running now: `{job_id, attempt, started_at, progress, owner}`.
    pub attempts: serde_json::Value,
}

/// Worker processes that beat within their last three heartbeats and did not stop.
pub async fn workers(pool: &PgPool) -> Result<Vec<LiveWorker>, sqlx::Error> {
    sqlx::query_as!(
        LiveWorker,
        r#"SELECT w.name, w.host, w.pid, w.version, w.concurrency, w.started_at, w.last_seen, w.sandbox,
                  w.sandbox_missing,
                  coalesce((SELECT jsonb_agg(jsonb_build_object('job_id', a.job_id, 'attempt', a.attempt,
                                     'started_at', a.started_at, 'progress', j.progress, 'owner', j.owner)
                                     ORDER BY a.started_at)
                              FROM job_attempts a JOIN jobs j ON j.id = a.job_id
                             WHERE a.finished_at IS NULL AND j.status = 'processing'
                               AND (a.worker = w.name OR a.worker LIKE w.name || '-%')), '[]'::jsonb) AS "attempts!"
             FROM worker_processes w
            WHERE w.stopped_at IS NULL AND w.last_seen > now() - make_interval(secs => 3 * w.heartbeat_s)
            ORDER BY w.started_at, w.name"#,
    )
    .fetch_all(pool)
    .await
}

/// One API key's use: what its quotas count, and its uploads in progress.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantUsage {
    pub key_id: String,
    pub name: String,
    pub owner: String,
    /// Unfinished jobs (`queued`, `processing`), as `MEDIAQ_QUOTA_ACTIVE_JOBS` counts them.
    pub active_jobs: i64,
    /// Bytes uploaded in the last 24 hours, as `MEDIAQ_QUOTA_DAILY_BYTES` counts them.
    pub bytes_24h: i64,
    /// Resumable uploads still receiving bytes.
    pub live_uploads: i64,
}

/// Every key that is not revoked or made jobs in the last day, busiest first.
pub async fn tenants(pool: &PgPool) -> Result<Vec<TenantUsage>, sqlx::Error> {
    sqlx::query_as!(
        TenantUsage,
        r#"SELECT k.id AS key_id, k.name, k.owner,
                  count(j.id) FILTER (WHERE j.status IN ('queued', 'processing')) AS "active_jobs!",
                  coalesce(sum(j.input_size) FILTER (WHERE j.created_at > now() - interval '1 day'), 0)::bigint AS "bytes_24h!",
                  count(u.job_id) AS "live_uploads!"
             FROM api_keys k
             LEFT JOIN jobs j ON j.api_key_id = k.id
                             AND (j.status IN ('receiving', 'queued', 'processing') OR j.created_at > now() - interval '1 day')
             LEFT JOIN uploads u ON u.job_id = j.id AND u.completed_at IS NULL
                                AND j.status IN ('receiving', 'queued', 'processing')
            GROUP BY k.id
           HAVING k.revoked_at IS NULL OR count(j.id) > 0
            ORDER BY 5 DESC, 4 DESC, k.id"#,
    )
    .fetch_all(pool)
    .await
}

/// How many dead letters there are.
pub async fn dead_letter_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM dead_letter_jobs"#).fetch_one(pool).await
}
