//! Application state and the router.

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
    Router,
};
use mediaq_shared::{config::ApiConfig, storage::Storage};
use sqlx::PgPool;

use crate::{body_limit, error::ApiError, limits, metrics, request_id, routes, security};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: Arc<ApiConfig>,
    pub limits: Arc<limits::RateLimits>,
    pub webhooks: Arc<mediaq_shared::webhook::WebhookConfig>,
    pub keys: Arc<crate::keycache::KeyCache>,
    pub metrics: Arc<metrics::ApiMetrics>,
    pub uploads: Arc<crate::ingest::slots::UploadSlots>,
    /// Refused requests, counted and written to the audit trail aggregated.
    pub rejections: Arc<crate::rejections::Rejections>,
    /// The storage check of `/readyz`, cached.
    pub storage_ready: Arc<crate::readiness::CachedCheck>,
}

pub fn router(state: AppState) -> Router {
    let hsts = state.config.hsts;
    let cors = security::cors(&state.config.cors_origins);
    let mut router = Router::new();
    for path in routes::page::script_paths() {
        router = router.route(&path, get(routes::page::script));
    }
    router
        .route("/v1/jobs", post(routes::jobs::create).get(routes::list::list))
        .route("/v1/jobs/{id}", get(routes::jobs::get).delete(routes::cancel::cancel))
        .route("/v1/jobs/{id}/output", get(routes::download::output))
        .route("/v1/jobs/{id}/poster", get(routes::poster::poster))
        .route("/v1/jobs/{id}/events", get(routes::audit::job_events))
        .route("/v1/audit", get(routes::audit::all))
        .route("/v1/admin/jobs/{id}/requeue", post(routes::admin::requeue))
        .route("/v1/admin/stats", get(routes::admin::stats))
        .route("/v1/upload-tokens", post(routes::tokens::create))
        .route("/", get(routes::page::index))
        .route("/app.css", get(routes::page::style))
        .route("/v1/webhooks", post(routes::webhooks::create).get(routes::webhooks::list))
        .route("/v1/webhooks/secret", post(routes::webhooks::rotate_secret))
        .route("/v1/webhooks/{id}", get(routes::webhooks::get).delete(routes::webhooks::delete))
        .route("/v1/webhooks/{id}/deliveries", get(routes::webhooks::list_deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery}/resend", post(routes::webhooks::resend))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .fallback(|| async { ApiError::RouteNotFound })
        // Uploads are streamed to disk and limited by MEDIAQ_MAX_UPLOAD_BYTES, not buffered.
        .layer(DefaultBodyLimit::disable())
        // Every other body: MEDIAQ_MAX_BODY_BYTES, checked before anything reads it.
        .layer(middleware::from_fn_with_state(state.clone(), body_limit::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), limits::middleware))
        .layer(cors)
        .layer(middleware::from_fn(move |req, next| security::headers(hsts, req, next)))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::middleware))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
