//! The upload page over HTTP (no browser): its own CSP and Permissions-Policy, the upload limit in
//! its `<meta>`, strong ETags with `304`, and the API's JSON responses unchanged.

use mediaq_e2e::TestEnv;

const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                        media-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
                        base-uri 'none'";

#[tokio::test]
async fn the_page_and_its_assets_have_their_own_headers_and_etags() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_MAX_UPLOAD_BYTES", "5MiB")]).await;
    let anonymous = reqwest::Client::new();

    let page = anonymous.get(api.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], PAGE_CSP);
    assert_eq!(h["permissions-policy"], "camera=(self), microphone=(self), geolocation=(), interest-cohort=()");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<meta name="mediaq-max-upload-bytes" content="5242880">"#), "the limit is in the page");

    for (path, kind) in
        [("/app.js", "text/javascript"), ("/row.js", "text/javascript"), ("/messages.js", "text/javascript")]
            .into_iter()
            .chain([("/app.css", "text/css"), ("/", "text/html")])
    {
        let resp = anonymous.get(api.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{path}: a strong ETag");
        let again = anonymous.get(api.url(path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    }
    assert_eq!(anonymous.get(api.url("/other.js")).send().await.unwrap().status(), 404);

    // The API keeps its own headers: a CSP that allows nothing, no camera.
    let json = anonymous.get(api.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(json.status(), 401);
    assert_eq!(
        json.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    assert_eq!(json.headers()["permissions-policy"], "camera=(), microphone=(), geolocation=(), interest-cohort=()");
    assert_eq!(json.headers()["cache-control"], "no-store");
}
