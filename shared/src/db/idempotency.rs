//! The `idempotency_keys` table (Stripe semantics for job creation).

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::JobId;

/// How long a key is remembered.
pub const KEY_TTL_HOURS: i32 = 24;
/// How long an in-progress request holds its key before another may take it over.
pub const LEASE_SECONDS: i32 = 600;

/// The state of a key when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request holds the key now and must complete or release it.
    Owned,
    /// Another request with this key is executing.
    InProgress,
    /// A request with this key completed: its fingerprint and job.
    Completed { fingerprint: String, job_id: JobId },
}

pub async fn claim(pool: &PgPool, key: &str) -> Result<Claim, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Forget an expired key, then try to take it (or take over a dead request's lease).
    sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at < now() - make_interval(hours => $2)")
        .bind(key)
        .bind(KEY_TTL_HOURS)
        .execute(&mut *tx)
        .await?;
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (key, status, locked_until)
         VALUES ($1, 'in_progress', now() + make_interval(secs => $2))
         ON CONFLICT (key) DO UPDATE SET locked_until = EXCLUDED.locked_until, created_at = now()
             WHERE idempotency_keys.status = 'in_progress' AND idempotency_keys.locked_until < now()
         RETURNING key",
    )
    .bind(key)
    .bind(LEASE_SECONDS)
    .fetch_optional(&mut *tx)
    .await?;
    let claim = if taken.is_some() {
        Claim::Owned
    } else {
        let (status, fingerprint, job_id): (String, Option<String>, Option<Uuid>) =
            sqlx::query_as("SELECT status, fingerprint, job_id FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        match (status.as_str(), fingerprint, job_id) {
            ("completed", Some(fingerprint), Some(job_id)) => {
                Claim::Completed { fingerprint, job_id: JobId::from_uuid(job_id) }
            }
            _ => Claim::InProgress,
        }
    };
    tx.commit().await?;
    Ok(claim)
}

/// Completes an owned key, in the job's transaction.
pub async fn complete<'e>(
    db: impl PgExecutor<'e>,
    key: &str,
    fingerprint: &str,
    job_id: JobId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = 'completed', fingerprint = $2, job_id = $3, locked_until = NULL
         WHERE key = $1",
    )
    .bind(key)
    .bind(fingerprint)
    .bind(job_id.as_uuid())
    .execute(db)
    .await?;
    Ok(())
}

/// Releases an owned key whose request failed (nothing was created: the key may be retried).
pub async fn release(pool: &PgPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND status = 'in_progress'")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
