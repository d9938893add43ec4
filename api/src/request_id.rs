//! Request ids and per-request spans. Each request gets an id (the client's `X-Request-Id` when it
//! is sane, else a new UUID), a span with the route template, and the id on its response; error
//! bodies read it from a task-local. Error responses produced outside our handlers (axum's 405,
//! unmatched routes) are rewritten here into the standard JSON error body.

use std::{net::SocketAddr, time::Instant};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tracing::Instrument;

use crate::error::ApiError;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id, inside a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn sane(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = route.as_deref().unwrap_or("<unmatched>"),
        request_id = %id,
        client_ip = ?peer,
    );
    let started = Instant::now();
    let response = REQUEST_ID
        .scope(id.clone(), async move {
            let response = next.run(request).await;
            normalize_error(response)
        })
        .instrument(span.clone())
        .await;
    let mut response = response;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// Rewrites non-JSON error responses (from axum or tower-http) into the standard error body,
/// keeping their status and headers (Allow, Content-Range...).
fn normalize_error(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::RANGE_NOT_SATISFIABLE => ApiError::RangeNotSatisfiable,
        // axum's JSON extractor: a body without `Content-Type: application/json`.
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("send the body as JSON, with `Content-Type: application/json`".into())
        }
        s if s.is_server_error() => ApiError::internal(format!("unhandled {s}")),
        // Every other extractor rejection (a 422 for JSON of the wrong shape among them) is a 400
        // `bad_request`: each status carries only the codes the API documents for it.
        s => ApiError::BadRequest(format!("the request was refused ({})", s.canonical_reason().unwrap_or("invalid"))),
    };
    let (mut parts, _) = response.into_parts();
    let (new_parts, body) = error.into_response().into_parts();
    parts.status = new_parts.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::sane;

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert!(sane("abc-123_DEF.4"));
        assert!(!sane(""));
        assert!(!sane(&"a".repeat(65)));
        assert!(!sane("a b"));
        assert!(!sane("a\r\nb"));
    }
}
