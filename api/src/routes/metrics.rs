//! `GET /metrics`: Prometheus metrics. No API key; a bearer token when MEDIAQ_METRICS_TOKEN is
//! set. Operators keep it off the public internet either way (see docs/DEPLOY.md).

use axum::routing::get;
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};

use crate::{app::AppState, error::ApiError};

/// Prometheus metrics (text exposition format). A bearer token only when MEDIAQ_METRICS_TOKEN is set.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics.", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "unauthorized (MEDIAQ_METRICS_TOKEN is set and the token is missing or wrong)"),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.common.metrics_token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !mediaq_shared::metrics::bearer_matches(given, token.expose()) {
            return Err(ApiError::Unauthorized("the metrics token is missing or wrong"));
        }
    }
    let body = state.metrics.render(&state.pool, state.uploads.in_flight()).await;
    let content_type = HeaderValue::from_static(mediaq_shared::metrics::CONTENT_TYPE);
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], body)
        .into_response())
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/metrics", get(metrics))
}
