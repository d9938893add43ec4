//! Driving the webhook API in tests: the development override that lets a loopback receiver
//! in, registration, uploads (with a per-job `webhook_url`) and jobs that end at once.

use serde_json::Value;

use crate::{fixtures, Api};

/// The development override: http and loopback receivers allowed.
pub const DEV: [(&str, &str); 2] =
    [("MEDIAQ_WEBHOOK_ALLOW_HTTP", "true"), ("MEDIAQ_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")];

pub fn with_dev<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    DEV.iter().copied().chain(extra.iter().copied()).collect()
}

pub async fn register(api: &Api, body: Value) -> (u16, Value) {
    let resp = api.client.post(api.url("/v1/webhooks")).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

pub async fn get(api: &Api, path: &str) -> Value {
    let resp = api.client.get(api.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

pub async fn upload(api: &Api, recipe: &fixtures::Recipe) -> String {
    let resp = api.upload(fixtures::bytes(recipe), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// An upload with a per-job `webhook_url`.
pub async fn upload_with_webhook(api: &Api, url: &str) -> reqwest::Response {
    let upload = api.client.post(api.url(&format!("/v1/jobs?webhook_url={url}")));
    upload.header("content-type", "video/webm").body(fixtures::bytes(&fixtures::VP8_VORBIS)).send().await.unwrap()
}

/// A job that ends at once: uploaded, then canceled while queued (no worker needed).
pub async fn canceled_job(api: &Api) -> String {
    let id = upload(api, &fixtures::VP8_VORBIS).await;
    let resp = api.client.delete(api.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    id
}

pub fn event_ids(received: &[crate::receiver::Received]) -> Vec<String> {
    received.iter().map(|r| r.header("mediaq-event-id")).collect()
}
