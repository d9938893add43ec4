//! The `uploads` and `upload_segments` tables: resumable (tus) uploads. An upload belongs to one
//! job, created with it (`receiving`). Each acknowledged PATCH adds one segment (a stored object)
//! and moves `received` on, in one transaction, only if `received` still is where the PATCH
//! started (two PATCHes racing for one offset: one wins, the other is a 409). Every change is
//! announced on [`PROGRESS_CHANNEL`] (the job's id), so a worker converting the upload as it
//! arrives wakes up at once.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{FailureCode, JobId};

/// LISTEN/NOTIFY channel: the id of a job whose upload received bytes, completed or ended.
pub const PROGRESS_CHANNEL: &str = "mediaq_upload_progress";

/// An upload's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub job_id: JobId,
    /// `Upload-Length`, `None` while deferred.
    pub length: Option<u64>,
    /// `Upload-Offset`: bytes acknowledged, durable in storage.
    pub received: u64,
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// `Upload-Metadata` as the client sent it.
    pub metadata: Option<String>,
}

impl Upload {
    pub fn is_complete(&self) -> bool {
        self.completed_at.is_some()
    }
}

/// One acknowledged PATCH's bytes: `size` bytes from offset `start`, stored under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub size: u64,
    pub key: String,
}

/// Builds an [`Upload`] from a row with its columns.
macro_rules! upload_from {
    ($r:expr) => {
        Upload {
            job_id: JobId::from_uuid($r.job_id),
            length: $r.length.map(|l| l as u64),
            received: $r.received as u64,
            expires_at: $r.expires_at,
            completed_at: $r.completed_at,
            metadata: $r.metadata,
        }
    };
}

/// Records a new upload of the job `id` (inserted `receiving`, in the same transaction).
pub async fn create(
    conn: &mut PgConnection,
    id: JobId,
    length: Option<u64>,
    expires_at: DateTime<Utc>,
    metadata: Option<&str>,
) -> Result<Upload, sqlx::Error> {
    let r = sqlx::query!(
        "INSERT INTO uploads (job_id, length, expires_at, metadata) VALUES ($1, $2, $3, $4)
         RETURNING job_id, length, received, expires_at, completed_at, metadata",
        id.as_uuid(),
        length.map(|l| l as i64),
        expires_at,
        metadata,
    )
    .fetch_one(conn)
    .await?;
    Ok(upload_from!(r))
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Option<Upload>, sqlx::Error> {
    let r = sqlx::query!(
        "SELECT job_id, length, received, expires_at, completed_at, metadata FROM uploads WHERE job_id = $1",
        id.as_uuid()
    )
    .fetch_optional(db)
    .await?;
    Ok(r.map(|r| upload_from!(r)))
}

/// Adds `segment` if the upload is unfinished and its offset is still `segment.start`, moving
/// the offset and the job's input size on, and the expiry to `expires_at` (never past the
/// upload's creation + `max_lifetime`, however often bytes trickle in). `false`: someone else
/// moved the offset first (or the upload ended); the caller removes the segment's object.
pub async fn append(
    conn: &mut PgConnection,
    id: JobId,
    segment: &Segment,
    expires_at: DateTime<Utc>,
    max_lifetime: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let end = (segment.start + segment.size) as i64;
    let moved = sqlx::query!(
        "UPDATE uploads SET received = $3, expires_at = LEAST($4, created_at + make_interval(secs => $5))
         WHERE job_id = $1 AND received = $2 AND completed_at IS NULL AND (length IS NULL OR $3 <= length)",
        id.as_uuid(),
        segment.start as i64,
        end,
        expires_at,
        max_lifetime.as_secs_f64(),
    )
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO upload_segments (job_id, start, size, key) VALUES ($1, $2, $3, $4)",
        id.as_uuid(),
        segment.start as i64,
        segment.size as i64,
        segment.key,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("UPDATE jobs SET input_size = $2, updated_at = now() WHERE id = $1", id.as_uuid(), end)
        .execute(&mut *conn)
        .await?;
    notify(conn, id).await?;
    Ok(true)
}

/// Sets a deferred `Upload-Length` (once; it must not be below what was received).
pub async fn set_length(conn: &mut PgConnection, id: JobId, length: u64) -> Result<bool, sqlx::Error> {
    let set = sqlx::query!(
        "UPDATE uploads SET length = $2 WHERE job_id = $1 AND length IS NULL AND received <= $2 AND completed_at IS NULL",
        id.as_uuid(),
        length as i64,
    )
    .execute(&mut *conn)
    .await?;
    if set.rows_affected() == 1 {
        notify(conn, id).await?;
    }
    Ok(set.rows_affected() == 1)
}

/// Marks the upload complete (every byte of `length` received), records the input's SHA-256,
/// and makes a job no worker holds yet `queued`.
pub async fn complete(conn: &mut PgConnection, id: JobId, sha256: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE uploads SET completed_at = now()
         WHERE job_id = $1 AND completed_at IS NULL AND length IS NOT NULL AND received = length",
        id.as_uuid(),
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE jobs SET input_sha256 = $2, status = CASE WHEN status = 'receiving' THEN 'queued' ELSE status END,
                updated_at = now()
         WHERE id = $1",
        id.as_uuid(),
        sha256,
    )
    .execute(&mut *conn)
    .await?;
    notify(conn, id).await?;
    Ok(true)
}

/// The segments from offset `from` on, in order.
pub async fn segments<'e>(db: impl PgExecutor<'e>, id: JobId, from: u64) -> Result<Vec<Segment>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT start, size, key FROM upload_segments WHERE job_id = $1 AND start >= $2 ORDER BY start",
        id.as_uuid(),
        from as i64,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| Segment { start: r.start as u64, size: r.size as u64, key: r.key }).collect())
}

/// How many segments the upload has (its cap is MEDIAQ_MAX_UPLOAD_SEGMENTS).
pub async fn segment_count<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<u64, sqlx::Error> {
    let n = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM upload_segments WHERE job_id = $1"#, id.as_uuid())
        .fetch_one(db)
        .await?;
    Ok(n as u64)
}

/// Unfinished uploads past their expiry, oldest first.
pub async fn expired<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<JobId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar!(
        "SELECT job_id FROM uploads WHERE completed_at IS NULL AND expires_at < now() ORDER BY expires_at LIMIT $1",
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(JobId::from_uuid).collect())
}

/// Ends an expired, unfinished upload: the upload is forgotten (its URL answers 404 from now
/// on), its job fails `upload_abandoned` (unless it already ended) and its files are to be
/// deleted. A worker converting it hears it on the progress and the cancellation channels.
/// `false` when it is not (or no longer) abandoned.
pub async fn abandon(conn: &mut PgConnection, id: JobId) -> Result<bool, sqlx::Error> {
    let message = "the upload stopped before its last byte and expired";
    end(conn, id, FailureCode::UploadAbandoned, message, true).await
}

/// Ends an unfinished upload whose bytes were refused (they are not WebM): like [`abandon`],
/// with `code`.
pub async fn refuse(conn: &mut PgConnection, id: JobId, code: FailureCode, message: &str) -> Result<bool, sqlx::Error> {
    end(conn, id, code, message, false).await
}

async fn end(
    conn: &mut PgConnection,
    id: JobId,
    code: FailureCode,
    message: &str,
    expired_only: bool,
) -> Result<bool, sqlx::Error> {
    let gone = sqlx::query!(
        "DELETE FROM uploads WHERE job_id = $1 AND completed_at IS NULL AND (NOT $2 OR expires_at < now())",
        id.as_uuid(),
        expired_only,
    )
    .execute(&mut *conn)
    .await?;
    if gone.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE jobs SET status = CASE WHEN status IN ('receiving', 'queued', 'processing') THEN 'failed' ELSE status END,
                error_code = CASE WHEN status IN ('receiving', 'queued', 'processing') THEN $2 ELSE error_code END,
                error_message = CASE WHEN status IN ('receiving', 'queued', 'processing') THEN $3 ELSE error_message END,
                finished_at = COALESCE(finished_at, now()), next_attempt_at = NULL,
                files_deleted_at = COALESCE(files_deleted_at, now()), updated_at = now()
         WHERE id = $1",
        id.as_uuid(),
        code.as_str(),
        message,
    )
    .execute(&mut *conn)
    .await?;
    notify(conn, id).await?;
    sqlx::query!("SELECT pg_notify($1, $2)", super::jobs::CANCELED_CHANNEL, id.to_string()).execute(&mut *conn).await?;
    Ok(true)
}

/// Forgets an upload (termination: its job was canceled in the same transaction).
pub async fn remove(conn: &mut PgConnection, id: JobId) -> Result<bool, sqlx::Error> {
    let gone = sqlx::query!("DELETE FROM uploads WHERE job_id = $1", id.as_uuid()).execute(&mut *conn).await?;
    if gone.rows_affected() == 1 {
        notify(conn, id).await?;
    }
    Ok(gone.rows_affected() == 1)
}

async fn notify(conn: &mut PgConnection, id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, id.to_string()).execute(conn).await?;
    Ok(())
}
