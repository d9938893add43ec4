//! Webhook endpoints and signing secrets (registration side). Deliveries: [`super::deliveries`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::webhook::{sealed::Sealer, signature};

/// An endpoint as its owner sees it (its circuit breaker included; never a secret).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub id: Uuid,
    #[serde(skip)]
    pub owner: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(rename = "breaker")]
    pub breaker: Breaker,
}

/// An endpoint's circuit breaker.
#[derive(Debug, Clone, Serialize)]
pub struct Breaker {
    pub state: String,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    /// When an open circuit lets one probe through.
    #[serde(rename = "retry_at")]
    pub probe_at: Option<DateTime<Utc>>,
}

/// An endpoint's row, flat (`query_as!` fills fields by column name; [`Endpoint`] nests its breaker).
struct EndpointRow {
    id: Uuid,
    owner: String,
    url: String,
    events: Vec<String>,
    created_at: DateTime<Utc>,
    breaker_state: String,
    consecutive_failures: i32,
    opened_at: Option<DateTime<Utc>>,
    probe_at: Option<DateTime<Utc>>,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            owner: r.owner,
            url: r.url,
            events: r.events,
            created_at: r.created_at,
            breaker: Breaker {
                state: r.breaker_state,
                consecutive_failures: r.consecutive_failures,
                opened_at: r.opened_at,
                probe_at: r.probe_at,
            },
        }
    }
}

/// A compile-checked query returning whole [`EndpointRow`]s: `$before` + the column list + `$after`.
macro_rules! query_endpoint {
    ($before:literal, $after:literal, $($args:tt)*) => {
        sqlx::query_as!(
            EndpointRow,
            $before
                + "id, owner, url, events, created_at, breaker_state, consecutive_failures, opened_at, probe_at"
                + $after,
            $($args)*
        )
    };
}

pub async fn create_endpoint<'e>(
    db: impl PgExecutor<'e>,
    owner: &str,
    url: &str,
    events: &[String],
) -> Result<Endpoint, sqlx::Error> {
    let row = query_endpoint!(
        "INSERT INTO webhook_endpoints (id, owner, url, events) VALUES ($1, $2, $3, $4) RETURNING ",
        "",
        Uuid::now_v7(),
        owner,
        url,
        events,
    )
    .fetch_one(db)
    .await?;
    Ok(row.into())
}

/// The owner's live endpoints (all owners' for `None`), newest first.
pub async fn list_endpoints(pool: &PgPool, owner: Option<&str>) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows = query_endpoint!(
        "SELECT ",
        " FROM webhook_endpoints WHERE deleted_at IS NULL AND ($1::text IS NULL OR owner = $1)
          ORDER BY created_at DESC, id DESC",
        owner,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Endpoint::from).collect())
}

pub async fn get_endpoint(pool: &PgPool, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    let row = query_endpoint!("SELECT ", " FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL", id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(Endpoint::from))
}

/// Removes an endpoint: no new deliveries, and pending ones are dropped. `false`: not found.
pub async fn delete_endpoint(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query!("UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL", id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'failed', finished_at = now(), last_error = 'endpoint deleted'
          WHERE endpoint_id = $1 AND status = 'pending'",
        id,
    )
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
    let made = sqlx::query!(
        "INSERT INTO webhook_secrets (owner, secret) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING",
        owner,
        sealer.seal(owner, &secret),
    )
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
    sqlx::query!(
        "INSERT INTO webhook_secrets (owner, secret) VALUES ($1, $2)
         ON CONFLICT (owner) DO UPDATE SET previous_secret = webhook_secrets.secret,
                previous_valid_until = now() + make_interval(secs => $3), secret = EXCLUDED.secret, rotated_at = now()",
        owner,
        sealer.seal(owner, &secret),
        grace.as_secs_f64(),
    )
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
    let row = sqlx::query!(
        "SELECT secret, CASE WHEN previous_valid_until > now() THEN previous_secret END AS previous
           FROM webhook_secrets WHERE owner = $1",
        owner,
    )
    .fetch_optional(db)
    .await?;
    let stored = row.map(|r| std::iter::once(r.secret).chain(r.previous).collect::<Vec<_>>());
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
    let rows = sqlx::query!("SELECT owner, secret, previous_secret FROM webhook_secrets ORDER BY owner FOR UPDATE")
        .fetch_all(&mut *tx)
        .await?;
    let (mut resealed, mut unreadable) = (0, Vec::new());
    for row in rows {
        let (owner, current, previous) = (row.owner, row.secret, row.previous_secret);
        let opened = sealer.open(&owner, &current).and_then(|c| match &previous {
            Some(p) => sealer.open(&owner, p).map(|p| (c, Some(p))),
            None => Ok((c, None)),
        });
        let Ok((current, previous)) = opened else {
            unreadable.push(owner);
            continue;
        };
        sqlx::query!(
            "UPDATE webhook_secrets SET secret = $2, previous_secret = $3 WHERE owner = $1",
            owner,
            sealer.seal(&owner, &current),
            previous.map(|p| sealer.seal(&owner, &p)),
        )
        .execute(&mut *tx)
        .await?;
        resealed += 1;
    }
    tx.commit().await?;
    Ok((resealed, unreadable))
}

/// Whether the owner has a signing secret (a per-job `webhook_url` needs one).
pub async fn has_secret(pool: &PgPool, owner: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM webhook_secrets WHERE owner = $1) AS "exists!""#, owner)
        .fetch_one(pool)
        .await
}
