//! Signed webhooks: what the API (registration) and the worker (delivery) share: settings,
//! the address policy ([`address`]), signatures ([`signature`]) and the event body.

pub mod address;
pub mod sealed;
pub mod signature;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    config::{parse_duration, parse_or, var, ConfigError},
    Job,
};
pub use address::{AddressPolicy, UrlError};

/// The events an endpoint can subscribe to: a job reaching each terminal status.
pub const EVENT_TYPES: [&str; 4] = ["job.succeeded", "job.failed", "job.canceled", "job.expired"];

/// Webhook settings (the README's configuration table lists each variable).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub policy: AddressPolicy,
    /// Per-request timeout, connect included (MEDIAQ_WEBHOOK_TIMEOUT).
    pub timeout: Duration,
    /// First retry delay, doubled per failure with +-25 % jitter, capped (MEDIAQ_WEBHOOK_RETRY_BASE/MAX).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A delivery still failing this long after its event is marked failed (MEDIAQ_WEBHOOK_MAX_AGE).
    pub max_age: Duration,
    /// Consecutive failures that open an endpoint's circuit (MEDIAQ_WEBHOOK_BREAKER_THRESHOLD).
    pub breaker_threshold: i32,
    /// How long an open circuit waits before one probe (MEDIAQ_WEBHOOK_BREAKER_COOLDOWN).
    pub breaker_cooldown: Duration,
    /// How long the previous secret keeps signing after a rotation (MEDIAQ_WEBHOOK_ROTATION_GRACE).
    pub rotation_grace: Duration,
    /// Deliveries one process sends at once (MEDIAQ_WEBHOOK_CONCURRENCY; 0 turns delivery off).
    pub concurrency: usize,
    /// Seals signing secrets at rest (MEDIAQ_SECRETS_KEY; off when unset).
    pub sealer: sealed::Sealer,
}

impl WebhookConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let allowed = match var("MEDIAQ_WEBHOOK_ALLOWED_NETWORKS") {
            None => Vec::new(),
            Some(list) => crate::config::trusted_proxies(&list).map_err(|reason| ConfigError::Invalid {
                var: "MEDIAQ_WEBHOOK_ALLOWED_NETWORKS",
                value: list,
                reason,
            })?,
        };
        Ok(Self {
            policy: AddressPolicy { allow_http: parse_or("MEDIAQ_WEBHOOK_ALLOW_HTTP", false)?, allowed },
            timeout: parse_duration("MEDIAQ_WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            retry_base: parse_duration("MEDIAQ_WEBHOOK_RETRY_BASE", Duration::from_secs(10))?,
            retry_max: parse_duration("MEDIAQ_WEBHOOK_RETRY_MAX", Duration::from_secs(3600))?,
            max_age: parse_duration("MEDIAQ_WEBHOOK_MAX_AGE", Duration::from_secs(24 * 3600))?,
            breaker_threshold: parse_or("MEDIAQ_WEBHOOK_BREAKER_THRESHOLD", 5)?.max(1),
            breaker_cooldown: parse_duration("MEDIAQ_WEBHOOK_BREAKER_COOLDOWN", Duration::from_secs(60))?,
            rotation_grace: parse_duration("MEDIAQ_WEBHOOK_ROTATION_GRACE", Duration::from_secs(24 * 3600))?,
            concurrency: parse_or("MEDIAQ_WEBHOOK_CONCURRENCY", 4)?,
            sealer: sealed::Sealer::from_env()?,
        })
    }

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
