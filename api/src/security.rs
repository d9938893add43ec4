//! Response hardening: security headers on every response, CORS for an explicit list of
//! origins only (bearer credentials, never cookies), and TRACE refused.

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{error::ApiError, tus};

/// Headers every response carries unless its handler set its own: the API's CSP allows nothing
/// (the upload page, `routes::page`, sets a policy of its own).
const HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
];

const HSTS: &str = "max-age=31536000; includeSubDomains";

pub async fn headers(hsts: bool, request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::TRACE {
        ApiError::MethodNotAllowed.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    for (name, value) in HEADERS {
        h.entry(HeaderName::from_static(name)).or_insert(HeaderValue::from_static(value));
    }
    let is_json = h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// CORS for the configured origins; none configured means same-origin only.
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PATCH, Method::HEAD])
        .allow_headers(
            [
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ]
            .into_iter()
            .chain(tus::REQUEST_HEADERS.map(HeaderName::from_static))
            .collect::<Vec<_>>(),
        )
        .expose_headers(
            [
                header::LOCATION,
                header::ETAG,
                header::RETRY_AFTER,
                header::CONTENT_DISPOSITION,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotent-replayed"),
            ]
            .into_iter()
            .chain(tus::RESPONSE_HEADERS.map(HeaderName::from_static))
            .collect::<Vec<_>>(),
        )
        .max_age(std::time::Duration::from_secs(600))
}
