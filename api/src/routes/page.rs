//! The upload page (`GET /`, `/app.css` and the page's scripts, `/{name}.js`): static assets embedded in the binary, with
//! their own CSP and Permissions-Policy (camera and microphone for recording), strong ETags and
//! `Cache-Control: no-cache` (revalidated on every load, `304` when unchanged).

use axum::routing::get;
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::{app::AppState, error::ApiError, etag};

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const APP_CSS: &str = include_str!("../../../web/app.css");
/// The page's ES modules (`app.js` imports the others), by file name.
const SCRIPTS: [(&str, &str); 6] = [
    ("app.js", include_str!("../../../web/app.js")),
    ("row.js", include_str!("../../../web/row.js")),
    ("messages.js", include_str!("../../../web/messages.js")),
    ("tus.js", include_str!("../../../web/tus.js")),
    // The operators' dashboard (`/admin`, routes::admin_page).
    ("admin.js", include_str!("../../../web/admin.js")),
    ("plot.js", include_str!("../../../web/plot.js")),
];

/// The page's placeholder for the upload limit, filled from `MEDIAQ_MAX_UPLOAD_BYTES`.
const MAX_UPLOAD_PLACEHOLDER: &str = "{{MAX_UPLOAD_BYTES}}";

/// The document's policy: its own script and style files only (nothing inline), media and
/// images from this origin only (the converted MP4 and its poster play through their signed
/// links, `/v1/play/...`, never through blob: URLs), requests to this origin only.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                            media-src 'self'; connect-src 'self'; form-action 'none'; \
                            frame-ancestors 'none'; base-uri 'none'";
/// Recording needs the camera and the microphone, for this origin only.
pub const PAGE_PERMISSIONS: &str = "camera=(self), microphone=(self), geolocation=(), interest-cohort=()";

/// The upload page (HTML). No credential: the page asks for one.
#[utoipa::path(get, path = "/", tag = "page", operation_id = "page_index",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
    ))]
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let html = INDEX_HTML.replace(MAX_UPLOAD_PLACEHOLDER, &state.config.max_upload_bytes.to_string());
    let mut response = asset(&headers, "text/html; charset=utf-8", html.into_bytes());
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(HeaderName::from_static("permissions-policy"), HeaderValue::from_static(PAGE_PERMISSIONS));
    response
}

/// The page's scripts, for the router: one route each.
pub fn script_paths() -> impl Iterator<Item = String> {
    SCRIPTS.iter().map(|(name, _)| format!("/{name}"))
}

pub async fn script(uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let name = uri.path().trim_start_matches('/');
    let (_, source) = SCRIPTS.iter().find(|(n, _)| *n == name).ok_or(ApiError::RouteNotFound)?;
    Ok(asset(&headers, "text/javascript; charset=utf-8", source.as_bytes().to_vec()))
}

/// The page's style sheet.
#[utoipa::path(get, path = "/app.css", tag = "page", operation_id = "page_style",
    responses(
        (status = 200, description = "The style sheet.", content_type = "text/css", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
    ))]
pub async fn style(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", APP_CSS.as_bytes().to_vec())
}

/// The body with a strong ETag (a hash of the exact bytes), or `304` when the client has it.
pub(crate) fn asset(request: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", hex::encode(&digest[..16]));
    let hit = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag::if_none_match_hits(v, &etag));
    let mut response = if hit {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

pub fn router() -> axum::Router<AppState> {
    let mut router = axum::Router::new().route("/", get(index)).route("/app.css", get(style));
    for path in script_paths() {
        router = router.route(&path, get(script));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_and_a_limit_placeholder() {
        assert!(INDEX_HTML.contains(MAX_UPLOAD_PLACEHOLDER));
        for forbidden in ["<style", " style=", "onclick=", "onload=", "javascript:", "http://", "https://"] {
            assert!(!INDEX_HTML.contains(forbidden), "index.html contains {forbidden:?}");
        }
        // Scripts only by src.
        assert!(INDEX_HTML.matches("<script").count() == INDEX_HTML.matches("<script type=\"module\" src=").count());
        for (name, source) in SCRIPTS {
            for forbidden in ["http://", "https://", "localStorage", "sessionStorage", "document.cookie", "eval("] {
                assert!(!source.contains(forbidden), "{name} contains {forbidden:?}");
            }
        }
    }
}
