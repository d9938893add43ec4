//! The bodies of the operators' dashboard routes (`GET /v1/admin/series`, `failures`,
//! `dead-letters`, `workers`, `tenants`): what the `/admin` page shows, for scripts too. They
//! restate `mediaq_shared::db::dashboard`'s structs, which the handlers serialize.

#![allow(dead_code)]

use utoipa::ToSchema;

/// The span a dashboard route looks back over.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
}

/// One bucket of the queue's history.
#[derive(ToSchema)]
pub struct SeriesBucket {
    /// The bucket's start.
    #[schema(format = DateTime)]
    pub t: String,
    /// Jobs waiting at the bucket's end (created, not started, not ended).
    pub queue_depth: i64,
    pub started_per_min: f64,
    pub succeeded_per_min: f64,
    pub failed_per_min: f64,
    /// Seconds from upload to the first attempt's start (first attempts started in the bucket).
    pub wait_p50_s: Option<f64>,
    pub wait_p95_s: Option<f64>,
    /// Media seconds converted per CPU second (attempts that succeeded in the bucket).
    pub media_s_per_cpu_s: Option<f64>,
}

/// The queue over the last hour (60 one-minute buckets) or day (96 of 15 minutes), oldest first.
#[derive(ToSchema)]
pub struct Series {
    /// `hour` or `day`.
    pub window: String,
    pub step_s: i64,
    pub buckets: Vec<SeriesBucket>,
}

#[derive(ToSchema)]
pub struct FailureExample {
    #[schema(format = "uuid")]
    pub id: String,
    pub owner: String,
    pub filename: String,
    pub message: Option<String>,
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

#[derive(ToSchema)]
pub struct FailureGroup {
    pub code: String,
    pub count: i64,
    /// The latest few, newest first.
    pub latest: Vec<FailureExample>,
}

/// Jobs that failed in the window, by code, most frequent first.
#[derive(ToSchema)]
pub struct Failures {
    pub window: String,
    pub groups: Vec<FailureGroup>,
}

/// A failed job that used up its attempts.
#[derive(ToSchema)]
pub struct DeadLetter {
    #[schema(format = "uuid")]
    pub id: String,
    pub owner: String,
    pub filename: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub last_worker: Option<String>,
    pub last_exit_status: Option<String>,
    /// Whether its input is still stored (`POST /v1/jobs/{id}/retry` needs it).
    pub input_stored: bool,
}

#[derive(ToSchema)]
pub struct DeadLetters {
    /// Newest first.
    pub dead_letters: Vec<DeadLetter>,
    /// All of them (the list holds at most `limit`).
    pub total: i64,
}

/// An attempt a worker runs now.
#[derive(ToSchema)]
pub struct RunningAttempt {
    #[schema(format = "uuid")]
    pub job_id: String,
    pub attempt: i32,
    #[schema(format = DateTime)]
    pub started_at: String,
    /// 0..1
    pub progress: f64,
    pub owner: String,
}

/// A live worker process (it beat within its last three heartbeats).
#[derive(ToSchema)]
pub struct LiveWorker {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub concurrency: i32,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// The start-up self-check's layer report: `namespaces`, `unprivileged_user`, and the child's
    /// layers (`landlock_abi`, `seccomp`, `no_new_privs`, ...).
    #[schema(value_type = Object)]
    pub sandbox: serde_json::Value,
    /// Layers strict mode requires that it lacks (empty when fully sandboxed).
    pub sandbox_missing: Vec<String>,
    pub attempts: Vec<RunningAttempt>,
}

#[derive(ToSchema)]
pub struct Workers {
    pub workers: Vec<LiveWorker>,
}

/// One API key's use against its quotas.
#[derive(ToSchema)]
pub struct TenantUsage {
    pub key_id: String,
    pub name: String,
    pub owner: String,
    pub active_jobs: i64,
    pub bytes_24h: i64,
    pub live_uploads: i64,
}

#[derive(ToSchema)]
pub struct Tenants {
    /// `MEDIAQ_QUOTA_ACTIVE_JOBS`
    pub quota_active_jobs: i64,
    /// `MEDIAQ_QUOTA_DAILY_BYTES`
    pub quota_daily_bytes: u64,
    /// Keys not revoked or with jobs in the last day, busiest first.
    pub tenants: Vec<TenantUsage>,
}
