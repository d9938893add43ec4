//! HTTP routes: thin handlers over the domain functions in `ingest` and `mediaq_shared`.

pub mod cancel;
pub mod download;
pub mod health;
pub mod jobs;

use axum::{extract::FromRequestParts, http::request::Parts};
use mediaq_shared::JobId;

use crate::error::ApiError;

/// A `{id}` path segment parsed as a [`JobId`]; a malformed one is a 400 `invalid_job_id`.
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidJobId("the job id in the path is malformed".into()))?;
        raw.parse()
            .map(JobIdPath)
            .map_err(|e: mediaq_shared::job::InvalidJobId| ApiError::InvalidJobId(e.to_string()))
    }
}
