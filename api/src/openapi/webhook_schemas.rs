//! The shapes of the webhook API's bodies and of the events it delivers, for the OpenAPI document
//! (see [`super::schemas`], which re-exports them).

#![allow(dead_code)]

use utoipa::ToSchema;

use super::schemas::{JobError, JobInput, JobLinks, JobOutput, JobStatus};

/// An event type an endpoint can subscribe to.
#[derive(ToSchema)]
pub enum WebhookEventType {
    #[schema(rename = "job.succeeded")]
    JobSucceeded,
    #[schema(rename = "job.failed")]
    JobFailed,
    #[schema(rename = "job.canceled")]
    JobCanceled,
    #[schema(rename = "job.expired")]
    JobExpired,
}

/// `POST /v1/webhooks`.
#[derive(ToSchema)]
pub struct CreateWebhook {
    /// An absolute `https://` URL (plain `http://` only where the operator allows it) without a
    /// user name or password, at most 2048 characters; its host must resolve only to public
    /// addresses (else 422 `webhook_url_refused`).
    #[schema(min_length = 9, max_length = 2048, pattern = "^https://[^\\s/?#@]+(?:[/?#]\\S*)?$")]
    pub url: String,
    /// Event types to receive (default: all of them).
    #[schema(min_items = 1)]
    pub events: Option<Vec<WebhookEventType>>,
}

/// An endpoint's circuit breaker.
#[derive(ToSchema)]
pub struct Breaker {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    pub consecutive_failures: i32,
    #[schema(format = DateTime)]
    pub opened_at: Option<String>,
    /// When an open circuit lets one probe through.
    #[schema(format = DateTime)]
    pub retry_at: Option<String>,
}

/// A webhook endpoint (never its secret).
#[derive(ToSchema)]
pub struct WebhookEndpoint {
    #[schema(format = "uuid")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub breaker: Breaker,
}

/// A new endpoint; `secret` only when this call created the owner's signing secret (shown once).
#[derive(ToSchema)]
pub struct WebhookEndpointCreated {
    #[schema(format = "uuid")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub breaker: Breaker,
    pub secret: Option<String>,
}

#[derive(ToSchema)]
pub struct WebhookEndpointList {
    pub endpoints: Vec<WebhookEndpoint>,
}

/// A new signing secret, shown once; the previous one keeps signing until `previous_valid_until`.
#[derive(ToSchema)]
pub struct WebhookSecret {
    pub secret: String,
    #[schema(format = DateTime)]
    pub previous_valid_until: String,
}

#[derive(ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub latency_ms: Option<i32>,
    pub response_status: Option<i32>,
    pub error: Option<String>,
}

/// One delivery of an event to an endpoint.
#[derive(ToSchema)]
pub struct Delivery {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub event_id: String,
    pub event_type: String,
    #[schema(format = "uuid")]
    pub job_id: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub last_error: Option<String>,
    pub attempt_history: Vec<DeliveryAttempt>,
}

#[derive(ToSchema)]
pub struct DeliveryList {
    pub endpoint: WebhookEndpoint,
    pub deliveries: Vec<Delivery>,
}

#[derive(ToSchema)]
pub struct Resent {
    #[schema(format = "uuid")]
    pub delivery_id: String,
    #[schema(format = "uuid")]
    pub resent_from: String,
}

/// The job in a webhook event: as `GET /v1/jobs/{id}` shows it at the transition, without
/// `attempt_history`.
#[derive(ToSchema)]
pub struct EventJob {
    #[schema(format = "uuid")]
    pub id: String,
    pub status: JobStatus,
    pub progress: f64,
    pub attempts: i32,
    pub error: Option<JobError>,
    pub input: JobInput,
    pub output: Option<JobOutput>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub files_deleted_at: Option<String>,
    pub links: JobLinks,
}

#[derive(ToSchema)]
pub struct EventData {
    pub job: EventJob,
}

/// A webhook event, POSTed to each subscribed endpoint and signed in `Mediaq-Signature`.
/// Deliveries are at least once: deduplicate on `id`.
#[derive(ToSchema)]
pub struct WebhookEvent {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(rename = "type")]
    pub type_: WebhookEventType,
    /// Unix seconds.
    pub created: i64,
    pub data: EventData,
}
