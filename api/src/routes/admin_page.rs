//! The operators' dashboard page (`GET /admin`, `/admin.css`; its scripts `admin.js` and
//! `plot.js` are served with the upload page's, `routes::page`): embedded static files, no
//! credential to load it (an admin key is pasted into it), its own CSP.

use axum::routing::get;
use axum::{
    http::{header, HeaderMap, HeaderName, HeaderValue},
    response::Response,
};

use super::page::asset;
use crate::app::AppState;

const ADMIN_HTML: &str = include_str!("../../../web/admin.html");
const ADMIN_CSS: &str = include_str!("../../../web/admin.css");

/// Its own script and style files only, requests to this origin only, nothing else (no media,
/// no frames, no forms sent anywhere).
pub const ADMIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                             connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
const ADMIN_PERMISSIONS: &str = "camera=(), microphone=(), geolocation=(), interest-cohort=()";

/// The operators' dashboard (HTML). No credential: the page asks for an admin key.
#[utoipa::path(get, path = "/admin", tag = "page", operation_id = "page_admin",
    responses(
        (status = 200, description = "The dashboard page.", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
    ))]
pub async fn admin(headers: HeaderMap) -> Response {
    let mut response = asset(&headers, "text/html; charset=utf-8", ADMIN_HTML.as_bytes().to_vec());
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(ADMIN_CSP));
    h.insert(HeaderName::from_static("permissions-policy"), HeaderValue::from_static(ADMIN_PERMISSIONS));
    response
}

/// The dashboard's style sheet.
#[utoipa::path(get, path = "/admin.css", tag = "page", operation_id = "page_admin_style",
    responses(
        (status = 200, description = "The style sheet.", content_type = "text/css", body = String),
        (status = 304, description = "Unchanged (`If-None-Match`)."),
    ))]
pub async fn style(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", ADMIN_CSS.as_bytes().to_vec())
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/admin", get(admin)).route("/admin.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_has_no_inline_script_or_style_and_no_external_reference() {
        for forbidden in ["<style", " style=", "onclick=", "onload=", "javascript:", "http://", "https://"] {
            assert!(!ADMIN_HTML.contains(forbidden), "admin.html contains {forbidden:?}");
        }
        assert_eq!(ADMIN_HTML.matches("<script").count(), ADMIN_HTML.matches("<script type=\"module\" src=").count());
        assert!(!ADMIN_CSS.contains("url("), "admin.css loads nothing");
    }
}
