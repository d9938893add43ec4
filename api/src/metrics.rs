//! The API's metrics: HTTP latency by route template and status class, accepted upload bytes,
//! and queue gauges read from PostgreSQL when `/metrics` is scraped (at most once a second;
//! scrapes in between get the previous values).
//!
//! Labels are bounded: routes are axum's `MatchedPath` templates (`/v1/jobs/{id}`, never a raw
//! path; `unmatched` otherwise), methods are the standard ones (`other` otherwise), statuses are
//! classes (`2xx`...).

use std::{
    sync::atomic::AtomicU64,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use mediaq_shared::{
    db::stats::{self, BREAKER_STATES, JOB_STATUSES},
    metrics::{status_class, HTTP_BUCKETS},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sqlx::PgPool;

use crate::app::AppState;

/// Database gauges are refreshed at most this often, however often `/metrics` is scraped.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    action: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

pub struct ApiMetrics {
    registry: Registry,
    http: Family<HttpLabels, Histogram>,
    uploads: Counter,
    upload_bytes: Counter,
    uploads_in_flight: Gauge,
    uploads_refused_busy: Counter,
    refused: Family<RefusedLabels, Counter>,
    jobs: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    pending_tasks: Gauge,
    oldest_queued: Gauge<f64, AtomicU64>,
    oldest_due: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
    worker_demand: Gauge,
    workers_alive: Gauge,
    webhook_endpoints: Family<StateLabel, Gauge>,
    scrape_errors: Counter,
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        let metrics = Self {
            http,
            uploads: Counter::default(),
            upload_bytes: Counter::default(),
            uploads_in_flight: Gauge::default(),
            uploads_refused_busy: Counter::default(),
            refused: Family::default(),
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            pending_tasks: Gauge::default(),
            oldest_queued: Gauge::default(),
            oldest_due: Gauge::default(),
            dead_letters: Gauge::default(),
            worker_demand: Gauge::default(),
            workers_alive: Gauge::default(),
            webhook_endpoints: Family::default(),
            scrape_errors: Counter::default(),
            refreshed: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register(
            "mediaq_http_request_duration_seconds",
            "HTTP requests by method, route template and status class, and their latency",
            m.http.clone(),
        );
        registry.register("mediaq_uploads", "Uploads accepted (jobs created)", m.uploads.clone());
        registry.register("mediaq_upload_bytes", "Bytes of accepted uploads", m.upload_bytes.clone());
        registry.register(
            "mediaq_uploads_in_flight",
            "Uploads being received now (at most MEDIAQ_MAX_CONCURRENT_UPLOADS)",
            m.uploads_in_flight.clone(),
        );
        registry.register(
            "mediaq_uploads_refused_busy",
            "Uploads refused with 503 server_busy because MEDIAQ_MAX_CONCURRENT_UPLOADS were in flight",
            m.uploads_refused_busy.clone(),
        );
        registry.register(
            "mediaq_requests_refused",
            "Refused requests by audit action (auth.failed, rate_limit.hit, upload.refused) and reason; \
             the audit trail holds them aggregated per client address and window",
            m.refused.clone(),
        );
        registry.register("mediaq_jobs", "Jobs by status", m.jobs.clone());
        registry.register("mediaq_queue_depth", "Jobs waiting in the queue (status queued)", m.queue_depth.clone());
        registry.register(
            "mediaq_queue_pending_tasks",
            "Tasks of the transcode queue that apalis holds as pending (ready or scheduled for a retry)",
            m.pending_tasks.clone(),
        );
        registry.register(
            "mediaq_queue_oldest_age_seconds",
            "Age of the oldest queued job, since it was created (0 when none)",
            m.oldest_queued.clone(),
        );
        registry.register(
            "mediaq_queue_oldest_due_age_seconds",
            "How long the oldest queued job that is due (not waiting out a retry backoff) has waited (0 when none)",
            m.oldest_due.clone(),
        );
        registry.register(
            "mediaq_dead_letter_jobs",
            "Failed jobs that used up their retry budget",
            m.dead_letters.clone(),
        );
        registry.register(
            "mediaq_worker_demand",
            "Worker slots wanted now: jobs due (new, handed back, retries past their backoff), live uploads \
             with stored bytes, and jobs being converted (the view mediaq_worker_demand, what autoscalers follow)",
            m.worker_demand.clone(),
        );
        registry.register(
            "mediaq_workers_alive",
            "Worker processes that beat within their last three heartbeats (the worker_processes table)",
            m.workers_alive.clone(),
        );
        registry.register(
            "mediaq_webhook_endpoints",
            "Live webhook endpoints by circuit-breaker state",
            m.webhook_endpoints.clone(),
        );
        registry.register(
            "mediaq_metrics_refresh_errors",
            "Scrapes whose database gauges could not be refreshed (they keep their previous values)",
            m.scrape_errors.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts an accepted upload of `bytes`.
    pub fn record_upload(&self, bytes: u64) {
        self.uploads.inc();
        self.upload_bytes.inc_by(bytes);
    }

    pub fn upload_refused_busy(&self) {
        self.uploads_refused_busy.inc();
    }

    pub fn request_refused(&self, action: &'static str, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { action, reason }).inc();
    }

    fn observe_http(&self, method: &axum::http::Method, route: Option<&str>, status: u16, elapsed: Duration) {
        let method = match method.as_str() {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        let labels =
            HttpLabels { method, route: route.unwrap_or("unmatched").to_owned(), status: status_class(status) };
        self.http.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// The exposition text, with the database gauges refreshed when they are older than a second.
    pub async fn render(&self, pool: &PgPool, uploads_in_flight: usize) -> String {
        self.uploads_in_flight.set(uploads_in_flight as i64);
        self.refresh(pool).await;
        mediaq_shared::metrics::render(&self.registry)
    }

    async fn refresh(&self, pool: &PgPool) {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        match stats::queue_stats(pool).await {
            Ok(s) => {
                for status in JOB_STATUSES {
                    self.jobs.get_or_create(&StatusLabel { status }).set(s.jobs(status));
                }
                self.queue_depth.set(s.jobs("queued"));
                self.pending_tasks.set(s.pending_tasks);
                self.oldest_queued.set(s.oldest_queued_age_s.unwrap_or(0.0));
                self.oldest_due.set(s.oldest_due_age_s.unwrap_or(0.0));
                self.dead_letters.set(s.dead_letters);
                self.worker_demand.set(s.worker_demand);
                self.workers_alive.set(s.workers_alive);
                for state in BREAKER_STATES {
                    self.webhook_endpoints.get_or_create(&StateLabel { state }).set(s.endpoints(state));
                }
                *refreshed = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: could not read the queue statistics");
                self.scrape_errors.inc();
            }
        }
    }
}

/// Times every request and counts it under its route template.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_http(&method, route.as_deref(), response.status().as_u16(), started.elapsed());
    response
}
