//! mediaq-api: takes WebM uploads, records jobs, serves status and results.

pub mod app;
pub mod auth;
pub mod body_limit;
pub mod config;
pub mod error;
pub mod etag;
pub mod idempotency;
pub mod ingest;
pub mod keycache;
pub mod metrics;
pub mod openapi;
pub mod playback;
pub mod quota;
pub mod rate_limit;
pub mod readiness;
pub mod rejections;
pub mod request_id;
pub mod routes;
pub mod security;
pub mod tus;
pub mod webhook_url;

use std::{net::SocketAddr, sync::Arc};

use config::ApiConfig;
use mediaq_shared::storage::Storage;

/// Binds, prints the address, and serves until SIGTERM/SIGINT, then drains in-flight requests.
/// Every setting is already parsed (`config`): nothing after the bind can fail on one.
pub async fn serve(config: ApiConfig) -> Result<(), Box<dyn std::error::Error>> {
    let pool = mediaq_shared::db::pool(&config.common)?;
    let storage = Storage::open(&config.common).map_err(|e| format!("cannot open storage: {}", e.reason()))?;
    let listener =
        tokio::net::TcpListener::bind(config.bind).await.map_err(|e| format!("cannot bind {}: {e}", config.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, storage = %storage.describe(), "mediaq-api listening");
    let signal = mediaq_shared::signals::shutdown_signal()?;
    // Machine-readable start-up line (tests and scripts read the port from it).
    println!("mediaq-api listening on http://{addr}");
    let rate_limits = rate_limit::RateLimits::new(config.rate_limit_ip, config.rate_limit_key);
    tokio::spawn({
        let rate_limits = rate_limits.clone();
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                rate_limits.shrink();
            }
        }
    });
    let webhooks = Arc::new(config.webhooks.clone());
    if !webhooks.sealer.is_on() {
        tracing::warn!(
            "MEDIAQ_SECRETS_KEY is not set: webhook signing secrets are stored in plain text in the database \
             (see docs/WEBHOOKS.md)"
        );
    }
    let links = Arc::new(playback::LinkSigner::new(&config.links));
    if links.ephemeral {
        tracing::warn!(
            "MEDIAQ_LINK_KEY is not set: playback links are signed with a random key of this process, so they \
             open only on this API process and until it restarts"
        );
    }
    let keys = keycache::KeyCache::new(config.key_cache_ttl);
    tokio::spawn(keys.clone().listen(pool.clone()));
    #[cfg(feature = "bench-no-auth")]
    tracing::warn!("BENCHMARK BUILD: authentication is OFF (feature bench-no-auth); never deploy this binary");
    let metrics = Arc::new(metrics::ApiMetrics::new());
    let uploads = Arc::new(ingest::slots::UploadSlots::new(
        config.max_concurrent_uploads,
        config.max_uploads_per_key,
        metrics.clone(),
    ));
    let rejections = rejections::Rejections::new(config.audit_failure_window, metrics.clone());
    tokio::spawn(rejections.clone().run(pool.clone()));
    let state = app::AppState {
        pool: pool.clone(),
        storage,
        config: Arc::new(config),
        rate_limits,
        webhooks,
        keys,
        links,
        metrics,
        uploads,
        in_progress: Arc::default(),
        rejections: rejections.clone(),
        storage_ready: Arc::new(readiness::CachedCheck::new(readiness::TTL)),
    };
    let app = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutdown requested: draining in-flight requests");
        })
        .await?;
    // Refusals counted since the last flush are written before the pool closes.
    let written = rejections.flush(&pool, true).await;
    tracing::info!(rows = written, "aggregated refusals written to the audit trail");
    pool.close().await;
    tracing::info!("mediaq-api stopped");
    Ok(())
}
