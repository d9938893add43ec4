//! A small limit on the body of every route but the upload (MEDIAQ_MAX_BODY_BYTES), enforced
//! before any handler or extractor (authentication included) reads a byte of it.
//!
//! The upload (`POST /v1/jobs`) streams to storage under its own limits and is left alone. Every
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

/// The one route whose body is not limited here.
fn is_upload(request: &Request) -> bool {
    request.method() == Method::POST && request.uri().path() == "/v1/jobs"
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
