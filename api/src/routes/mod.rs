//! HTTP routes, one module per resource, each with its own `router()`: thin handlers over the
//! domain functions in `ingest` and `mediaq_shared`.

pub mod admin;
pub mod admin_page;
pub mod audit;
pub mod dashboard;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod play;
pub mod stream;
pub mod tokens;
pub mod uploads;
pub mod webhooks;

use axum::{extract::FromRequestParts, http::request::Parts, routing::get, Router};
use mediaq_shared::JobId;

use crate::{app::AppState, auth::Caller, error::ApiError};

/// Every route of the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(jobs::router())
        .merge(uploads::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(dashboard::router())
        .merge(tokens::router())
        .merge(webhooks::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(page::router())
        .merge(play::router())
        .merge(admin_page::router())
        .route("/openapi.json", get(crate::openapi::serve))
}

/// The job, if it exists and the caller may see it (someone else's job is "not found").
pub async fn visible_job(state: &AppState, caller: &Caller, id: JobId) -> Result<mediaq_shared::Job, ApiError> {
    mediaq_shared::db::jobs::get(&state.pool, id).await?.filter(|j| caller.can_see(j)).ok_or(ApiError::JobNotFound)
}

/// A `{id}` path segment parsed as a [`JobId`]; a malformed one is a 400 `invalid_job_id`.
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidJobId("the job id in the path is malformed".into()))?;
        raw.parse().map(JobIdPath).map_err(|e: mediaq_shared::job::InvalidJobId| ApiError::InvalidJobId(e.to_string()))
    }
}
