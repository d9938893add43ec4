//! `POST /v1/upload-tokens`: a backend mints a short-lived, single-use upload credential for a
//! browser form, so that the browser never holds an API key.

use axum::routing::post;
use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use mediaq_shared::{
    apikey::{Credential, Kind, Scope},
    db::{audit, audit::AuditEvent, tokens},
};
use serde::Deserialize;
use serde_json::json;

use crate::{app::AppState, auth::Caller, error::ApiError, request_id};

/// Longest lifetime a token may ask for.
const MAX_TTL_SECS: u64 = 3600;
/// Largest metadata object kept with a token.
const MAX_METADATA_BYTES: usize = 4096;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Largest upload the token allows (default and ceiling: MEDIAQ_MAX_UPLOAD_BYTES).
    max_bytes: Option<serde_json::Number>,
    /// Lifetime in seconds (default MEDIAQ_UPLOAD_TOKEN_TTL, at most 3600).
    expires_in: Option<serde_json::Number>,
    /// Free-form JSON object kept with the token (e.g. the backend's own reference).
    metadata: Option<serde_json::Value>,
}

/// A whole number from 0 to 2^63 - 1 (the document's int64), written `443` or `443.0` (JSON
/// Schema counts both as integers).
fn whole(n: Option<&serde_json::Number>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(n) = n else { return Ok(None) };
    let value = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    match value.filter(|v| i64::try_from(*v).is_ok()) {
        Some(v) => Ok(Some(v)),
        None => Err(ApiError::BadRequest(format!("{name} must be a whole number from 0 to 2^63 - 1"))),
    }
}

/// Mint a single-use upload token for a browser form (API keys only), shown once.
#[utoipa::path(post, path = "/v1/upload-tokens", tag = "upload-tokens", operation_id = "create_upload_token",
    security(("bearer" = ["jobs:write"])),
    request_body(content = Option<crate::openapi::schemas::UploadTokenRequest>, description = "Optional; an empty body takes the defaults."),
    responses((status = 201, description = "The token.", body = crate::openapi::schemas::UploadToken)))]
#[tracing::instrument(name = "create_upload_token", skip_all)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Option<Json<TokenRequest>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_key()?;
    caller.require(Scope::JobsWrite)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let max_bytes = whole(request.max_bytes.as_ref(), "max_bytes")?
        .unwrap_or(state.config.max_upload_bytes)
        .clamp(1, state.config.max_upload_bytes);
    let ttl = whole(request.expires_in.as_ref(), "expires_in")?
        .unwrap_or(state.config.upload_token_ttl.as_secs())
        .clamp(1, MAX_TTL_SECS);
    let metadata = request.metadata.unwrap_or_else(|| json!({}));
    let text = metadata.to_string();
    if !metadata.is_object() || text.len() > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!(
            "metadata must be a JSON object of at most {MAX_METADATA_BYTES} bytes"
        )));
    }
    // PostgreSQL's jsonb cannot hold U+0000 (found by the fuzzer: it was a 500).
    if text.contains("\\u0000") {
        return Err(ApiError::BadRequest("metadata must not contain the character U+0000".into()));
    }
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
    let credential = Credential::generate(Kind::UploadToken);
    let mut tx = state.pool.begin().await?;
    tokens::create(&mut *tx, &credential, &caller.owner, &caller.key_id, max_bytes, &metadata, expires_at).await?;
    let event = AuditEvent::new(caller.actor(), "token.created")
        .request(request_id::current(), None)
        .details(json!({ "token_id": credential.id, "max_bytes": max_bytes, "expires_at": expires_at }));
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    let body = json!({
        "token": credential.reveal(),
        "token_id": credential.id,
        "expires_at": expires_at,
        "max_bytes": max_bytes,
    });
    Ok((StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)))
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/upload-tokens", post(create))
}
