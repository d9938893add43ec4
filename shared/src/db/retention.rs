//! The janitor's queries: one sweep at a time across workers (a session advisory lock), jobs
//! whose files are past retention, stored keys still referenced, and queue rows past pruning.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{queue::QUEUE, JobId};

/// The advisory lock that makes one janitor sweep at a time, whichever worker runs it.
const SWEEP_LOCK: i64 = 0x6d65_6469_6171_6a61;

/// Takes the sweep lock on this connection; false when another sweep holds it.
pub async fn try_lock_sweep(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, SWEEP_LOCK).fetch_one(conn).await
}

pub async fn unlock_sweep(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // False only when this connection did not hold it: nothing to do either way.
    sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", SWEEP_LOCK).fetch_one(conn).await?;
    Ok(())
}

/// A finished job whose files are past retention: its id and stored keys.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub id: JobId,
    pub input_key: String,
    pub output_key: Option<String>,
    pub poster_key: Option<String>,
}

/// Up to 1,000 finished jobs whose files are older than `retention`, oldest first.
pub async fn expiring<'e>(db: impl PgExecutor<'e>, retention: Duration) -> Result<Vec<Expiring>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id, input_key, output_key, poster_key FROM jobs
         WHERE files_deleted_at IS NULL AND status IN ('succeeded', 'failed', 'canceled')
           AND finished_at < now() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT 1000",
        retention.as_secs_f64(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Expiring {
            id: JobId::from_uuid(r.id),
            input_key: r.input_key,
            output_key: r.output_key,
            poster_key: r.poster_key,
        })
        .collect())
}

/// Marks a job `expired` with its files deleted; false when another sweep got there first.
pub async fn mark_expired<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'expired', files_deleted_at = now(), updated_at = now()
         WHERE id = $1 AND files_deleted_at IS NULL",
        id.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Which stored keys of these jobs are still referenced (files not deleted).
pub async fn referenced_keys<'e>(db: impl PgExecutor<'e>, jobs: &[Uuid]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT k AS "k!" FROM jobs, LATERAL (VALUES (input_key), (output_key), (poster_key)) AS keys(k)
         WHERE id = ANY($1) AND files_deleted_at IS NULL AND k IS NOT NULL"#,
        jobs,
    )
    .fetch_all(db)
    .await
}

/// Deletes queue rows finished more than `after` ago and workers not seen for as long (that
/// hold no task); returns how many of each.
pub async fn prune_queue(conn: &mut PgConnection, after: Duration) -> Result<(u64, u64), sqlx::Error> {
    let secs = after.as_secs_f64();
    let rows = sqlx::query!(
        "DELETE FROM apalis.jobs WHERE job_type = $1 AND done_at < now() - make_interval(secs => $2)
           AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
        QUEUE,
        secs,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let workers = sqlx::query!(
        "DELETE FROM apalis.workers w WHERE last_seen < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
        secs,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((rows, workers))
}
