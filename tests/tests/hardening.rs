//! Security headers on every response, CORS only for configured exact origins, TRACE refused,
//! unsafe CORS settings refused at start-up.

use std::time::Duration;

use mediaq_e2e::{bin_dir, fixtures, TestEnv};
use reqwest::{header::HeaderMap, Method};

fn assert_hardened(h: &HeaderMap, what: &str) {
    for (name, value) in
        [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer")]
    {
        assert_eq!(h.get(name).and_then(|v| v.to_str().ok()), Some(value), "{what}: {name}");
    }
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert!(h.contains_key("permissions-policy"), "{what}");
    assert!(h.contains_key("x-request-id"), "{what}");
    let json = h.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    if json {
        assert_eq!(h["cache-control"], "no-store", "{what}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let _worker = env.worker().await;
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    assert_hardened(resp.headers(), "202");
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    api.wait_terminal(&id, Duration::from_secs(60)).await;
    for (what, resp) in [
        ("job", api.client.get(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()),
        ("download", api.client.get(api.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap()),
        ("list", api.client.get(api.url("/v1/jobs")).send().await.unwrap()),
        ("404", api.client.get(api.url("/nope")).send().await.unwrap()),
        ("401", reqwest::Client::new().get(api.url("/v1/jobs")).send().await.unwrap()),
        ("health", api.client.get(api.url("/healthz")).send().await.unwrap()),
        ("415", api.upload(b"text".to_vec(), "video/webm", None).await),
    ] {
        assert_hardened(resp.headers(), what);
        assert!(!resp.headers().contains_key("strict-transport-security"), "no HSTS unless configured");
    }
    let resp = api.client.request(Method::TRACE, api.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_hardened(resp.headers(), "TRACE");

    let tls = env.api_with(&[("MEDIAQ_HSTS", "true")]).await;
    let resp = tls.client.get(tls.url("/healthz")).send().await.unwrap();
    assert!(resp.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_CORS_ORIGINS", "https://app.example")]).await;
    let preflight = |origin: &'static str| {
        api.client
            .request(Method::OPTIONS, api.url("/v1/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    assert!(!ok.headers().contains_key("access-control-allow-credentials"), "bearer keys, never cookies");
    for origin in ["https://evil.example", "null"] {
        let resp = preflight(origin).await.unwrap();
        assert!(!resp.headers().contains_key("access-control-allow-origin"), "{origin}");
    }
    let get = api.client.get(api.url("/v1/jobs")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(get.headers()["access-control-allow-origin"], "https://app.example");
    let exposed = get.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("location") && exposed.contains("etag"), "{exposed}");

    // No origins configured: no CORS at all.
    let plain = env.api().await;
    let resp = plain.client.get(plain.url("/v1/jobs")).header("origin", "https://app.example").send().await.unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    // Unsafe settings stop the API at start-up with a clear message.
    for bad in ["*", "null"] {
        let out = std::process::Command::new(bin_dir().join("mediaq-api"))
            .env("DATABASE_URL", &env.database_url)
            .env("MEDIAQ_BIND", "127.0.0.1:0")
            .env("MEDIAQ_CORS_ORIGINS", bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("MEDIAQ_CORS_ORIGINS"), "{bad}");
    }
}
