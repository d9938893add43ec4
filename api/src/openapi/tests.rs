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

/// Issue #26, item 10: the document says exactly what the server accepts. A name the
/// `filename` pattern allows is never refused `extension_mismatch` (checked over every name of up
/// to five characters from an alphabet of the characters that matter), and the webhook URL's
/// pattern and lengths allow nothing the URL check refuses without a DNS lookup (an empty value,
/// another scheme, credentials).
#[test]
fn patterns_allow_only_what_the_server_accepts() {
    let doc = document();
    let param = |path: &str, name: &str| {
        doc["paths"][path]["post"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
            ["schema"]
            .clone()
    };
    let filename = regex::Regex::new(param("/v1/jobs", "filename")["pattern"].as_str().expect("a pattern")).unwrap();
    // The server's rule (ingest::sniff::check_extension on the sanitized name).
    let accepted = |raw: &str| {
        matches!(
            mediaq_shared::OriginalFilename::sanitize(raw).extension().as_deref(),
            None | Some("webm" | "weba" | "mkv" | "mka")
        )
    };
    let alphabet = ['a', '.', '/', '\\', ' ', 'w', 'e', 'b', 'm', 'M', 'k', 'v', '4', ':'];
    let mut names = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..5 {
        frontier = frontier.iter().flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}"))).collect();
        names.extend(frontier.iter().cloned());
    }
    let mut allowed = 0;
    for name in &names {
        if filename.is_match(name) {
            allowed += 1;
            assert!(accepted(name), "the pattern allows {name:?}, which the server refuses (extension_mismatch)");
        }
    }
    assert!(allowed > 10_000, "the pattern allows almost nothing ({allowed})");
    for name in ["clip.webm", "Clip.WebM", "x/y.mkv", "C:\\rec\\a.mka", "noext", "CON.webm", "caf\u{e9}.weba"] {
        assert!(filename.is_match(name) && accepted(name), "{name}");
    }
    for name in ["clip.mp4", "a.webm.mp4", "x.webm/y.txt", "a.b"] {
        assert!(!filename.is_match(name) && !accepted(name), "{name}");
    }

    let schemas =
        [param("/v1/jobs", "webhook_url"), doc["components"]["schemas"]["CreateWebhook"]["properties"]["url"].clone()];
    let policy = mediaq_shared::webhook::address::AddressPolicy::default();
    for schema in schemas {
        let pattern = regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap();
        let (min, max) =
            (schema["minLength"].as_u64().unwrap() as usize, schema["maxLength"].as_u64().unwrap() as usize);
        assert_eq!(max, 2048);
        let allows = |url: &str| pattern.is_match(url) && (min..=max).contains(&url.chars().count());
        for refused in [
            "",
            " ",
            "x",
            "http://example.com/hook",
            "ftp://example.com",
            "https://",
            "https://user:pw@example.com/",
            "https://exa mple.com",
            "//example.com",
        ] {
            assert!(policy.parse(refused).is_err(), "{refused:?} is accepted by the server");
            assert!(!allows(refused), "the schema allows {refused:?}, which the server refuses");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(policy.parse(&long).is_err() && !allows(&long));
        for fine in
            ["https://example.com", "https://example.com:8443/hooks/mediaq?token=x#y", "https://93.184.216.34/x@y"]
        {
            assert!(policy.parse(fine).is_ok() && allows(fine), "{fine}");
        }
    }
}

/// Every tus operation but OPTIONS requires `Tus-Resumable: 1.0.0` and documents its 412.
#[test]
fn every_tus_operation_documents_its_version_header_and_412() {
    let doc = document();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/uploads") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            if method == "options" {
                continue;
            }
            let header = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Tus-Resumable");
            let header = header.unwrap_or_else(|| panic!("{method} {path}: no Tus-Resumable"));
            assert_eq!(header["required"], true, "{method} {path}");
            assert_eq!(header["schema"]["enum"], json!(["1.0.0"]), "{method} {path}");
            assert!(op["responses"].get("412").is_some(), "{method} {path}: no 412");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "tus_create, tus_status, tus_append, tus_terminate");
}
