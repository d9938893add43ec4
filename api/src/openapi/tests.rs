use std::collections::BTreeSet;

use super::*;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

/// `docs/openapi.json` is what the code generates. To refresh it after changing the API:
/// `cargo run -p mediaq-api -- openapi > docs/openapi.json`, or run this test with
/// `MEDIAQ_UPDATE_OPENAPI=1`.
#[test]
fn committed_document_matches_the_code() {
    let generated = pretty();
    if std::env::var_os("MEDIAQ_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the code: regenerate it with \
         `cargo run -p mediaq-api -- openapi > docs/openapi.json` (or MEDIAQ_UPDATE_OPENAPI=1 cargo test -p mediaq-api openapi)"
    );
}

/// The source of every module under src/routes (each resource's `router()`).
fn routes_source() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut source = String::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes"), &mut source);
    source
}

/// `(METHOD, /path)` of every route the routers under src/routes declare with a literal path.
fn routes_in_router() -> BTreeSet<(String, String)> {
    let source = routes_source();
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a route's path");
        // The handler expression ends at the next `.route(` / `.fallback(` / `.layer(` / statement.
        let end = [".route(", ".fallback(", ".layer(", ";", "\n}"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        let handlers = &rest[..end];
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            let call = format!("{method}(");
            let mut hits = handlers.match_indices(&call).filter(|(i, _)| {
                *i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
            });
            if hits.next().is_some() {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    let documented = operations(&doc);
    let declared = routes_in_router();
    assert!(declared.len() > 15, "the router parser found the routes: {declared:?}");
    let script_routes: BTreeSet<_> = routes::page::script_paths().map(|p| ("GET".to_owned(), p)).collect();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes without a #[utoipa::path] in the document: {undocumented:?}");
    let phantom: Vec<_> = documented.difference(&declared).filter(|op| !script_routes.contains(op)).collect();
    assert!(phantom.is_empty(), "documented operations the router does not serve: {phantom:?}");
}

#[test]
fn operations_are_complete() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is unique");
            if let Some(body) = op.get("requestBody") {
                assert!(method != "get" && body["content"].is_object(), "{method} {path} has a well-formed body");
            }
            // tus discovery (OPTIONS) is open to anyone, as the protocol wants; a signed playback
            // link is its own credential (it needs no header, and refuses with 403 link_*).
            if path.starts_with("/v1/play/") {
                assert!(op.get("security").is_none(), "{method} {path} needs no header");
                assert!(op["responses"]["403"]["$ref"].is_string(), "{method} {path} documents 403");
            } else if path.starts_with("/v1/") && method != "options" {
                assert!(op["security"][0]["bearer"].is_array(), "{method} {path} names its credential");
                for status in ["401", "429", "503"] {
                    assert!(op["responses"][status]["$ref"].is_string(), "{method} {path} documents {status}");
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                // Errors point at the shared responses (readiness's 503 has its own body).
                if status.starts_with(['4', '5']) && response.get("content").is_none() {
                    let target = response["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
                    assert!(doc["components"]["responses"][target].is_object(), "{method} {path} {status}");
                }
            }
        }
    }
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["webhooks"].as_object().unwrap().len(), mediaq_shared::webhook::EVENT_TYPES.len());
    // Every code of ApiError is in some response.
    let text = doc["components"]["responses"].to_string();
    for e in errors::every_error() {
        assert!(text.contains(&format!("\"{}\"", e.code())), "{} is documented", e.code());
    }
}

#[test]
fn response_fields_are_required_but_request_fields_are_not() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let job_required = schemas["Job"]["required"].as_array().unwrap();
    assert!(job_required.contains(&json!("finished_at")) && job_required.contains(&json!("error")));
    assert!(!schemas["WebhookEndpointCreated"]["required"].as_array().unwrap().contains(&json!("secret")));
    let token_request_required = schemas["UploadTokenRequest"]["required"].as_array().map_or(0, Vec::len);
    assert_eq!(token_request_required, 0);
}
