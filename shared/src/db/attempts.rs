//! The `job_attempts` table: one row per attempt, with its exit cause and resource usage.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::JobId;

/// How an attempt ended and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub exit_status: Option<String>,
    pub wall_s: Option<f64>,
    pub user_cpu_s: Option<f64>,
    pub system_cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
}

/// The measured end of an attempt.
#[derive(Debug, Clone)]
pub struct AttemptEnd<'a> {
    pub outcome: &'a str,
    pub error_code: Option<&'a str>,
    pub exit_status: &'a str,
    pub wall_s: f64,
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
    pub peak_rss_bytes: u64,
}

/// Records a new attempt. Earlier attempts that never finished (their worker died) are closed as
/// `failed` with `worker_crashed`.
impl<'a> AttemptEnd<'a> {
    /// An attempt that ended without running the child (nothing measured).
    pub fn unmeasured(outcome: &'a str, error_code: Option<&'a str>, exit_status: &'a str) -> Self {
        Self { outcome, error_code, exit_status, wall_s: 0.0, user_cpu_s: 0.0, system_cpu_s: 0.0, peak_rss_bytes: 0 }
    }
}

pub async fn start(conn: &mut sqlx::PgConnection, id: JobId, attempt: i32, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE job_attempts SET finished_at = now(), outcome = 'failed', error_code = $3,
                exit_status = 'worker lost'
         WHERE job_id = $1 AND attempt < $2 AND finished_at IS NULL",
        id.as_uuid(),
        attempt,
        crate::FailureCode::WorkerCrashed.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)
         ON CONFLICT (job_id, attempt) DO NOTHING",
        id.as_uuid(),
        attempt,
        worker,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn finish<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    attempt: i32,
    end: &AttemptEnd<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE job_attempts SET finished_at = now(), outcome = $3, error_code = $4, exit_status = $5,
                wall_s = $6, user_cpu_s = $7, system_cpu_s = $8, peak_rss_bytes = $9
         WHERE job_id = $1 AND attempt = $2",
        id.as_uuid(),
        attempt,
        end.outcome,
        end.error_code,
        end.exit_status,
        end.wall_s,
        end.user_cpu_s,
        end.system_cpu_s,
        end.peak_rss_bytes as i64,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Vec<AttemptRecord>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRecord,
        "SELECT attempt, worker, started_at, finished_at, outcome, error_code, exit_status,
                wall_s, user_cpu_s, system_cpu_s, peak_rss_bytes
         FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
        id.as_uuid(),
    )
    .fetch_all(db)
    .await
}
