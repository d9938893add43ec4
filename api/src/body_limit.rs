//! A small limit on the body of every route but the upload (MEDIAQ_MAX_BODY_BYTES), enforced
//! before any handler or extractor (authentication included) reads a byte of it.
//!
//! Uploads (`POST /v1/jobs`, tus's `/v1/uploads`) stream to storage under their own limits and are left alone. Every
//! other body is small JSON at most, so: a declared `Content-Length` over the limit is refused at
//! once with 413 `payload_too_large` (hyper never delivers more than the declared length); a body
//! without one (chunked) is read here up to the limit and refused as soon as it crosses it, so at
//! most the limit is ever held in memory.

use axum::{
    body::{Body, HttpBody},
    extract::{Request, State},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;

use crate::{app::AppState, error::ApiError};

/// The routes whose bodies are uploads, not limited here: `POST /v1/jobs`, and tus's
/// `POST /v1/uploads` (creation-with-upload) and `PATCH /v1/uploads/{id}`.
fn is_upload(request: &Request) -> bool {
    let path = request.uri().path();
    match *request.method() {
        Method::POST => path == "/v1/jobs" || path == "/v1/uploads",
        Method::PATCH => path.starts_with("/v1/uploads/") && !path["/v1/uploads/".len()..].contains('/'),
        _ => false,
    }
}

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_upload(&request) || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let limit = state.config.max_body_bytes;
    let declared: Option<u64> =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse().ok());
    match declared {
        Some(length) if length > limit => return refuse(limit),
        Some(_) => return next.run(request).await,
        None => {}
    }
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::BadRequest("the request body could not be read to its end".into()).into_response();
        };
        if (buffered.len() + chunk.len()) as u64 > limit {
            return refuse(limit);
        }
        buffered.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(parts, Body::from(buffered))).await
}

fn refuse(limit: u64) -> Response {
    tracing::info!(limit, "request body over MEDIAQ_MAX_BODY_BYTES refused before it was read");
    ApiError::BodyTooLarge(limit).into_response()
}
