//! Webhook delivery: the outbox (filled by the database in the transaction that ends a job) is
//! drained by MEDIAQ_WEBHOOK_CONCURRENCY loops per process. Each claims one due delivery under
//! a lease, sends it signed, and records the attempt; failures are retried with exponential
//! backoff and jitter until MEDIAQ_WEBHOOK_MAX_AGE, and each endpoint's circuit breaker opens
//! after repeated failures. A process killed mid-delivery loses only its lease: the delivery
//! is sent again, with the same event id, once the lease runs out.

pub mod client;

use std::{sync::Arc, time::Duration};

use mediaq_shared::{
    db::deliveries::{self, Claimed, Recorded},
    webhook::{address::loggable, WebhookConfig},
};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::{metrics::WorkerMetrics, retry::RetryPolicy};
use client::Sender;

/// The channel the outbox trigger notifies.
const CHANNEL: &str = "mediaq_webhooks";
/// How often deliveries stuck past the maximum age are marked failed.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Starts the delivery loops (none when MEDIAQ_WEBHOOK_CONCURRENCY is 0).
pub fn spawn(pool: PgPool, config: WebhookConfig, metrics: Arc<WorkerMetrics>) -> Result<(), reqwest::Error> {
    if config.concurrency == 0 {
        tracing::info!("webhook delivery is off (MEDIAQ_WEBHOOK_CONCURRENCY=0)");
        return Ok(());
    }
    let sender = Arc::new(Sender::new(&config)?);
    let config = Arc::new(config);
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(pool.clone(), config.clone(), wake.clone()));
    for slot in 0..config.concurrency {
        let (pool, config, sender, wake) = (pool.clone(), config.clone(), sender.clone(), wake.clone());
        let metrics = metrics.clone();
        tokio::spawn(
            deliver_forever(pool, config, sender, wake, metrics).instrument(tracing::info_span!("webhooks", slot)),
        );
    }
    Ok(())
}

/// How long an idle loop waits before looking again (retries come due without a notification).
fn poll_interval(config: &WebhookConfig) -> Duration {
    (config.retry_base / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

async fn deliver_forever(
    pool: PgPool,
    config: Arc<WebhookConfig>,
    sender: Arc<Sender>,
    wake: Arc<Notify>,
    metrics: Arc<WorkerMetrics>,
) {
    let backoff = RetryPolicy {
        max_attempts: i32::MAX,
        base: config.retry_base,
        max_delay: config.retry_max,
        retry_timeouts: false,
    };
    loop {
        match deliveries::claim(&pool, &config).await {
            Ok(Some(claimed)) => {
                let span = tracing::info_span!("delivery", event_id = %claimed.event_id, delivery_id = %claimed.delivery_id,
                    job_id = %claimed.job.id, attempt = claimed.attempt);
                if let Some(outcome) = deliver(&pool, &config, &sender, &backoff, claimed).instrument(span).await {
                    metrics.webhook_delivery(outcome);
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(poll_interval(&config)) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a webhook delivery");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Sends one delivery and records it; returns the recorded outcome's metrics label.
async fn deliver(
    pool: &PgPool,
    config: &WebhookConfig,
    sender: &Sender,
    backoff: &RetryPolicy,
    claimed: Claimed,
) -> Option<&'static str> {
    let outcome = sender.send(&claimed).await;
    let delay = backoff.delay(claimed.attempt);
    // The result must be recorded even through a short database outage; the lease covers us.
    for _ in 0..5 {
        match deliveries::record(pool, &claimed, &outcome, delay, config).await {
            Ok(recorded) => {
                let latency_ms = outcome.latency.as_millis() as u64;
                let label = match &recorded {
                    Recorded::Succeeded => {
                        tracing::info!(url = %loggable(&claimed.url), status = ?outcome.response_status, latency_ms, "webhook delivered");
                        "delivered"
                    }
                    Recorded::Retrying { after } => {
                        tracing::warn!(url = %loggable(&claimed.url), error = ?outcome.error,
                            retry_in_ms = after.as_millis() as u64, "webhook delivery failed; will retry");
                        "retrying"
                    }
                    Recorded::GaveUp => {
                        tracing::error!(url = %loggable(&claimed.url), error = ?outcome.error, "webhook delivery failed for good");
                        "gave_up"
                    }
                    Recorded::Superseded => {
                        tracing::warn!("webhook lease ran out; another process took it over");
                        "superseded"
                    }
                };
                return Some(label);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record a webhook attempt; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::error!("could not record a webhook attempt; it will be sent again when its lease runs out");
    None
}

/// Wakes the loops when the outbox gets rows, and periodically fails deliveries that are past
/// the maximum age. Reconnects after errors.
async fn listen(pool: PgPool, config: Arc<WebhookConfig>, wake: Arc<Notify>) {
    let mut last_expiry = tokio::time::Instant::now() - EXPIRE_EVERY;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "webhook listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "webhook listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        loop {
            if last_expiry.elapsed() >= EXPIRE_EVERY {
                last_expiry = tokio::time::Instant::now();
                match deliveries::expire_old(&pool, config.max_age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(deliveries = n, "webhook deliveries given up after the maximum age"),
                    Err(e) => tracing::warn!(error = %e, "could not expire old webhook deliveries"),
                }
            }
            match tokio::time::timeout(EXPIRE_EVERY, listener.recv()).await {
                Ok(Ok(_)) => wake.notify_waiters(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "webhook listener lost its connection; reconnecting");
                    break;
                }
                Err(_) => {}
            }
        }
    }
}
