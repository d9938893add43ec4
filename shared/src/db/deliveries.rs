//! The webhook outbox: deliveries are claimed under a lease, attempted, and recorded; each
//! endpoint's circuit breaker moves with the results. The outbox itself is filled by a trigger
//! on `jobs` (migrations/*_webhooks.sql), in the transaction that ends the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{types::Json, PgPool};
use uuid::Uuid;

use super::webhooks;
use crate::{db::jobs, webhook::WebhookConfig, Job};

/// A delivery claimed by this process: send it, then [`record`] what happened.
#[derive(Debug)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub created: DateTime<Utc>,
    pub job: Job,
    pub url: String,
    pub endpoint_id: Option<Uuid>,
    pub attempt: i32,
    pub delivery_created: DateTime<Utc>,
    /// The owner's signing secrets (current first).
    pub secrets: Vec<String>,
}

struct Due {
    id: Uuid,
    event_id: Uuid,
    endpoint_id: Option<Uuid>,
    url: String,
    owner: String,
    created_at: DateTime<Utc>,
    breaker_state: Option<String>,
}

/// Claims the next due delivery, if any. An endpoint whose circuit is open is skipped until its
/// cool-down has passed; then exactly one delivery goes through as the probe (half-open).
pub async fn claim(pool: &PgPool, config: &WebhookConfig) -> Result<Option<Claimed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due = sqlx::query_as!(
        Due,
        r#"SELECT d.id, d.event_id, d.endpoint_id, d.url, d.owner, d.created_at, e.breaker_state AS "breaker_state?"
           FROM webhook_deliveries d LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= now()
            AND (d.leased_until IS NULL OR d.leased_until < now())
            AND (e.id IS NULL OR e.breaker_state = 'closed' OR e.probe_at <= now())
          ORDER BY d.next_attempt_at LIMIT 1
          FOR UPDATE OF d SKIP LOCKED"#,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(due) = due else { return Ok(None) };
    if let (Some(endpoint), Some(state)) = (due.endpoint_id, &due.breaker_state) {
        if state != "closed" {
            let probe = sqlx::query!(
                "UPDATE webhook_endpoints SET breaker_state = 'half_open', probe_at = now() + make_interval(secs => $2)
                  WHERE id = $1 AND breaker_state <> 'closed' AND probe_at <= now()",
                endpoint,
                config.breaker_cooldown.as_secs_f64(),
            )
            .execute(&mut *tx)
            .await?;
            if probe.rows_affected() == 0 {
                return Ok(None); // another process is probing this endpoint
            }
        }
    }
    let attempt = sqlx::query_scalar!(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = now() + make_interval(secs => $2)
          WHERE id = $1 RETURNING attempts",
        due.id,
        config.lease().as_secs_f64(),
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE webhook_delivery_attempts SET finished_at = now(), error = 'interrupted: the delivering process was lost'
          WHERE delivery_id = $1 AND finished_at IS NULL",
        due.id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("INSERT INTO webhook_delivery_attempts (delivery_id, attempt) VALUES ($1, $2)", due.id, attempt)
        .execute(&mut *tx)
        .await?;
    let event = sqlx::query!(
        "SELECT type AS event_type, created_at, job AS snapshot FROM webhook_events WHERE id = $1",
        due.event_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let secrets = webhooks::signing_secrets(&mut *tx, &due.owner, &config.sealer).await?;
    tx.commit().await?;
    Ok(Some(Claimed {
        delivery_id: due.id,
        event_id: due.event_id,
        event_type: event.event_type,
        created: event.created_at,
        job: jobs::from_snapshot(event.snapshot)?,
        url: due.url,
        endpoint_id: due.endpoint_id,
        attempt,
        delivery_created: due.created_at,
        secrets,
    }))
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub latency: Duration,
    pub response_status: Option<u16>,
    /// `None` on success (a 2xx).
    pub error: Option<String>,
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Succeeded,
    Retrying {
        after: Duration,
    },
    GaveUp,
    /// Our lease had run out and another process took the delivery over.
    Superseded,
}

/// Records an attempt: the delivery succeeds, is retried after `retry_delay`, or (past the
/// maximum age) fails for good; the endpoint's breaker closes on success and opens after
/// `breaker_threshold` consecutive failures, or at once when a half-open probe fails.
pub async fn record(
    pool: &PgPool,
    claimed: &Claimed,
    outcome: &Outcome,
    retry_delay: Duration,
    config: &WebhookConfig,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "UPDATE webhook_delivery_attempts SET finished_at = now(), latency_ms = $3, response_status = $4, error = $5
          WHERE delivery_id = $1 AND attempt = $2 AND finished_at IS NULL",
        claimed.delivery_id,
        claimed.attempt,
        i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX),
        outcome.response_status.map(i32::from),
        outcome.error,
    )
    .execute(&mut *tx)
    .await?;
    let gave_up =
        Utc::now() - claimed.delivery_created >= chrono::Duration::from_std(config.max_age).unwrap_or_default();
    let (status, next_after) = match (&outcome.error, gave_up) {
        (None, _) => ("succeeded", None),
        (Some(_), true) => ("failed", None),
        (Some(_), false) => ("pending", Some(retry_delay)),
    };
    let updated = sqlx::query!(
        "UPDATE webhook_deliveries
            SET status = $3, leased_until = NULL, last_error = $4,
                finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END,
                next_attempt_at = now() + make_interval(secs => $5)
          WHERE id = $1 AND attempts = $2 AND status = 'pending'",
        claimed.delivery_id,
        claimed.attempt,
        status,
        outcome.error,
        next_after.unwrap_or_default().as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        tx.commit().await?;
        return Ok(Recorded::Superseded);
    }
    if let Some(endpoint) = claimed.endpoint_id {
        if outcome.error.is_none() {
            sqlx::query!(
                "UPDATE webhook_endpoints SET breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
                        probe_at = NULL WHERE id = $1",
                endpoint,
            )
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query!(
                "UPDATE webhook_endpoints
                    SET consecutive_failures = consecutive_failures + 1,
                        breaker_state = CASE WHEN breaker_state = 'half_open' OR consecutive_failures + 1 >= $2
                                             THEN 'open' ELSE breaker_state END,
                        opened_at = CASE WHEN breaker_state = 'closed' AND consecutive_failures + 1 >= $2
                                         THEN now() ELSE opened_at END,
                        probe_at = CASE WHEN breaker_state = 'half_open' OR consecutive_failures + 1 >= $2
                                        THEN now() + make_interval(secs => $3) ELSE probe_at END
                  WHERE id = $1",
                endpoint,
                config.breaker_threshold,
                config.breaker_cooldown.as_secs_f64(),
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(match (status, next_after) {
        ("succeeded", _) => Recorded::Succeeded,
        (_, Some(after)) => Recorded::Retrying { after },
        _ => Recorded::GaveUp,
    })
}

/// Marks deliveries that have waited past the maximum age (e.g. behind an open circuit) failed.
pub async fn expire_old(pool: &PgPool, max_age: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'failed', finished_at = now(),
                last_error = coalesce(last_error || '; ', '') || 'gave up: undelivered after the maximum age'
          WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
            AND (leased_until IS NULL OR leased_until < now())",
        max_age.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One delivery as `GET /v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub job_id: Uuid,
    pub url: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub attempt_history: Json<Vec<AttemptView>>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub latency_ms: Option<i32>,
    pub response_status: Option<i32>,
    pub error: Option<String>,
}

/// An endpoint's deliveries, newest first.
pub async fn list(pool: &PgPool, endpoint_id: Uuid, limit: i64) -> Result<Vec<DeliveryView>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryView,
        r#"SELECT d.id, d.event_id, ev.type AS event_type, ev.job_id, d.url, d.status, d.attempts, d.created_at,
                CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at, d.finished_at,
                d.last_error,
                coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at,
                            'finished_at', a.finished_at, 'latency_ms', a.latency_ms,
                            'response_status', a.response_status, 'error', a.error) ORDER BY a.attempt)
                            FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id), '[]'::jsonb)
                  AS "attempt_history!: Json<Vec<AttemptView>>"
           FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
          WHERE d.endpoint_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2"#,
        endpoint_id,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Queues the event of one of an endpoint's deliveries again (same event id, a new delivery).
/// `None`: no such delivery for this endpoint.
pub async fn resend(pool: &PgPool, endpoint_id: Uuid, delivery_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, owner, url)
         SELECT d.event_id, d.endpoint_id, d.owner, e.url
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.id = $2 AND d.endpoint_id = $1 AND e.deleted_at IS NULL
         RETURNING id",
        endpoint_id,
        delivery_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!("SELECT pg_notify('mediaq_webhooks', '')").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(id)
}
