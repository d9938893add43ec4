//! The `job_segments` table: the checked and stored segments of an attempt's stream (playback
//! while the job converts).

use sqlx::PgExecutor;

use crate::JobId;

/// One stored segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub seq: i32,
    pub duration_s: f64,
    pub bytes: i64,
}

/// Records a stored segment (again: nothing changes).
pub async fn record<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    attempt: i32,
    segment: &Segment,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO job_segments (job_id, attempt, seq, duration_s, bytes) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_id, attempt, seq) DO NOTHING",
        id.as_uuid(),
        attempt,
        segment.seq,
        segment.duration_s,
        segment.bytes,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The attempt's segments, in order.
pub async fn list<'e>(db: impl PgExecutor<'e>, id: JobId, attempt: i32) -> Result<Vec<Segment>, sqlx::Error> {
    sqlx::query_as!(
        Segment,
        "SELECT seq, duration_s, bytes FROM job_segments WHERE job_id = $1 AND attempt = $2 ORDER BY seq",
        id.as_uuid(),
        attempt,
    )
    .fetch_all(db)
    .await
}
