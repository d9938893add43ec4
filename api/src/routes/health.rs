//! `GET /healthz` (the process is up) and `GET /readyz` (it can do its job).

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use crate::app::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match mediaq_shared::db::migrations_current(&state.pool).await {
        Ok(true) => "ok",
        Ok(false) => "migrations_pending",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unavailable"
        }
    };
    let storage = match state.storage.check_writable() {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: storage is not writable");
            "unavailable"
        }
    };
    let ready = database == "ok" && storage == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": { "database": database, "storage": storage },
    });
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body))
}
