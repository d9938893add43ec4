//! Queue statistics for operators (`GET /v1/admin/stats`) and for the API's `/metrics`: cheap
//! aggregate queries (the status counts use `jobs_status_created_idx`).

use sqlx::PgPool;

use crate::queue::QUEUE;

/// Every job status, so that gauges read 0 rather than vanish when no job has it.
pub const JOB_STATUSES: [&str; 6] = ["queued", "processing", "succeeded", "failed", "canceled", "expired"];
/// Every circuit-breaker state of a webhook endpoint.
pub const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// Jobs per status (only statuses that have jobs).
    pub jobs_by_status: Vec<(String, i64)>,
    /// Seconds since the oldest queued job was created (None when nothing is queued).
    pub oldest_queued_age_s: Option<f64>,
    /// Seconds the oldest job that is due (not waiting for a retry's backoff) has waited to be claimed.
    pub oldest_due_age_s: Option<f64>,
    /// Tasks of our queue that apalis holds as pending (ready or scheduled).
    pub pending_tasks: i64,
    /// Failed jobs that used up their retry budget (the `dead_letter_jobs` view).
    pub dead_letters: i64,
    /// Live webhook endpoints per breaker state (only states that have endpoints).
    pub webhook_endpoints: Vec<(String, i64)>,
    /// Worker slots wanted now (the `mediaq_worker_demand` view that autoscalers read).
    pub worker_demand: i64,
    /// Worker processes that beat within their last three heartbeats (`worker_processes`).
    pub workers_alive: i64,
}

impl QueueStats {
    /// Jobs with `status`, 0 when none.
    pub fn jobs(&self, status: &str) -> i64 {
        self.jobs_by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n)
    }

    /// Endpoints in breaker `state`, 0 when none.
    pub fn endpoints(&self, state: &str) -> i64 {
        self.webhook_endpoints.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n)
    }
}

pub async fn queue_stats(pool: &PgPool) -> Result<QueueStats, sqlx::Error> {
    let jobs_by_status =
        sqlx::query!(r#"SELECT status, count(*) AS "count!" FROM jobs GROUP BY status ORDER BY status"#)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.status, r.count))
            .collect();
    let ages = sqlx::query!(
        "SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_queued,
                EXTRACT(EPOCH FROM now() - min(coalesce(next_attempt_at, created_at))
                    FILTER (WHERE coalesce(next_attempt_at, created_at) <= now()))::float8 AS oldest_due
           FROM jobs WHERE status = 'queued'",
    )
    .fetch_one(pool)
    .await?;
    let pending_tasks = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending'"#,
        QUEUE,
    )
    .fetch_one(pool)
    .await?;
    let dead_letters =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM dead_letter_jobs"#).fetch_one(pool).await?;
    let webhook_endpoints = sqlx::query!(
        r#"SELECT breaker_state, count(*) AS "count!" FROM webhook_endpoints WHERE deleted_at IS NULL
            GROUP BY 1 ORDER BY 1"#,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.breaker_state, r.count))
    .collect();
    let worker_demand = worker_demand(pool).await?.demand;
    let workers_alive = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM worker_processes
            WHERE stopped_at IS NULL AND last_seen > now() - make_interval(secs => 3 * heartbeat_s)"#,
    )
    .fetch_one(pool)
    .await?;
    Ok(QueueStats {
        jobs_by_status,
        workers_alive,
        oldest_queued_age_s: ages.oldest_queued,
        oldest_due_age_s: ages.oldest_due,
        pending_tasks,
        dead_letters,
        webhook_endpoints,
        worker_demand,
    })
}

/// The work that wants a worker, as autoscalers see it: the view `mediaq_worker_demand`
/// (migrations/20261208300001_queue_depth.sql documents each column; KEDA's trigger in
/// deploy/k8s/components/keda runs `SELECT demand FROM mediaq_worker_demand` itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerDemand {
    /// Queued jobs claimable now: new, handed back, retries past their backoff.
    pub due: i64,
    /// Resumable uploads still arriving with stored bytes (converted while they arrive).
    pub live_uploads: i64,
    /// Jobs being converted.
    pub running: i64,
    /// Retries still waiting out their backoff (not in `demand`).
    pub retries_later: i64,
    /// Uploads that have stored no byte yet (not in `demand`).
    pub uploads_without_bytes: i64,
    /// `due + live_uploads + running`.
    pub demand: i64,
}

pub async fn worker_demand(pool: &PgPool) -> Result<WorkerDemand, sqlx::Error> {
    sqlx::query_as!(
        WorkerDemand,
        r#"SELECT due AS "due!", live_uploads AS "live_uploads!", running AS "running!",
                  retries_later AS "retries_later!", uploads_without_bytes AS "uploads_without_bytes!",
                  demand AS "demand!"
             FROM mediaq_worker_demand"#,
    )
    .fetch_one(pool)
    .await
}
