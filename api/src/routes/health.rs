//! `GET /healthz` (the process is up) and `GET /readyz` (it can do its job).

use axum::routing::get;
use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use crate::app::AppState;

/// Liveness: the process is up. No credential.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "Up.", body = crate::openapi::schemas::Health)))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when the database is reachable with current migrations and the store accepts writes
/// (checked at most every few seconds);
/// otherwise 503 with each check's state and, for storage, the code and the cause.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Not ready: each check's state.", body = crate::openapi::schemas::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match mediaq_shared::db::migrations_current(&state.pool).await {
        Ok(true) => "ok",
        Ok(false) => "migrations_pending",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unavailable"
        }
    };
    // Cached for a few seconds (crate::readiness): the check writes to the store.
    let checked = state
        .storage_ready
        .get(|| async {
            state.storage.check_ready().await.map_err(|e| {
                let reason = e.reason();
                tracing::warn!(error = %e, %reason, storage = %state.storage.describe(), "readiness: storage check failed");
                reason.to_string()
            })
        })
        .await;
    let (storage, storage_error) = match checked {
        Ok(()) => ("ok", None),
        Err(reason) => ("unavailable", Some(json!({ "code": "storage_unavailable", "message": reason }))),
    };
    let ready = database == "ok" && storage == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": { "database": database, "storage": storage },
    });
    if let Some(error) = storage_error {
        body["error"] = error;
    }
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}
