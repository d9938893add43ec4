//! The `idempotency_keys` table (Stripe semantics for job creation). Keys are scoped to their
//! owner, and every claim is fenced by a lease id: only the request holding the current lease
//! may complete or release the key.

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::JobId;

/// How long a key is remembered.
pub const KEY_TTL_HOURS: i32 = 24;
/// How long an in-progress request holds its key before another may take it over.
pub const LEASE_SECONDS: i32 = 600;

/// A key held by one request: the owner's key, and the id of this request's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub key: String,
    pub id: Uuid,
}

/// The state of a key when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request holds the key now and must complete or release it.
    Owned(Lease),
    /// Another request with this key is executing.
    InProgress,
    /// A request with this key completed: its fingerprint and job.
    Completed { fingerprint: String, job_id: JobId },
}

pub async fn claim(pool: &PgPool, owner: &str, key: &str) -> Result<Claim, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Forget an expired key, then try to take it (or take over a dead request's lease).
    sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE owner = $1 AND key = $2 AND created_at < now() - make_interval(hours => $3)",
        owner,
        key,
        KEY_TTL_HOURS,
    )
    .execute(&mut *tx)
    .await?;
    let lease = Uuid::new_v4();
    let taken = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (owner, key, status, locked_until, lease)
         VALUES ($1, $2, 'in_progress', now() + make_interval(secs => $3), $4)
         ON CONFLICT (owner, key) DO UPDATE
             SET locked_until = EXCLUDED.locked_until, created_at = now(), lease = EXCLUDED.lease
             WHERE idempotency_keys.status = 'in_progress' AND idempotency_keys.locked_until < now()
         RETURNING key",
        owner,
        key,
        f64::from(LEASE_SECONDS),
        lease,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let claim = if taken.is_some() {
        Claim::Owned(Lease { owner: owner.to_owned(), key: key.to_owned(), id: lease })
    } else {
        let row = sqlx::query!(
            "SELECT status, fingerprint, job_id FROM idempotency_keys WHERE owner = $1 AND key = $2",
            owner,
            key,
        )
        .fetch_one(&mut *tx)
        .await?;
        match (row.status.as_str(), row.fingerprint, row.job_id) {
            ("completed", Some(fingerprint), Some(job_id)) => {
                Claim::Completed { fingerprint, job_id: JobId::from_uuid(job_id) }
            }
            _ => Claim::InProgress,
        }
    };
    tx.commit().await?;
    Ok(claim)
}

/// Completes a held key, in the job's transaction. False: the lease is no longer this request's
/// (it ran out and another request took the key over), so this request must not create a job.
pub async fn complete<'e>(
    db: impl PgExecutor<'e>,
    lease: &Lease,
    fingerprint: &str,
    job_id: JobId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE idempotency_keys SET status = 'completed', fingerprint = $4, job_id = $5, locked_until = NULL
         WHERE owner = $1 AND key = $2 AND status = 'in_progress' AND lease = $3",
        lease.owner,
        lease.key,
        lease.id,
        fingerprint,
        job_id.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Releases a held key whose request failed (nothing was created: the key may be retried).
/// A lease that was taken over is left to its new holder.
pub async fn release(pool: &PgPool, lease: &Lease) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND status = 'in_progress' AND lease = $3",
        lease.owner,
        lease.key,
        lease.id,
    )
    .execute(pool)
    .await?;
    Ok(())
}
