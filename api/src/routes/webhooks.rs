//! `/v1/webhooks`: an owner's endpoints (register, list, show, delete), its signing secret
//! (shown once; rotation keeps the old one signing for a grace period), and each endpoint's
//! deliveries (with attempts) and re-sends. Delivery itself is the worker's.

use axum::routing::{get, post};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::IntoResponse,
    Json,
};
use mediaq_shared::{
    apikey::Scope,
    db::{audit, audit::AuditEvent, deliveries, webhooks},
    webhook::EVENT_TYPES,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::{app::AppState, auth::Caller, error::ApiError, request_id};

/// Endpoints one owner may register.
const MAX_ENDPOINTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    url: String,
    /// Event types to receive (default: all of them).
    events: Option<Vec<String>>,
}

fn manager(caller: &Caller) -> Result<(), ApiError> {
    caller.require_key()?;
    caller.require(Scope::JobsWrite)
}

async fn audit_event(state: &AppState, caller: &Caller, action: &'static str, details: serde_json::Value) {
    let event = AuditEvent::new(caller.actor(), action).request(request_id::current(), None).details(details);
    if let Err(e) = audit::record(&state.pool, &event).await {
        tracing::error!(error = %e, action, "could not write an audit row");
    }
}

/// Register an endpoint. The owner's signing secret is created with the first one, and shown once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    security(("bearer" = ["jobs:write"])),
    request_body = crate::openapi::schemas::CreateWebhook,
    responses(
        (status = 201, description = "The endpoint.", body = crate::openapi::schemas::WebhookEndpointCreated),
        (status = 422, description = "webhook_url_refused"),
    ))]
#[tracing::instrument(name = "create_webhook", skip_all)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateEndpoint>,
) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let events = request.events.unwrap_or_else(|| EVENT_TYPES.iter().map(|e| e.to_string()).collect());
    if events.is_empty() || events.iter().any(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(ApiError::BadRequest(format!("events must be a non-empty list of: {}", EVENT_TYPES.join(", "))));
    }
    let url = crate::webhook_url::check(&state, &request.url).await?;
    if webhooks::list_endpoints(&state.pool, Some(&caller.owner)).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::BadRequest(format!("an owner may register at most {MAX_ENDPOINTS} endpoints")));
    }
    let mut tx = state.pool.begin().await?;
    let endpoint = webhooks::create_endpoint(&mut *tx, &caller.owner, &url, &events).await?;
    let secret = webhooks::ensure_secret(&mut *tx, &caller.owner, &state.webhooks.sealer).await?;
    let event = AuditEvent::new(caller.actor(), "webhook.created").request(request_id::current(), None).details(
        json!({ "endpoint_id": endpoint.id, "url": url, "events": events, "secret_created": secret.is_some() }),
    );
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    let mut body = serde_json::to_value(&endpoint).map_err(ApiError::internal)?;
    if let Some(secret) = secret {
        // Shown once: the owner's signing secret, for this and every other endpoint of the owner.
        body["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// The owner's endpoints (every owner's for admins).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    security(("bearer" = ["jobs:write"])),
    responses((status = 200, description = "The endpoints.", body = crate::openapi::schemas::WebhookEndpointList)))]
#[tracing::instrument(name = "list_webhooks", skip_all)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let endpoints = webhooks::list_endpoints(&state.pool, caller.owner_filter()).await?;
    Ok(Json(json!({ "endpoints": endpoints })))
}

async fn visible_endpoint(state: &AppState, caller: &Caller, raw: &str) -> Result<webhooks::Endpoint, ApiError> {
    let id: Uuid = raw.parse().map_err(|_| ApiError::WebhookNotFound)?;
    webhooks::get_endpoint(&state.pool, id)
        .await?
        .filter(|e| caller.is_admin() || e.owner == caller.owner)
        .ok_or(ApiError::WebhookNotFound)
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint.", body = crate::openapi::schemas::WebhookEndpoint),
        (status = 404, description = "webhook_not_found"),
    ))]
#[tracing::instrument(name = "get_webhook", skip_all)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    Ok(Json(visible_endpoint(&state, &caller, &id).await?))
}

/// Delete an endpoint (its pending deliveries are dropped).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", description = "The endpoint's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "webhook_not_found"),
    ))]
#[tracing::instrument(name = "delete_webhook", skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let endpoint = visible_endpoint(&state, &caller, &id).await?;
    webhooks::delete_endpoint(&state.pool, endpoint.id).await?;
    audit_event(&state, &caller, "webhook.deleted", json!({ "endpoint_id": endpoint.id })).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/secret`: a new signing secret (shown once); the previous one keeps
/// signing (a second `v1`) for MEDIAQ_WEBHOOK_ROTATION_GRACE.
#[utoipa::path(post, path = "/v1/webhooks/secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    security(("bearer" = ["jobs:write"])),
    responses((status = 201, description = "The new secret, shown once.", body = crate::openapi::schemas::WebhookSecret)))]
#[tracing::instrument(name = "rotate_webhook_secret", skip_all)]
pub async fn rotate_secret(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let grace = state.webhooks.rotation_grace;
    let secret = webhooks::rotate_secret(&state.pool, &caller.owner, grace, &state.webhooks.sealer).await?;
    audit_event(&state, &caller, "webhook.secret_rotated", json!({ "grace_s": grace.as_secs() })).await;
    let previous_valid_until = chrono::Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(json!({ "secret": secret, "previous_valid_until": previous_valid_until }))))
}

#[derive(Deserialize)]
pub struct DeliveryQuery {
    limit: Option<i64>,
}

/// An endpoint's deliveries, newest first, with their attempts.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "list_deliveries",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", description = "The endpoint's id."), ("limit" = Option<i64>, Query, description = "At most this many, 1 to 200 (default 50).")),
    responses(
        (status = 200, description = "The deliveries.", body = crate::openapi::schemas::DeliveryList),
        (status = 404, description = "webhook_not_found"),
    ))]
#[tracing::instrument(name = "list_deliveries", skip_all)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let endpoint = visible_endpoint(&state, &caller, &id).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let deliveries = deliveries::list(&state.pool, endpoint.id, limit).await?;
    Ok(Json(json!({ "endpoint": endpoint, "deliveries": deliveries })))
}

/// Send a delivery's event again, as a new delivery.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/resend", tag = "webhooks", operation_id = "resend_delivery",
    security(("bearer" = ["jobs:write"])),
    params(("id" = String, Path, format = "uuid", description = "The endpoint's id."), ("delivery" = String, Path, format = "uuid", description = "The delivery's id.")),
    responses(
        (status = 202, description = "Queued as a new delivery.", body = crate::openapi::schemas::Resent),
        (status = 404, description = "webhook_not_found, delivery_not_found"),
    ))]
#[tracing::instrument(name = "resend_delivery", skip_all)]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    manager(&caller)?;
    let endpoint = visible_endpoint(&state, &caller, &id).await?;
    let delivery: Uuid = delivery.parse().map_err(|_| ApiError::DeliveryNotFound)?;
    let new = deliveries::resend(&state.pool, endpoint.id, delivery).await?.ok_or(ApiError::DeliveryNotFound)?;
    audit_event(&state, &caller, "webhook.resent", json!({ "endpoint_id": endpoint.id, "delivery_id": new })).await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "delivery_id": new, "resent_from": delivery }))))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/secret", post(rotate_secret))
        .route("/v1/webhooks/{id}", get(get_one).delete(delete))
        .route("/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery}/resend", post(resend))
}
