//! The OpenAPI 3.1 document: operations from the `#[utoipa::path]` annotations on the handlers,
//! bodies from [`schemas`], error responses from [`ApiError`](crate::error::ApiError) itself
//! ([`errors`]), webhook events in `webhooks`. Served at `GET /openapi.json` and committed as
//! `docs/openapi.json`; regenerate that with `cargo run -p mediaq-api -- openapi > docs/openapi.json`
//! (a test fails while the two differ).

pub mod dashboard_schemas;
pub mod errors;
pub mod schemas;
pub mod webhook_schemas;

use std::sync::OnceLock;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mediaq",
        description = "Upload WebM videos, get MP4s back. Authenticate with `Authorization: Bearer mq_...` \
                       (an API key) or `Bearer mqt_...` (a single-use upload token). Every error body is \
                       `{\"error\": {\"code\", \"message\"}, \"request_id\"}`; the codes are stable, the \
                       messages are for people.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::jobs::create,
        routes::jobs::list,
        routes::jobs::status,
        routes::jobs::cancel,
        routes::jobs::output,
        routes::jobs::poster,
        routes::jobs::links,
        routes::play::play,
        routes::jobs::retry,
        routes::uploads::discover,
        routes::uploads::create,
        routes::uploads::status,
        routes::uploads::patch,
        routes::uploads::terminate,
        routes::audit::job_events,
        routes::audit::all,
        routes::admin::requeue,
        routes::admin::stats,
        routes::dashboard::series,
        routes::dashboard::failures,
        routes::dashboard::dead_letters,
        routes::dashboard::workers,
        routes::dashboard::tenants,
        routes::tokens::create,
        routes::webhooks::create,
        routes::webhooks::list,
        routes::webhooks::rotate_secret,
        routes::webhooks::get_one,
        routes::webhooks::delete,
        routes::webhooks::list_deliveries,
        routes::webhooks::resend,
        routes::health::healthz,
        routes::health::readyz,
        routes::metrics::metrics,
        routes::page::index,
        routes::page::style,
        routes::admin_page::admin,
        routes::admin_page::style,
        serve,
    ),
    components(schemas(schemas::WebhookEvent, schemas::ErrorBody)),
    tags(
        (name = "jobs", description = "Upload, poll, download, cancel."),
        (name = "uploads", description = "Resumable uploads (tus 1.0) that convert while they arrive."),
        (name = "upload-tokens", description = "Single-use upload credentials for browsers."),
        (name = "webhooks", description = "Signed notifications when jobs finish."),
        (name = "audit", description = "Who did what, when."),
        (name = "admin", description = "Operators (`admin` scope)."),
        (name = "operations", description = "Health, readiness, metrics, this document."),
        (name = "page", description = "The upload page."),
    )
)]
struct Annotated;

/// Response schemas' fields that the server leaves out (rather than sending `null`) when empty.
/// `JobLinks.play` is in the API's job bodies (`null` when there is nothing to play), never in
/// webhook events (a signed link belongs to a caller).
pub const ABSENT_WHEN_EMPTY: [(&str, &str); 4] =
    [("WebhookEndpointCreated", "secret"), ("Readiness", "error"), ("JobLinks", "play"), ("JobLinks", "stream")];

/// Schemas of request bodies (their optional fields stay optional).
const REQUEST_SCHEMAS: [&str; 3] = ["UploadTokenRequest", "CreateWebhook", "UploadForm"];

/// Scopes and credentials, for the bearer scheme's description.
const BEARER: &str = "An API key (`mq_...`, made with `mediaq-api keys create`) or an upload token \
                      (`mqt_...`, from `POST /v1/upload-tokens`). Only in the `Authorization` header: a \
                      credential in the URL is refused (`credentials_in_url`). Scopes: `jobs:write` \
                      (upload, cancel, tokens, webhooks), `jobs:read` (status, download, lists), `admin` \
                      (everything, every owner). An upload token can upload once and read the job it made.";

/// The document, as JSON.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(Annotated::openapi()).expect("the document serializes");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let components = doc["components"].as_object_mut().expect("components");
    components.insert(
        "securitySchemes".into(),
        json!({ "bearer": { "type": "http", "scheme": "bearer", "description": BEARER } }),
    );
    components.insert(
        "headers".into(),
        json!({ "X-Request-Id": {
            "description": "The request's id: the client's own `X-Request-Id` when it is sane (1 to 64 of \
                            `[A-Za-z0-9._-]`), else a new UUID. Quote it when reporting a problem.",
            "required": true,
            "schema": { "type": "string" }
        }}),
    );
    let responses: Map<String, Value> =
        errors::responses().into_iter().map(|(status, r)| (errors::response_name(status), r)).collect();
    components.insert("responses".into(), Value::Object(responses));
    if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
        require_response_fields(schemas);
    }
    add_script_paths(&mut doc);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            for (_, op) in item.as_object_mut().into_iter().flatten() {
                complete_operation(path, op);
            }
        }
    }
    doc["webhooks"] = webhooks();
    doc
}

/// The document as committed in `docs/openapi.json` (pretty, with a final newline).
pub fn pretty() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
    text.push('\n');
    text
}

/// The document itself. No credential.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json")))]
pub async fn serve() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(pretty).clone();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response()
}

/// Every field of a response body is always sent: required (nullable ones as `null`).
fn require_response_fields(schemas: &mut Map<String, Value>) {
    for (name, schema) in schemas.iter_mut() {
        if REQUEST_SCHEMAS.contains(&name.as_str()) {
            // Their handlers refuse unknown fields (`deny_unknown_fields`).
            if name != "UploadForm" {
                schema["additionalProperties"] = json!(false);
            }

            continue;
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else { continue };
        let required: Vec<Value> = props
            .keys()
            .filter(|field| !ABSENT_WHEN_EMPTY.contains(&(name.as_str(), field.as_str())))
            .map(|k| json!(k))
            .collect();
        schema["required"] = Value::Array(required);
    }
}

/// The page's scripts, one route each (from [`routes::page::script_paths`], as the router).
fn add_script_paths(doc: &mut Value) {
    for path in routes::page::script_paths() {
        doc["paths"][&path] = json!({ "get": {
            "tags": ["page"],
            "summary": "One of the pages' ES modules (the upload page's, the dashboard's).",
            "operationId": format!("page_script_{}", path.trim_start_matches('/').replace('.', "_")),
            "responses": {
                "200": { "description": "The script.", "content": { "text/javascript": { "schema": { "type": "string" } } } },
                "304": { "description": "Unchanged (`If-None-Match`)." }
            }
        }});
    }
}

/// Error responses point at the shared per-status responses; every response names its
/// `X-Request-Id`; routes under `/v1/` add the errors every one of them can return.
fn complete_operation(path: &str, op: &mut Value) {
    // An optional parameter is absent, never `null` (a header or query value cannot be null).
    for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(types) = param["schema"]["type"].as_array() {
            let concrete: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            if concrete.len() == 1 {
                param["schema"]["type"] = concrete[0].clone();
            }
        }
        if let Some(one_of) = param["schema"]["oneOf"].as_array() {
            let concrete: Vec<Value> = one_of.iter().filter(|t| t["type"] != "null").cloned().collect();
            if concrete.len() == 1 {
                param["schema"] = concrete[0].clone();
            }
        }
    }
    // Videos (and tus chunks) are bytes: a binary string (not an array of integers, nor no schema at all).
    let mut bodies: Vec<&mut Value> = Vec::new();
    let op_map = op.as_object_mut().expect("an operation is an object");
    for (name, value) in op_map.iter_mut() {
        match name.as_str() {
            "requestBody" => bodies.push(value),
            "responses" => bodies.extend(value.as_object_mut().into_iter().flat_map(|r| r.values_mut())),
            _ => {}
        }
    }
    for body in bodies {
        for (media, content) in body.get_mut("content").and_then(Value::as_object_mut).into_iter().flatten() {
            if media.starts_with("video/") || media == crate::tus::OFFSET_OCTET_STREAM {
                content["schema"] = json!({ "type": "string", "format": "binary" });
            }
        }
    }
    // An optional body is absent, not `null`.
    let request_content = op.get_mut("requestBody").and_then(|b| b.get_mut("content"));
    for (_, content) in request_content.and_then(Value::as_object_mut).into_iter().flatten() {
        if let Some(one_of) = content["schema"]["oneOf"].as_array() {
            let concrete: Vec<Value> = one_of.iter().filter(|t| t["type"] != "null").cloned().collect();
            if concrete.len() == 1 {
                content["schema"] = concrete[0].clone();
            }
        }
    }
    let tus = require_tus_version(op);
    let secured = op.get("security").is_some();
    let has_body = op.get("requestBody").is_some();
    // axum's JSON extractor refuses a body sent without `Content-Type: application/json`.
    let json_body = op["requestBody"]["content"].get("application/json").is_some();
    let responses = op["responses"].as_object_mut().expect("responses");
    let mut common: Vec<u16> = Vec::new();
    if path.starts_with("/v1/") {
        common.extend([429, 503]);
    }
    if secured {
        common.extend([400, 401, 403]);
    }
    if has_body {
        common.push(413);
    }
    if json_body {
        common.push(415);
    }
    if tus {
        common.push(412);
    }
    for status in common {
        responses.entry(status.to_string()).or_insert(Value::Null);
    }
    for (status, response) in responses.iter_mut() {
        let code: u16 = status.parse().unwrap_or(0);
        // An error response declared with its own body (readiness's 503) keeps it.
        if code >= 400 && response.get("content").is_none() {
            *response = json!({ "$ref": format!("#/components/responses/{}", errors::response_name(code)) });
        } else {
            response["headers"]["X-Request-Id"] = json!({ "$ref": "#/components/headers/X-Request-Id" });
        }
    }
}

/// A tus operation (one that takes `Tus-Resumable`) says exactly what the server wants of that
/// header: required, `1.0.0` and nothing else; without it or with another value the answer is
/// 412 `tus_version_unsupported` (added to its responses, whatever its annotation lists).
fn require_tus_version(op: &mut Value) -> bool {
    let mut found = false;
    for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        if param["in"] == "header" && param["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("Tus-Resumable")) {
            param["required"] = json!(true);
            param["schema"] = json!({ "type": "string", "enum": [crate::tus::VERSION] });
            param["description"] = json!(format!(
                "`{}`, the tus protocol version; missing or any other value: 412 `tus_version_unsupported`.",
                crate::tus::VERSION
            ));
            found = true;
        }
    }
    found
}

/// `webhooks`: one event per terminal status, POSTed with `Mediaq-Signature`.
fn webhooks() -> Value {
    let mut hooks = Map::new();
    for event in mediaq_shared::webhook::EVENT_TYPES {
        hooks.insert(
            event.to_owned(),
            json!({ "post": {
                "summary": format!("`{event}`: a job reached this status."),
                "description": "Sent to every endpoint subscribed to the event type, and to a job's own \
                                `webhook_url`. Verify the signature before trusting the body (docs/WEBHOOKS.md). \
                                Any 2xx acknowledges; anything else (or no answer within MEDIAQ_WEBHOOK_TIMEOUT) \
                                is retried with backoff.",
                "operationId": format!("webhook_{}", event.replace('.', "_")),
                "parameters": [{
                    "name": mediaq_shared::webhook::signature::SIGNATURE_HEADER,
                    "in": "header",
                    "required": true,
                    "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`; during a \
                                    secret rotation a second `v1=` with the previous secret.",
                    "schema": { "type": "string", "pattern": "^t=[0-9]+(,v1=[0-9a-f]{64})+$" }
                }],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/WebhookEvent" } } }
                },
                "responses": { "2XX": { "description": "Acknowledged." } }
            }}),
        );
    }
    Value::Object(hooks)
}

#[cfg(test)]
mod tests;
