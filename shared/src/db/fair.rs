//! The fair order of the queue (start-time fair queuing across tenants, priority within one).
//!
//! Each queued job has a start tag; workers claim the lowest tag first (apalis claims by
//! `priority` DESC, which is [`FAIR_BASE`] - tag, then by age). A job placed in line gets
//! max(the clock, one past the highest tag its tenant has waiting), and claiming a job moves the
//! clock up to its tag. So a tenant with many jobs waiting has tags far ahead of the clock, and
//! another tenant's new job gets the clock's tag: it is next in line at the next free slot, and
//! tenants with equal demand alternate. An idle tenant saves no credit: its next job starts
//! from the clock. Within a tenant, a new job of higher priority takes the place
//! of the first of its lower-priority jobs, which each move one place back.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{queue::Lane, JobId};

/// apalis' priority of the lowest tag (priorities are DESC; tags grow by one per placement).
pub const FAIR_BASE: i64 = 2_000_000_000;

/// The apalis priority for `tag`.
pub fn apalis_priority(tag: i64) -> usize {
    (FAIR_BASE - tag).clamp(0, FAIR_BASE) as usize
}

/// Whether the job has a place in line already (it was queued before).
pub async fn has_tag(conn: &mut PgConnection, id: JobId) -> Result<bool, sqlx::Error> {
    let tag = sqlx::query_scalar!("SELECT fair_tag FROM jobs WHERE id = $1", id.as_uuid()).fetch_optional(conn).await?;
    Ok(tag.flatten().is_some())
}

/// Gives job `id` its place in `lane` (keeping its tag when `keep` and it has one) and returns
/// its tag. Serialised per tenant for the transaction.
pub async fn place(conn: &mut PgConnection, id: JobId, lane: Lane, keep: bool) -> Result<i64, sqlx::Error> {
    let job = sqlx::query!("SELECT owner, priority, fair_tag FROM jobs WHERE id = $1 FOR UPDATE", id.as_uuid())
        .fetch_one(&mut *conn)
        .await?;
    let tag = match job.fair_tag.filter(|_| keep) {
        Some(tag) => tag,
        None => fresh_tag(conn, id, &job.owner, job.priority, lane).await?,
    };
    sqlx::query!(
        "UPDATE jobs SET fair_tag = $2, lane = $3, awaiting_bytes = false WHERE id = $1",
        id.as_uuid(),
        tag,
        lane.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(tag)
}

async fn fresh_tag(
    conn: &mut PgConnection,
    id: JobId,
    owner: &str,
    priority: i16,
    lane: Lane,
) -> Result<i64, sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('mediaq.fair:' || $1, 0))", owner)
        .execute(&mut *conn)
        .await?;
    let next: i64 = sqlx::query_scalar!(
        r#"SELECT GREATEST((SELECT virtual_time FROM queue_clock),
                  COALESCE((SELECT max(fair_tag) + 1 FROM jobs
                            WHERE owner = $1 AND status IN ('queued', 'receiving') AND id <> $2), 0)) AS "tag!""#,
        owner,
        id.as_uuid(),
    )
    .fetch_one(&mut *conn)
    .await?;
    // The tenant's waiting jobs of lower priority in this lane, in line order: the new job takes
    // the first one's place and each moves one place back (the last to the new tag).
    let lower = sqlx::query!(
        "SELECT id, fair_tag AS \"fair_tag!\" FROM jobs
         WHERE owner = $1 AND lane = $2 AND status IN ('queued', 'receiving') AND NOT awaiting_bytes
           AND priority < $3 AND fair_tag IS NOT NULL AND id <> $4
           AND (next_attempt_at IS NULL OR next_attempt_at <= now())
         ORDER BY fair_tag",
        owner,
        lane.as_str(),
        priority,
        id.as_uuid(),
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = lower.first() else {
        return Ok(next);
    };
    let ids: Vec<Uuid> = lower.iter().map(|r| r.id).collect();
    let tags: Vec<i64> = lower.iter().skip(1).map(|r| r.fair_tag).chain(std::iter::once(next)).collect();
    sqlx::query!(
        "UPDATE jobs SET fair_tag = u.tag FROM unnest($1::uuid[], $2::bigint[]) AS u(id, tag) WHERE jobs.id = u.id",
        &ids,
        &tags,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE apalis.jobs t SET priority = $2 - j.fair_tag FROM jobs j
         WHERE j.id = ANY($1) AND t.id = j.task_id AND t.status = 'Pending'",
        &ids,
        FAIR_BASE,
    )
    .execute(&mut *conn)
    .await?;
    Ok(first.fair_tag)
}

/// Records the apalis task that now carries the job.
pub async fn set_task(conn: &mut PgConnection, id: JobId, task_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE jobs SET task_id = $2 WHERE id = $1", id.as_uuid(), task_id).execute(conn).await?;
    Ok(())
}

/// A worker claimed job `id`: the clock moves up to its tag (never back).
pub async fn advance(conn: &mut PgConnection, id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE queue_clock SET virtual_time = j.fair_tag FROM jobs j
         WHERE j.id = $1 AND j.fair_tag > queue_clock.virtual_time",
        id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The upload of job `id` completed while its task still waits in the live lane: the task moves
/// to the CPU lane (its input is whole now), keeping its place.
pub async fn move_to_cpu_lane(conn: &mut PgConnection, id: JobId) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query!(
        "UPDATE apalis.jobs t SET job_type = $2 FROM jobs j
         WHERE j.id = $1 AND t.id = j.task_id AND t.status = 'Pending' AND t.job_type = $3",
        id.as_uuid(),
        Lane::Cpu.queue(),
        Lane::Live.queue(),
    )
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 1 {
        sqlx::query!("UPDATE jobs SET lane = 'cpu' WHERE id = $1", id.as_uuid()).execute(conn).await?;
    }
    Ok(moved.rows_affected() == 1)
}
