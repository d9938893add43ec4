//! The queue contract between API and worker: two apalis-postgres queues (the lanes) of
//! [`TranscodeTask`]s, in a fair order across tenants ([`crate::db::fair`]).
//!
//! The task carries only the job id; the job row is the source of truth for everything else.

use apalis::prelude::{TaskBuilder, TaskId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::{db::fair, JobId, JobStatus};

/// The apalis queue (`apalis.jobs.job_type`) of the CPU lane: inputs that are whole.
pub const QUEUE: &str = "mediaq.transcode";
/// The apalis queue of the live lane: resumable uploads converted while they arrive.
pub const LIVE_QUEUE: &str = "mediaq.transcode.live";

/// Where a job waits for a worker: each lane has slots of its own in every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// A whole input (a stored file, a complete upload): CPU-bound work.
    Cpu,
    /// A resumable upload still arriving: its child mostly waits for bytes.
    Live,
}

impl Lane {
    /// The lane of a job about to be queued: `receiving` (its upload unfinished) is live.
    pub fn for_status(status: JobStatus) -> Self {
        if status == JobStatus::Receiving {
            Lane::Live
        } else {
            Lane::Cpu
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Cpu => "cpu",
            Lane::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Lane::Cpu),
            "live" => Some(Lane::Live),
            _ => None,
        }
    }

    /// The apalis queue that carries this lane's tasks.
    pub fn queue(self) -> &'static str {
        match self {
            Lane::Cpu => QUEUE,
            Lane::Live => LIVE_QUEUE,
        }
    }
}

/// apalis' own retry budget per task. mediaq decides retries itself (the job row counts attempts),
/// so the task is handed to a handler as often as the database lets it.
const TASK_MAX_ATTEMPTS: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscodeTask {
    pub job_id: JobId,
}

/// Queues job `id` in `lane` (at `run_at`, or now) on the caller's transaction: it becomes
/// visible (and NOTIFY fires) only when the caller commits, together with the job row. A job
/// placed for the first time (or again after waiting for bytes, or an operator's requeue) gets
/// a fair tag ([`fair::place`]); a retry or a hand-back keeps its place. apalis' own error stays
/// inside: callers see a database error like any other query's.
pub async fn enqueue(
    conn: &mut PgConnection,
    id: JobId,
    lane: Lane,
    run_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let keep_place = run_at.is_some() || fair::has_tag(&mut *conn, id).await?;
    enqueue_placed(conn, id, lane, run_at, keep_place).await
}

/// [`enqueue`], with a fresh place in line unless `keep_place`.
pub async fn enqueue_placed(
    conn: &mut PgConnection,
    id: JobId,
    lane: Lane,
    run_at: Option<DateTime<Utc>>,
    keep_place: bool,
) -> Result<(), sqlx::Error> {
    let tag = fair::place(&mut *conn, id, lane, keep_place).await?;
    let args = serde_json::to_vec(&TranscodeTask { job_id: id }).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let task_id = ulid::Ulid::generate();
    let mut builder = TaskBuilder::new(args)
        .task_id(TaskId::from_ulid(task_id))
        .max_attempts(TASK_MAX_ATTEMPTS)
        .priority(fair::apalis_priority(tag));
    if let Some(at) = run_at {
        builder = builder.run_at_time(std::time::SystemTime::from(at));
    }
    apalis_postgres::queries::push_tasks(&mut *conn, lane.queue(), vec![builder.build()]).await.map_err(
        |e| match e {
            apalis_postgres::Error::Database(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        },
    )?;
    fair::set_task(conn, id, &task_id.to_string()).await
}
