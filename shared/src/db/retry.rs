//! Retrying a failed job (`POST /v1/jobs/{id}/retry`): what decides whether it may go back to the
//! queue, read under the job's row lock so two retries at once make one.

use sqlx::PgConnection;

use crate::{JobId, JobStatus};

/// The facts a retry is decided on.
#[derive(Debug, Clone)]
pub struct RetryFacts {
    pub status: JobStatus,
    /// The stored input (object key, or the segments' prefix of a resumable upload).
    pub input_key: String,
    /// The job's files were deleted (DELETE, an abandoned upload).
    pub files_deleted: bool,
    /// A resumable upload that never received its last byte.
    pub upload_incomplete: bool,
    /// An operator or the owner sent the job back to the queue before (retry or requeue).
    pub retried_before: bool,
    pub attempts: i32,
    pub error_code: Option<String>,
}

/// Locks the job's row (`FOR UPDATE`, until the caller's transaction ends) and reads its facts.
pub async fn lock_facts(conn: &mut PgConnection, id: JobId) -> Result<Option<RetryFacts>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT j.status, j.input_key, j.files_deleted_at IS NOT NULL AS "files_deleted!", j.attempts, j.error_code,
                  EXISTS (SELECT 1 FROM uploads u WHERE u.job_id = j.id AND u.completed_at IS NULL) AS "upload_incomplete!",
                  EXISTS (SELECT 1 FROM audit_events a WHERE a.job_id = j.id
                           AND a.action IN ('job.retried', 'job.requeued')) AS "retried_before!"
             FROM jobs j WHERE j.id = $1 FOR UPDATE OF j"#,
        id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(RetryFacts {
            status: r.status.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            input_key: r.input_key,
            files_deleted: r.files_deleted,
            upload_incomplete: r.upload_incomplete,
            retried_before: r.retried_before,
            attempts: r.attempts,
            error_code: r.error_code,
        })
    })
    .transpose()
}
