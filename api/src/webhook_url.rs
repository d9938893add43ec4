//! Webhook URLs given by clients (endpoints and per-job URLs), checked the same way.

use crate::{app::AppState, error::ApiError};

/// Checks a webhook URL: scheme, and every address its host resolves to.
pub async fn check(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let url = state.webhooks.policy.check_url(raw).await.map_err(|e| {
        if let mediaq_shared::webhook::address::UrlError::ForbiddenAddress(ip) = &e {
            // For the operator only: the caller is told that the host is not public, not what it resolves to.
            tracing::info!(address = %ip, "webhook URL refused: a non-public address");
        }
        ApiError::WebhookUrlRefused(e.to_string())
    })?;
    Ok(url.to_string())
}
