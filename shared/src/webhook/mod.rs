//! Signed webhooks: what the API (registration) and the worker (delivery) share: settings,
//! the address policy ([`address`]), signatures ([`signature`]) and the event body.

pub mod address;
pub mod sealed;
pub mod signature;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{config::duration, Job};
pub use address::{AddressPolicy, UrlError};

/// The events an endpoint can subscribe to: a job reaching each terminal status.
pub const EVENT_TYPES: [&str; 4] = ["job.succeeded", "job.failed", "job.canceled", "job.expired"];

/// Webhook settings (the README's configuration table lists each variable).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    #[command(flatten)]
    pub policy: AddressPolicy,
    /// Per-request timeout, connect included.
    #[arg(long = "webhook-timeout", id = "webhook_timeout", env = "MEDIAQ_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// First retry delay, doubled per failure with +-25 % jitter, capped.
    #[arg(long = "webhook-retry-base", env = "MEDIAQ_WEBHOOK_RETRY_BASE", default_value = "10s", value_parser = duration)]
    pub retry_base: Duration,
    #[arg(long = "webhook-retry-max", env = "MEDIAQ_WEBHOOK_RETRY_MAX", default_value = "1h", value_parser = duration)]
    pub retry_max: Duration,
    /// A delivery still failing this long after its event is marked failed.
    #[arg(long = "webhook-max-age", env = "MEDIAQ_WEBHOOK_MAX_AGE", default_value = "24h", value_parser = duration)]
    pub max_age: Duration,
    /// Consecutive failures that open an endpoint's circuit (at least 1).
    #[arg(long = "webhook-breaker-threshold", env = "MEDIAQ_WEBHOOK_BREAKER_THRESHOLD", default_value = "5", value_parser = at_least_one)]
    pub breaker_threshold: i32,
    /// How long an open circuit waits before one probe.
    #[arg(long = "webhook-breaker-cooldown", env = "MEDIAQ_WEBHOOK_BREAKER_COOLDOWN", default_value = "60s", value_parser = duration)]
    pub breaker_cooldown: Duration,
    /// How long the previous secret keeps signing after a rotation.
    #[arg(long = "webhook-rotation-grace", env = "MEDIAQ_WEBHOOK_ROTATION_GRACE", default_value = "24h", value_parser = duration)]
    pub rotation_grace: Duration,
    /// Deliveries one process sends at once (0 turns delivery off).
    #[arg(
        long = "webhook-concurrency",
        id = "webhook_concurrency",
        env = "MEDIAQ_WEBHOOK_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
    /// Seals signing secrets at rest (MEDIAQ_SECRETS_KEY; off when unset).
    #[command(flatten)]
    pub sealer: sealed::Sealer,
}

/// A count where 0 or less means 1.
fn at_least_one(v: &str) -> Result<i32, String> {
    v.trim().parse::<i32>().map(|n| n.max(1)).map_err(|e| e.to_string())
}

impl WebhookConfig {
    /// How long a claimed delivery stays leased: the request's timeout and a margin. A process
    /// that dies mid-delivery gives its deliveries back when their lease runs out.
    pub fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

/// The event's JSON body: `{id, type, created, data: {job}}` (the job as `GET /v1/jobs/{id}`
/// shows it at the transition, without its attempt history). Deterministic for one event.
pub fn event_body(event_id: uuid::Uuid, event_type: &str, created: DateTime<Utc>, job: &Job) -> Vec<u8> {
    let mut job = crate::job_view::to_json(job, &[]);
    if let Some(map) = job.as_object_mut() {
        map.remove("attempt_history");
    }
    let body = json!({ "id": event_id, "type": event_type, "created": created.timestamp(), "data": { "job": job } });
    serde_json::to_vec(&body).expect("a JSON value always serializes")
}
