//! The `upload_tokens` table: single-use, short-lived upload credentials.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::{apikey::Credential, JobId};

/// How long after its expiry a used token is still verified, so that it may finish the resumable
/// upload it started (PATCH and HEAD of that upload only; the upload's own lifetime,
/// MEDIAQ_UPLOAD_MAX_LIFETIME, ends it sooner). Every other request with it gets 401.
pub const FINISH_GRACE_HOURS: i32 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub owner: String,
    pub api_key_id: String,
    pub max_bytes: u64,
    /// Set once the token was used: the one job it may read.
    pub job_id: Option<JobId>,
    pub usable: bool,
    /// Past its expiry (within the read grace): it may only finish the resumable upload it
    /// started (see `ingest::tus_rules::expired_token_may`).
    pub expired: bool,
}

pub async fn create<'e>(
    db: impl PgExecutor<'e>,
    credential: &Credential,
    owner: &str,
    api_key_id: &str,
    max_bytes: u64,
    metadata: &serde_json::Value,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO upload_tokens (id, secret_sha256, owner, api_key_id, max_bytes, metadata, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        credential.id,
        credential.secret_hash(),
        owner,
        api_key_id,
        max_bytes as i64,
        metadata,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Verifies a token (constant-time) and returns what it grants, or `None` (unknown, wrong,
/// too old even to read its job, or minted by a key that has since been revoked: a token dies
/// with its key).
pub async fn verify(pool: &PgPool, credential: &Credential) -> Result<Option<Grant>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT t.secret_sha256, t.owner, t.api_key_id, t.max_bytes, t.job_id,
                t.used_at IS NULL AND t.expires_at > now() AS "usable!", t.expires_at <= now() AS "expired!"
         FROM upload_tokens t JOIN api_keys k ON k.id = t.api_key_id AND k.revoked_at IS NULL
         WHERE t.id = $1 AND t.expires_at + make_interval(hours => $2) > now()"#,
        credential.id,
        FINISH_GRACE_HOURS,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.filter(|r| credential.matches(&r.secret_sha256)).map(|r| Grant {
        id: credential.id.clone(),
        owner: r.owner,
        api_key_id: r.api_key_id,
        max_bytes: r.max_bytes as u64,
        job_id: r.job_id.map(JobId::from_uuid),
        usable: r.usable,
        expired: r.expired,
    }))
}

/// Claims an unused, unexpired token for one upload. False: already used (or expired).
pub async fn claim(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE upload_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL AND expires_at > now()",
        id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a claimed token back after a failed upload (nothing was created).
pub async fn release(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE upload_tokens SET used_at = NULL WHERE id = $1 AND job_id IS NULL", id).execute(pool).await?;
    Ok(())
}

/// Binds a used token to the job it created, in the job's transaction.
pub async fn bind_job<'e>(db: impl PgExecutor<'e>, id: &str, job: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE upload_tokens SET job_id = $2 WHERE id = $1", id, job.as_uuid()).execute(db).await?;
    Ok(())
}
