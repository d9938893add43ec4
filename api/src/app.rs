//! Application state and the router.

use std::sync::Arc;

use axum::{extract::DefaultBodyLimit, middleware, Router};
use mediaq_shared::storage::Storage;
use sqlx::PgPool;

use crate::{body_limit, config::ApiConfig, error::ApiError, metrics, rate_limit, request_id, routes, security};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: Arc<ApiConfig>,
    pub rate_limits: Arc<rate_limit::RateLimits>,
    pub webhooks: Arc<mediaq_shared::webhook::WebhookConfig>,
    pub keys: Arc<crate::keycache::KeyCache>,
    /// Signs and checks playback links.
    pub links: Arc<crate::playback::LinkSigner>,
    pub metrics: Arc<metrics::ApiMetrics>,
    pub uploads: Arc<crate::ingest::slots::UploadSlots>,
    /// Hash states of resumable uploads in progress.
    pub in_progress: Arc<crate::ingest::resumable::InProgress>,
    /// Refused requests, counted and written to the audit trail aggregated.
    pub rejections: Arc<crate::rejections::Rejections>,
    /// The storage check of `/readyz`, cached.
    pub storage_ready: Arc<crate::readiness::CachedCheck>,
}

pub fn router(state: AppState) -> Router {
    let hsts = state.config.hsts;
    let cors = security::cors(&state.config.cors_origins);
    routes::router()
        .fallback(|| async { ApiError::RouteNotFound })
        // Uploads are streamed to disk and limited by MEDIAQ_MAX_UPLOAD_BYTES, not buffered.
        .layer(DefaultBodyLimit::disable())
        // Every other body: MEDIAQ_MAX_BODY_BYTES, checked before anything reads it.
        .layer(middleware::from_fn_with_state(state.clone(), body_limit::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit::middleware))
        .layer(cors)
        .layer(middleware::from_fn_with_state(state.clone(), routes::uploads::discovery))
        .layer(middleware::from_fn(move |req, next| security::headers(hsts, req, next)))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::middleware))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
