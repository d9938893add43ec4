//! Webhook endpoints and signing secrets (registration side). Deliveries: [`super::deliveries`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::webhook::{sealed::Sealer, signature};

/// An endpoint as its owner sees it (its circuit breaker included; never a secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    #[serde(skip)]
    pub owner: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(rename = "breaker")]
    #[sqlx(flatten)]
    pub breaker: Breaker,
}

/// An endpoint's circuit breaker.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Breaker {
    #[sqlx(rename = "breaker_state")]
    pub state: String,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    /// When an open circuit lets one probe through.
    #[serde(rename = "retry_at")]
    pub probe_at: Option<DateTime<Utc>>,
}

macro_rules! endpoint_columns {
    () => {
        "id, owner, url, events, created_at, breaker_state, consecutive_failures, opened_at, probe_at"
    };
}

pub async fn create_endpoint<'e>(
    db: impl PgExecutor<'e>,
    owner: &str,
    url: &str,
    events: &[String],
) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO webhook_endpoints (id, owner, url, events) VALUES ($1, $2, $3, $4) RETURNING ",
        endpoint_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(owner)
    .bind(url)
    .bind(events)
    .fetch_one(db)
    .await
}

/// The owner's live endpoints (all owners' for `None`), newest first.
pub async fn list_endpoints(pool: &PgPool, owner: Option<&str>) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints WHERE deleted_at IS NULL AND ($1::text IS NULL OR owner = $1)
          ORDER BY created_at DESC, id DESC"
    ))
    .bind(owner)
    .fetch_all(pool)
    .await
}

pub async fn get_endpoint(pool: &PgPool, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Removes an endpoint: no new deliveries, and pending ones are dropped. `false`: not found.
pub async fn delete_endpoint(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', finished_at = now(), last_error = 'endpoint deleted'
          WHERE endpoint_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done)
}

/// Creates the owner's signing secret if it has none; returns it only when it was just made
/// (a secret is shown once). It is stored sealed when `sealer` has a key.
pub async fn ensure_secret<'e>(
    db: impl PgExecutor<'e>,
    owner: &str,
    sealer: &Sealer,
) -> Result<Option<String>, sqlx::Error> {
    let secret = signature::generate_secret();
    let made =
        sqlx::query("INSERT INTO webhook_secrets (owner, secret) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING")
            .bind(owner)
            .bind(sealer.seal(owner, &secret))
            .execute(db)
            .await?
            .rows_affected()
            == 1;
    Ok(made.then_some(secret))
}

/// A new signing secret for the owner; the previous one keeps signing for `grace`.
pub async fn rotate_secret(
    pool: &PgPool,
    owner: &str,
    grace: std::time::Duration,
    sealer: &Sealer,
) -> Result<String, sqlx::Error> {
    let secret = signature::generate_secret();
    sqlx::query(
        "INSERT INTO webhook_secrets (owner, secret) VALUES ($1, $2)
         ON CONFLICT (owner) DO UPDATE SET previous_secret = webhook_secrets.secret,
                previous_valid_until = now() + make_interval(secs => $3), secret = EXCLUDED.secret, rotated_at = now()",
    )
    .bind(owner)
    .bind(sealer.seal(owner, &secret))
    .bind(grace.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(secret)
}

/// The secrets that sign the owner's events now: the current one, and the previous one while
/// its grace period lasts. One that cannot be opened (sealed, and MEDIAQ_SECRETS_KEY missing or
/// different) is left out and logged.
pub async fn signing_secrets<'e>(
    db: impl PgExecutor<'e>,
    owner: &str,
    sealer: &Sealer,
) -> Result<Vec<String>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT secret, CASE WHEN previous_valid_until > now() THEN previous_secret END
           FROM webhook_secrets WHERE owner = $1",
    )
    .bind(owner)
    .fetch_optional(db)
    .await?;
    let stored = row.map(|(current, previous)| std::iter::once(current).chain(previous).collect::<Vec<_>>());
    Ok(stored
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            sealer
                .open(owner, s)
                .map_err(|e| tracing::error!(owner, error = %e, "a webhook signing secret cannot be used"))
                .ok()
        })
        .collect())
}

/// Seals every stored signing secret (current and previous) with the sealer's key, opening
/// each with any key the sealer knows (or as plain text). Returns how many owners were resealed
/// and the owners whose secrets no key opens (left as they are).
pub async fn reseal_all(pool: &PgPool, sealer: &Sealer) -> Result<(usize, Vec<String>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT owner, secret, previous_secret FROM webhook_secrets ORDER BY owner FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    let (mut resealed, mut unreadable) = (0, Vec::new());
    for (owner, current, previous) in rows {
        let opened = sealer.open(&owner, &current).and_then(|c| match &previous {
            Some(p) => sealer.open(&owner, p).map(|p| (c, Some(p))),
            None => Ok((c, None)),
        });
        let Ok((current, previous)) = opened else {
            unreadable.push(owner);
            continue;
        };
        sqlx::query("UPDATE webhook_secrets SET secret = $2, previous_secret = $3 WHERE owner = $1")
            .bind(&owner)
            .bind(sealer.seal(&owner, &current))
            .bind(previous.map(|p| sealer.seal(&owner, &p)))
            .execute(&mut *tx)
            .await?;
        resealed += 1;
    }
    tx.commit().await?;
    Ok((resealed, unreadable))
}

/// Whether the owner has a signing secret (a per-job `webhook_url` needs one).
pub async fn has_secret(pool: &PgPool, owner: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_secrets WHERE owner = $1)")
        .bind(owner)
        .fetch_one(pool)
        .await
}
