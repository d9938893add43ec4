//! The queue contract between API and worker: one apalis-postgres queue of [`TranscodeTask`]s.
//!
//! The task carries only the job id; the job row is the source of truth for everything else.

use apalis::prelude::{TaskBuilder, TaskId};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::JobId;

/// The apalis queue (`apalis.jobs.job_type`) both sides use.
pub const QUEUE: &str = "mediaq.transcode";

/// apalis' own retry budget per task. mediaq decides retries itself (the job row counts attempts),
/// so the task is handed to a handler as often as the database lets it.
const TASK_MAX_ATTEMPTS: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscodeTask {
    pub job_id: JobId,
}

/// Enqueues a task on the caller's transaction: it becomes visible (and NOTIFY fires) only when
/// the caller commits, together with the job row. apalis' own error stays inside: callers see a
/// database error like any other query's.
pub async fn enqueue(
    conn: &mut PgConnection,
    task: TranscodeTask,
    run_at: Option<std::time::SystemTime>,
) -> Result<(), sqlx::Error> {
    let args = serde_json::to_vec(&task).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut builder =
        TaskBuilder::new(args).task_id(TaskId::from_ulid(ulid::Ulid::generate())).max_attempts(TASK_MAX_ATTEMPTS);
    if let Some(at) = run_at {
        builder = builder.run_at_time(at);
    }
    apalis_postgres::queries::push_tasks(conn, QUEUE, vec![builder.build()]).await.map_err(|e| match e {
        apalis_postgres::Error::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })
}
