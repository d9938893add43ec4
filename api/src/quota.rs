//! Per-key quotas: unfinished jobs, and bytes uploaded in 24 hours (MEDIAQ_QUOTA_ACTIVE_JOBS,
//! MEDIAQ_QUOTA_DAILY_BYTES).

use mediaq_shared::db::jobs;

use crate::config::ApiConfig;

use crate::{app::AppState, error::ApiError};

/// Per-key quotas, checked before an upload is read: unfinished jobs, and bytes in 24 hours
/// (with the declared size of this upload when known). An early answer only: the binding check
/// is [`check_locked`], in the job's transaction.
pub async fn check_early(state: &AppState, key_id: &str, declared: Option<u64>) -> Result<(), ApiError> {
    check_with(&state.pool, &state.config, key_id, declared.unwrap_or(1)).await
}

/// The quota check in the transaction that records a job of `size` bytes, under a per-key
/// advisory lock held until that transaction ends: concurrent uploads of one key are checked one
/// after another, each seeing the jobs the others committed.
pub async fn check_locked(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    key_id: &str,
    size: u64,
) -> Result<(), ApiError> {
    jobs::lock_quota(&mut *tx, key_id).await?;
    check_with(&mut *tx, config, key_id, size).await
}

/// A deferred-length upload's PATCH of `incoming` bytes, in the transaction that records it,
/// under the key's lock: the bytes count against the daily quota as they arrive (the job itself
/// already counts as unfinished).
pub async fn check_bytes_locked(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    key_id: &str,
    incoming: u64,
) -> Result<(), ApiError> {
    jobs::lock_quota(&mut *tx, key_id).await?;
    let usage = jobs::quota_usage(&mut *tx, key_id).await?;
    check_bytes(config, usage.bytes, incoming)
}

fn check_bytes(config: &ApiConfig, bytes: i64, incoming: u64) -> Result<(), ApiError> {
    if bytes as u64 + incoming > config.quota_daily_bytes {
        return Err(ApiError::QuotaExceeded(
            format!(
                "this key has uploaded {bytes} bytes in the last 24 hours; the limit is {}",
                config.quota_daily_bytes
            ),
            3600,
        ));
    }
    Ok(())
}

async fn check_with<'e>(
    db: impl sqlx::PgExecutor<'e>,
    config: &ApiConfig,
    key_id: &str,
    incoming: u64,
) -> Result<(), ApiError> {
    let jobs::QuotaUsage { active, bytes } = jobs::quota_usage(db, key_id).await?;
    if active >= config.quota_active_jobs {
        return Err(ApiError::QuotaExceeded(
            format!("this key already has {active} unfinished jobs (the limit); wait for some to finish"),
            30,
        ));
    }
    check_bytes(config, bytes, incoming)
}
