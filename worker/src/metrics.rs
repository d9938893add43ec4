//! The worker's metrics, served on MEDIAQ_METRICS_BIND (`/metrics`, and `/healthz` for
//! orchestrators): attempts by outcome and error code, attempt durations, transcode speed
//! (media seconds per wall second), the sandbox layers the start-up self-check found, and
//! webhook deliveries by outcome.
//!
//! Labels are bounded: outcomes are the worker's own words, and error codes outside the
//! documented set (a compromised child could print anything) are counted as `other`.

use std::{net::SocketAddr, sync::atomic::AtomicU64, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use mediaq_shared::config::Redacted;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::selfcheck::LayerReport;

/// Error codes that may appear as a label (the README's job failure codes, plus the worker's own).
const CODES: [&str; 19] = [
    "invalid_media",
    "unsupported_codec",
    "damaged_input",
    "dimensions_exceeded",
    "pixels_exceeded",
    "duration_exceeded",
    "streams_exceeded",
    "frame_rate_exceeded",
    "output_size_exceeded",
    "transcode_error",
    "sandbox_violation",
    "resource_limit",
    "timeout",
    "transcoder_crashed",
    "stalled",
    "storage_error",
    "worker_crashed",
    "canceled",
    "interrupted",
];

/// Attempt durations, in seconds: from a short clip to the 2 h default timeout.
const ATTEMPT_BUCKETS: [f64; 12] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 7200.0];
/// Transcode speed, in media seconds per wall second (x realtime).
const SPEED_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    outcome: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabel {
    layer: &'static str,
}

pub struct WorkerMetrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<OutcomeLabel, Histogram>,
    speed: Histogram,
    last_speed: Gauge<f64, AtomicU64>,
    in_flight: Gauge,
    sandbox: Family<LayerLabel, Gauge>,
    landlock_abi: Gauge,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            registry: Registry::default(),
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(|| Histogram::new(ATTEMPT_BUCKETS)),
            speed: Histogram::new(SPEED_BUCKETS),
            last_speed: Gauge::default(),
            in_flight: Gauge::default(),
            sandbox: Family::default(),
            landlock_abi: Gauge::default(),
            webhook_deliveries: Family::default(),
        };
        let m = &metrics;
        registry.register(
            "mediaq_attempts",
            "Attempts ended, by outcome (succeeded, failed, canceled, interrupted, parked, superseded) and error code",
            m.attempts.clone(),
        );
        registry.register(
            "mediaq_attempt_duration_seconds",
            "Wall time of attempts whose transcoder ran, by outcome",
            m.attempt_duration.clone(),
        );
        registry.register(
            "mediaq_transcode_speed_ratio",
            "Media seconds converted per wall second (x realtime), per successful attempt",
            m.speed.clone(),
        );
        registry.register(
            "mediaq_transcode_last_speed_ratio",
            "Transcode speed of the last successful attempt (x realtime)",
            m.last_speed.clone(),
        );
        registry.register("mediaq_attempts_in_flight", "Attempts running now in this process", m.in_flight.clone());
        registry.register(
            "mediaq_sandbox_layer_active",
            "Sandbox layers the start-up self-check found active (1) or missing (0)",
            m.sandbox.clone(),
        );
        registry.register(
            "mediaq_sandbox_landlock_abi",
            "The kernel's Landlock ABI version as the transcoder saw it (0: unsupported)",
            m.landlock_abi.clone(),
        );
        registry.register(
            "mediaq_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retrying, gave_up, superseded)",
            m.webhook_deliveries.clone(),
        );
        // Zero series from the start, so that rates and alerts work before the first delivery.
        for outcome in ["delivered", "retrying", "gave_up", "superseded"] {
            let _ = metrics.webhook_deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        Self { registry, ..metrics }
    }

    /// Records the layers of the start-up self-check.
    pub fn set_sandbox(&self, report: &LayerReport) {
        let landlock = matches!(report.child.landlock.as_str(), "full" | "partial");
        let mut layers = vec![
            ("landlock", landlock),
            ("seccomp", report.child.seccomp),
            ("no_new_privs", report.child.no_new_privs),
            ("namespaces", report.namespaces),
            ("pid_namespace", report.child.pid_namespace),
            ("rlimits", report.child.rlimits),
        ];
        if let Some(unprivileged) = report.unprivileged_user {
            layers.push(("unprivileged_user", unprivileged));
        }
        for (layer, active) in layers {
            self.sandbox.get_or_create(&LayerLabel { layer }).set(i64::from(active));
        }
        self.landlock_abi.set(i64::from(report.child.landlock_abi));
    }

    /// Records an ended attempt: its outcome, error code, wall time when the transcoder ran, and
    /// its speed when it succeeded with a known media duration.
    pub fn attempt_ended(
        &self,
        outcome: &'static str,
        code: Option<&str>,
        wall: Option<Duration>,
        media_s: Option<f64>,
    ) {
        let code = code.map_or("none", |c| CODES.iter().find(|k| **k == c).copied().unwrap_or("other"));
        self.attempts.get_or_create(&AttemptLabels { outcome, code }).inc();
        let Some(wall) = wall else { return };
        self.attempt_duration.get_or_create(&OutcomeLabel { outcome }).observe(wall.as_secs_f64());
        if let Some(media) = media_s.filter(|m| *m > 0.0 && outcome == "succeeded" && !wall.is_zero()) {
            let speed = media / wall.as_secs_f64();
            self.speed.observe(speed);
            self.last_speed.set(speed);
        }
    }

    /// Counts one running attempt until the guard is dropped.
    pub fn attempt_running(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }

    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn render(&self) -> String {
        mediaq_shared::metrics::render(&self.registry)
    }
}

/// An attempt in flight (see [`WorkerMetrics::attempt_running`]).
pub struct InFlight(Arc<WorkerMetrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

struct Served {
    metrics: Arc<WorkerMetrics>,
    token: Option<Redacted>,
    /// No token, and an address other machines can reach (a container's `0.0.0.0`): `/metrics`
    /// is refused (job counts, queue sizes, sandbox layers are not for the compose network);
    /// `/healthz` stays open for the healthcheck.
    closed: bool,
}

/// Binds MEDIAQ_METRICS_BIND, prints the address (port 0 picks a free one) and serves
/// `/metrics` and `/healthz` in the background.
pub async fn listen(
    bind: SocketAddr,
    metrics: Arc<WorkerMetrics>,
    token: Option<Redacted>,
) -> Result<SocketAddr, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let closed = token.is_none() && !addr.ip().is_loopback();
    if closed {
        tracing::warn!(%addr, "MEDIAQ_METRICS_BIND is not a loopback address and MEDIAQ_METRICS_TOKEN is unset: /metrics is refused (set the token)");
    }
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{\"status\":\"ok\"}") }))
        .with_state(Arc::new(Served { metrics, token, closed }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    // Machine-readable, like the API's start-up line (tests read the port from it).
    println!("mediaq-worker metrics on http://{addr}");
    tracing::info!(%addr, "metrics listening");
    Ok(addr)
}

async fn scrape(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if served.closed {
        let body = "{\"error\":{\"code\":\"metrics_token_required\",\"message\":\"set MEDIAQ_METRICS_TOKEN to serve /metrics on a non-loopback address\"}}";
        return (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    if let Some(token) = &served.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !mediaq_shared::metrics::bearer_matches(given, token.expose()) {
            let body = "{\"error\":{\"code\":\"unauthorized\",\"message\":\"the metrics token is missing or wrong\"}}";
            return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    }
    let content_type = HeaderValue::from_static(mediaq_shared::metrics::CONTENT_TYPE);
    ([(header::CONTENT_TYPE, content_type)], served.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
        let url = format!("http://127.0.0.1:{}{path}", addr.port());
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// A container binds `0.0.0.0`: without a token, `/metrics` is not served to the network
    /// (issue #26, item 8); `/healthz` is. Loopback without a token stays open, as before.
    #[tokio::test]
    async fn metrics_on_a_reachable_address_need_the_token() {
        let metrics = Arc::new(WorkerMetrics::new());
        let open_to_all = listen("0.0.0.0:0".parse().unwrap(), metrics.clone(), None).await.unwrap();
        assert_eq!(get(open_to_all, "/metrics", None).await, 403);
        assert_eq!(get(open_to_all, "/healthz", None).await, 200);
        let token = Some(Redacted("s3cret".into()));
        let with_token = listen("0.0.0.0:0".parse().unwrap(), metrics.clone(), token).await.unwrap();
        assert_eq!(get(with_token, "/metrics", None).await, 401);
        assert_eq!(get(with_token, "/metrics", Some("s3cret")).await, 200);
        let local = listen("127.0.0.1:0".parse().unwrap(), metrics, None).await.unwrap();
        assert_eq!(get(local, "/metrics", None).await, 200);
    }
}
