//! The `jobs` table. Writes from the worker are fenced by the attempt number, so a late result
//! from an attempt presumed dead can never overwrite a newer attempt's.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::{ErrorInfo, FailureCode, InputFacts, Job, JobId, JobStatus, OriginalFilename, OutputFacts, PosterFacts};

/// A compile-checked query returning whole [`JobRow`]s: `$before` + the column list + `$after`
/// (`query_as!` takes literals joined by `+`, not `concat!`).
macro_rules! query_job {
    ($before:literal, $after:literal, $($args:tt)*) => {
        sqlx::query_as!(
            JobRow,
            $before
                + "id, status, progress, attempts, error_code, error_message,
    input_filename, input_size, input_sha256, input_content_type, input_key,
    output_key, output_size, output_sha256, output_duration_s, output_width, output_height,
    output_video_codec, output_audio_codec, output_video_path, poster_key, poster_size, poster_sha256, created_at, started_at, finished_at, updated_at, next_attempt_at, files_deleted_at, owner, priority, lane"
                + $after,
            $($args)*
        )
    };
}

#[derive(serde::Deserialize)]
struct JobRow {
    id: Uuid,
    status: String,
    progress: f32,
    attempts: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    input_filename: String,
    input_size: i64,
    input_sha256: Option<String>,
    input_content_type: String,
    input_key: String,
    output_key: Option<String>,
    output_size: Option<i64>,
    output_sha256: Option<String>,
    output_duration_s: Option<f64>,
    output_width: Option<i32>,
    output_height: Option<i32>,
    output_video_codec: Option<String>,
    output_audio_codec: Option<String>,
    output_video_path: Option<String>,
    #[serde(default)]
    poster_key: Option<String>,
    #[serde(default)]
    poster_size: Option<i64>,
    #[serde(default)]
    poster_sha256: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    next_attempt_at: Option<DateTime<Utc>>,
    files_deleted_at: Option<DateTime<Utc>>,
    owner: String,
    #[serde(default = "normal_rank")]
    priority: i16,
    #[serde(default)]
    lane: Option<String>,
}

fn normal_rank() -> i16 {
    crate::Priority::Normal.rank()
}

impl TryFrom<JobRow> for Job {
    type Error = sqlx::Error;

    fn try_from(r: JobRow) -> Result<Self, Self::Error> {
        let status = r.status.parse::<JobStatus>().map_err(|e| sqlx::Error::Decode(e.into()))?;
        let error = r.error_code.map(|code| ErrorInfo {
            // Every stored code was written from a FailureCode; an unknown one (a newer writer)
            // reads as the generic failure.
            code: FailureCode::parse(&code).unwrap_or(FailureCode::TranscodeError),
            message: r.error_message.unwrap_or_default(),
        });
        let output = match (r.output_key, r.output_size, r.output_sha256) {
            (Some(key), Some(size), Some(sha256)) => Some(OutputFacts {
                key,
                size_bytes: size as u64,
                sha256,
                duration_s: r.output_duration_s,
                width: r.output_width.map(|w| w as u32),
                height: r.output_height.map(|h| h as u32),
                video_codec: r.output_video_codec,
                audio_codec: r.output_audio_codec,
                video_path: r.output_video_path,
                poster: match (r.poster_key, r.poster_size, r.poster_sha256) {
                    (Some(key), Some(size), Some(sha256)) => Some(PosterFacts { key, size_bytes: size as u64, sha256 }),
                    _ => None,
                },
            }),
            _ => None,
        };
        Ok(Job {
            id: JobId::from_uuid(r.id),
            status,
            progress: r.progress,
            attempts: r.attempts,
            error,
            input: InputFacts {
                filename: OriginalFilename::from_stored(r.input_filename),
                size: r.input_size as u64,
                sha256: r.input_sha256,
                content_type: r.input_content_type,
                key: r.input_key,
            },
            output,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
            next_attempt_at: r.next_attempt_at,
            files_deleted_at: r.files_deleted_at,
            owner: r.owner,
            priority: crate::Priority::from_rank(r.priority),
            lane: r.lane.as_deref().and_then(crate::queue::Lane::parse),
        })
    }
}

/// A job from a snapshot of its row (`to_jsonb(jobs.*)`, as the webhook outbox stores it).
pub fn from_snapshot(snapshot: serde_json::Value) -> Result<Job, sqlx::Error> {
    let row: JobRow = serde_json::from_value(snapshot).map_err(|e| sqlx::Error::Decode(e.into()))?;
    row.try_into()
}

/// Who asks for a new job, and how it is to be ordered.
#[derive(Debug, Clone, Copy)]
pub struct NewJobOwner<'a> {
    pub owner: &'a str,
    pub api_key_id: Option<&'a str>,
    pub priority: crate::Priority,
}

/// Inserts a new job (`queued`, or `receiving` for a resumable upload, which then waits for its
/// first bytes out of the queue).
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    input: &InputFacts,
    who: NewJobOwner<'_>,
    webhook_url: Option<&str>,
    status: JobStatus,
) -> Result<Job, sqlx::Error> {
    let row = query_job!(
        "INSERT INTO jobs (id, input_filename, input_size, input_sha256, input_content_type, input_key, owner,
                           api_key_id, webhook_url, status, priority, awaiting_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10 = 'receiving') RETURNING ",
        "",
        id.as_uuid(),
        input.filename.as_str(),
        input.size as i64,
        input.sha256,
        input.content_type,
        input.key,
        who.owner,
        who.api_key_id,
        webhook_url,
        status.as_str(),
        who.priority.rank(),
    )
    .fetch_one(db)
    .await?;
    row.try_into()
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    let row = query_job!("SELECT ", " FROM jobs WHERE id = $1", id.as_uuid()).fetch_optional(db).await?;
    row.map(Job::try_from).transpose()
}

/// A started attempt: its number, and how many attempts this job has had since it was
/// created or last requeued by an operator (this one included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub attempt: i32,
    pub budget_used: i32,
}

/// Starts a new attempt: `queued`, `receiving` (a resumable upload still arriving: the attempt
/// converts as it arrives) or `processing` left by a dead worker -> `processing`.
/// Returns `None` when the job is already terminal (or gone).
pub async fn start_attempt<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Option<Started>, sqlx::Error> {
    let row = sqlx::query!(
        r#"UPDATE jobs SET status = 'processing', attempts = attempts + 1, progress = 0, next_attempt_at = NULL,
                started_at = now(), updated_at = now()
         WHERE id = $1 AND status IN ('receiving', 'queued', 'processing')
         RETURNING attempts, attempts - attempts_base AS "budget_used!""#,
        id.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Started { attempt: r.attempts, budget_used: r.budget_used }))
}

/// `processing` -> `queued` (or `receiving` while its resumable upload is unfinished) for a retry at `at`, keeping
/// the cause for clients to see. Fenced like the other worker writes: `None` when superseded,
/// else the status set.
pub async fn schedule_retry<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    attempt: i32,
    cause: &ErrorInfo,
    at: DateTime<Utc>,
) -> Result<Option<JobStatus>, sqlx::Error> {
    let status = sqlx::query_scalar!(
        "UPDATE jobs SET status = CASE WHEN EXISTS (SELECT 1 FROM uploads u WHERE u.job_id = jobs.id AND u.completed_at IS NULL)
                THEN 'receiving' ELSE 'queued' END, progress = 0, next_attempt_at = $5, updated_at = now(),
                error_code = $3, error_message = $4
         WHERE id = $1 AND attempts = $2 AND status = 'processing' RETURNING status",
        id.as_uuid(),
        attempt,
        cause.code.as_str(),
        cause.message,
        at,
    )
    .fetch_optional(db)
    .await?;
    status.map(|s| s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))).transpose()
}

/// A shutting-down worker's hand-back: `processing` -> `queued` (or `receiving`, its upload
/// unfinished) now, not counted as an attempt. `None` when superseded, else the status set.
pub async fn hand_back<'e>(db: impl PgExecutor<'e>, id: JobId, attempt: i32) -> Result<Option<JobStatus>, sqlx::Error> {
    let status = sqlx::query_scalar!(
        "UPDATE jobs SET status = CASE WHEN EXISTS (SELECT 1 FROM uploads u WHERE u.job_id = jobs.id AND u.completed_at IS NULL)
                THEN 'receiving' ELSE 'queued' END, progress = 0, attempts_base = attempts_base + 1,
                next_attempt_at = now(), updated_at = now()
         WHERE id = $1 AND attempts = $2 AND status = 'processing' RETURNING status",
        id.as_uuid(),
        attempt,
    )
    .fetch_optional(db)
    .await?;
    status.map(|s| s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))).transpose()
}

/// How a park went: `requeue` is the status to queue the job in again at once (bytes arrived,
/// or the upload completed, since the child was fed), `None` when it waits for bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    pub requeue: Option<JobStatus>,
}

/// A live attempt whose upload went idle hands its slot back: `processing` -> `receiving`,
/// waiting for bytes out of the queue (not counted as an attempt), unless the upload moved past
/// the `fed` bytes (or completed) meanwhile: then it is to be queued again at once. The upload's
/// row is locked first, so a PATCH racing with the park either lands before it (and is seen
/// here) or after it (and finds the job waiting for bytes). `None` when superseded.
pub async fn park(
    conn: &mut sqlx::PgConnection,
    id: JobId,
    attempt: i32,
    fed: u64,
) -> Result<Option<Parked>, sqlx::Error> {
    let upload = sqlx::query!("SELECT received, completed_at FROM uploads WHERE job_id = $1 FOR UPDATE", id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    let (status, waits) = match upload {
        Some(u) if u.completed_at.is_some() => (JobStatus::Queued, false),
        Some(u) => (JobStatus::Receiving, u.received as u64 <= fed),
        // The upload is gone (its job ended meanwhile): the fence below finds that out.
        None => (JobStatus::Queued, false),
    };
    let done = sqlx::query!(
        "UPDATE jobs SET status = $3, progress = 0, attempts_base = attempts_base + 1, awaiting_bytes = $4,
                updated_at = now()
         WHERE id = $1 AND attempts = $2 AND status = 'processing'",
        id.as_uuid(),
        attempt,
        status.as_str(),
        waits,
    )
    .execute(&mut *conn)
    .await?;
    Ok((done.rows_affected() == 1).then_some(Parked { requeue: (!waits).then_some(status) }))
}

/// A resumable upload's job waiting for bytes leaves that wait, to be queued by the caller in
/// the same transaction: `receiving` (its upload unfinished: the live lane) only while its key
/// has fewer than `live_per_key` live jobs, `queued` (complete: the CPU lane) always. Returns the
/// status to queue it with, or `None` (not waiting, or at the key's live limit: a later PATCH
/// or the upload's completion tries again).
pub async fn take_for_queue(
    conn: &mut sqlx::PgConnection,
    id: JobId,
    live_per_key: i64,
) -> Result<Option<JobStatus>, sqlx::Error> {
    let status = sqlx::query_scalar!(
        "UPDATE jobs SET awaiting_bytes = false, updated_at = now()
         WHERE id = $1 AND awaiting_bytes AND (status = 'queued' OR (status = 'receiving' AND
               (SELECT count(*) FROM jobs o WHERE o.api_key_id = jobs.api_key_id AND o.id <> jobs.id
                  AND o.lane = 'live' AND o.status IN ('receiving', 'processing') AND NOT o.awaiting_bytes) < $2))
         RETURNING status",
        id.as_uuid(),
        live_per_key,
    )
    .fetch_optional(conn)
    .await?;
    status.map(|s| s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))).transpose()
}

/// An operator's requeue of a failed job: `failed` -> `queued` (or `receiving`, its upload
/// unfinished) with a fresh retry budget.
pub async fn requeue_failed<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Option<JobStatus>, sqlx::Error> {
    let status = sqlx::query_scalar!(
        "UPDATE jobs SET status = CASE WHEN EXISTS (SELECT 1 FROM uploads u WHERE u.job_id = jobs.id AND u.completed_at IS NULL)
                THEN 'receiving' ELSE 'queued' END, progress = 0, attempts_base = attempts, finished_at = NULL,
                next_attempt_at = NULL, error_code = NULL, error_message = NULL, updated_at = now()
         WHERE id = $1 AND status = 'failed' RETURNING status",
        id.as_uuid(),
    )
    .fetch_optional(db)
    .await?;
    status.map(|s| s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))).transpose()
}

/// Records progress of the current attempt; never moves progress backwards.
pub async fn set_progress(db: &PgPool, id: JobId, attempt: i32, progress: f32) -> Result<bool, sqlx::Error> {
    let progress = progress.clamp(0.0, 1.0);
    let done = sqlx::query!(
        "UPDATE jobs SET progress = GREATEST(progress, $3), updated_at = now()
         WHERE id = $1 AND attempts = $2 AND status = 'processing' AND progress < $3",
        id.as_uuid(),
        attempt,
        progress,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `processing` -> `succeeded` for this attempt only. Returns false when the attempt was superseded.
pub async fn succeed<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    attempt: i32,
    out: &OutputFacts,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'succeeded', progress = 1, finished_at = now(), updated_at = now(),
                error_code = NULL, error_message = NULL,
                output_key = $3, output_size = $4, output_sha256 = $5, output_duration_s = $6,
                output_width = $7, output_height = $8, output_video_codec = $9, output_audio_codec = $10,
                output_video_path = $11, poster_key = $12, poster_size = $13, poster_sha256 = $14
         WHERE id = $1 AND attempts = $2 AND status = 'processing'",
        id.as_uuid(),
        attempt,
        out.key,
        out.size_bytes as i64,
        out.sha256,
        out.duration_s,
        out.width.map(|w| w as i32),
        out.height.map(|h| h as i32),
        out.video_codec,
        out.audio_codec,
        out.video_path,
        out.poster.as_ref().map(|p| &p.key) as Option<&String>,
        out.poster.as_ref().map(|p| p.size_bytes as i64),
        out.poster.as_ref().map(|p| &p.sha256) as Option<&String>,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `processing` -> `failed` for this attempt only. Returns false when the attempt was superseded.
pub async fn fail<'e>(
    db: impl PgExecutor<'e>,
    id: JobId,
    attempt: i32,
    error: &ErrorInfo,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'failed', finished_at = now(), updated_at = now(),
                error_code = $3, error_message = $4
         WHERE id = $1 AND attempts = $2 AND status = 'processing'",
        id.as_uuid(),
        attempt,
        error.code.as_str(),
        error.message,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `DELETE /v1/jobs/{id}`: an unfinished job becomes `canceled` (a worker running it notices
/// and kills its child); a finished one keeps its status. Either way its files are to be
/// deleted: returns the job as it was before, or `None` when there is no such job.
pub async fn cancel(conn: &mut sqlx::PgConnection, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    let Some(before) = get(&mut *conn, id).await? else {
        return Ok(None);
    };
    sqlx::query!(
        "UPDATE jobs SET status = CASE WHEN status IN ('receiving', 'queued', 'processing') THEN 'canceled' ELSE status END,
                finished_at = COALESCE(finished_at, now()), next_attempt_at = NULL,
                files_deleted_at = COALESCE(files_deleted_at, now()), updated_at = now()
         WHERE id = $1",
        id.as_uuid(),
    )
    .execute(&mut *conn)
    .await?;
    // An upload still arriving ends with its job (its URL answers 404 from now on).
    super::uploads::remove(&mut *conn, id).await?;
    if before.status == JobStatus::Processing {
        // Delivered when the transaction commits: the worker running it stops its child at once.
        sqlx::query!("SELECT pg_notify($1, $2)", CANCELED_CHANNEL, id.to_string()).execute(&mut *conn).await?;
    }
    Ok(Some(before))
}

/// The channel on which [`cancel`] announces a processing job's id (LISTEN/NOTIFY).
pub const CANCELED_CHANNEL: &str = "mediaq_job_canceled";

/// The job's current status (the worker polls it to notice cancellation).
pub async fn status<'e>(db: impl PgExecutor<'e>, id: JobId) -> Result<Option<JobStatus>, sqlx::Error> {
    let s = sqlx::query_scalar!("SELECT status FROM jobs WHERE id = $1", id.as_uuid()).fetch_optional(db).await?;
    s.map(|s| s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))).transpose()
}

/// One page of jobs, newest first: `owner` None lists everyone's (admin), `before` is the
/// previous page's last id (UUIDv7 ids are time-ordered).
pub async fn list(
    pool: &PgPool,
    owner: Option<&str>,
    status: Option<JobStatus>,
    before: Option<JobId>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let rows = query_job!(
        "SELECT ",
        " FROM jobs WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        owner,
        status.map(|s| s.as_str()),
        before.map(|b| b.as_uuid()),
        limit,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// What a key has in use against its quota: unfinished jobs, and bytes uploaded in the last day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    pub active: i64,
    pub bytes: i64,
}

pub async fn quota_usage<'e>(db: impl PgExecutor<'e>, key_id: &str) -> Result<QuotaUsage, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE j.status IN ('receiving', 'queued', 'processing')) AS "active!",
                COALESCE(sum(GREATEST(j.input_size, COALESCE(u.length, 0)))
                         FILTER (WHERE j.created_at > now() - interval '1 day'), 0)::bigint AS "bytes!"
         FROM jobs j LEFT JOIN uploads u ON u.job_id = j.id WHERE j.api_key_id = $1"#,
        key_id,
    )
    .fetch_one(db)
    .await?;
    Ok(QuotaUsage { active: row.active, bytes: row.bytes })
}

/// Serialises quota checks of one key until the transaction ends (concurrent uploads of a key
/// then cannot pass the check together).
pub async fn lock_quota(conn: &mut sqlx::PgConnection, key_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('mediaq.quota:' || $1, 0))", key_id)
        .execute(conn)
        .await?;
    Ok(())
}
