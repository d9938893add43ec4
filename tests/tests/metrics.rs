//! Metrics, end to end: the API's `/metrics` and the worker's (MEDIAQ_METRICS_BIND) after a real
//! upload and transcode, scraped over HTTP and parsed here, independently of the exporter.

use std::{collections::BTreeMap, time::Duration};

use mediaq_e2e::{fixtures, TestEnv};
use serde_json::Value;

const TOKEN: &str = "metrics-test-token-0123456789";

/// One sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (Prometheus 0.0.4 / OpenMetrics text): `# ...` lines are
/// metadata; every other line is `name{k="v",...} value`, label values escaped with `\`.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value on {line:?}"));
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut i = 0;
            loop {
                if inner[i..].starts_with('}') {
                    rest = &inner[i + 1..];
                    break;
                }
                if inner[i..].starts_with(',') {
                    i += 1;
                    continue;
                }
                let eq = inner[i..].find("=\"").unwrap_or_else(|| panic!("label=\"value\" expected in {line:?}")) + i;
                let key = inner[i..eq].to_owned();
                i = eq + 2;
                let mut value = String::new();
                let mut chars = inner[i..].char_indices();
                loop {
                    match chars.next().unwrap_or_else(|| panic!("unterminated label value in {line:?}")) {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        (j, '"') => {
                            i += j + 1;
                            break;
                        }
                        (_, other) => value.push(other),
                    }
                }
                labels.insert(key, value);
            }
        }
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value on {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value on {line:?}")),
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches several samples: {found:?}");
    found.first().map(|s| s.value)
}

fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)], text: &str) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{text}"))
}

async fn scrape(client: &reqwest::Client, url: &str) -> (String, Vec<Sample>) {
    let resp = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "the exposition ends with # EOF");
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn api_and_worker_metrics_after_a_transcode() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_METRICS_TOKEN", TOKEN)]).await;
    let worker = env.worker_with(&[("MEDIAQ_METRICS_BIND", "127.0.0.1:0"), ("MEDIAQ_METRICS_TOKEN", TOKEN)]).await;
    let plain = reqwest::Client::new();

    // The token is enforced: none, or a wrong one (the API key is not a metrics token), is 401.
    let resp = plain.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(api.client.get(api.url("/metrics")).send().await.unwrap().status(), 401);

    let bytes = fixtures::bytes(&fixtures::VP9_OPUS);
    let size = bytes.len() as f64;
    let resp = api.upload(bytes, "video/webm", Some("clip.webm")).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(api.client.get(api.url("/no-such-route")).send().await.unwrap().status(), 404);

    let (text, samples) = scrape(&plain, &api.url("/metrics")).await;
    assert_eq!(must(&samples, "mediaq_jobs", &[("status", "succeeded")], &text), 1.0);
    assert_eq!(must(&samples, "mediaq_jobs", &[("status", "queued")], &text), 0.0);
    assert_eq!(must(&samples, "mediaq_queue_depth", &[], &text), 0.0);
    assert_eq!(must(&samples, "mediaq_queue_oldest_age_seconds", &[], &text), 0.0);
    assert_eq!(must(&samples, "mediaq_queue_pending_tasks", &[], &text), 0.0);
    assert_eq!(must(&samples, "mediaq_uploads_total", &[], &text), 1.0);
    assert!(must(&samples, "mediaq_upload_bytes_total", &[], &text) >= size, "{text}");
    for state in ["closed", "open", "half_open"] {
        assert_eq!(must(&samples, "mediaq_webhook_endpoints", &[("state", state)], &text), 0.0);
    }
    // Latency by route template, never by raw path.
    let poll = [("method", "GET"), ("route", "/v1/jobs/{id}"), ("status", "2xx")];
    let polls = must(&samples, "mediaq_http_request_duration_seconds_count", &poll, &text);
    assert!(polls >= 1.0, "{text}");
    let inf = [poll.as_slice(), &[("le", "+Inf")]].concat();
    assert_eq!(must(&samples, "mediaq_http_request_duration_seconds_bucket", &inf, &text), polls);
    assert!(must(&samples, "mediaq_http_request_duration_seconds_sum", &poll, &text) > 0.0);
    let upload = [("method", "POST"), ("route", "/v1/jobs"), ("status", "2xx")];
    assert_eq!(must(&samples, "mediaq_http_request_duration_seconds_count", &upload, &text), 1.0);
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "4xx")];
    assert_eq!(must(&samples, "mediaq_http_request_duration_seconds_count", &unmatched, &text), 1.0);
    assert!(!text.contains(&id), "a job id leaked into a label:\n{text}");

    // The worker: health is open, metrics need the token.
    let base = worker.metrics_url.clone().expect("the worker prints its metrics address");
    assert_eq!(plain.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(plain.get(format!("{base}/metrics")).send().await.unwrap().status(), 401);
    let (text, samples) = scrape(&plain, &format!("{base}/metrics")).await;
    let ok = [("outcome", "succeeded")];
    assert_eq!(must(&samples, "mediaq_attempt_duration_seconds_count", &ok, &text), 1.0);
    assert!(must(&samples, "mediaq_attempt_duration_seconds_sum", &ok, &text) > 0.0);
    assert_eq!(must(&samples, "mediaq_attempts_total", &[("outcome", "succeeded"), ("code", "none")], &text), 1.0);
    assert_eq!(must(&samples, "mediaq_attempts_in_flight", &[], &text), 0.0);
    assert_eq!(must(&samples, "mediaq_transcode_speed_ratio_count", &[], &text), 1.0);
    assert!(must(&samples, "mediaq_transcode_last_speed_ratio", &[], &text) > 0.0, "{text}");
    // The e2e workers run in strict mode: every required layer is active; namespaces are reported.
    for layer in ["landlock", "seccomp", "no_new_privs", "rlimits"] {
        assert_eq!(must(&samples, "mediaq_sandbox_layer_active", &[("layer", layer)], &text), 1.0, "{layer}");
    }
    let namespaces = must(&samples, "mediaq_sandbox_layer_active", &[("layer", "namespaces")], &text);
    assert!(namespaces == 0.0 || namespaces == 1.0);
    assert!(must(&samples, "mediaq_sandbox_landlock_abi", &[], &text) >= 1.0);
    for outcome in ["delivered", "retrying", "gave_up", "superseded"] {
        assert_eq!(must(&samples, "mediaq_webhook_deliveries_total", &[("outcome", outcome)], &text), 0.0);
    }
}

#[tokio::test]
async fn without_a_token_metrics_are_open_and_breaker_states_come_from_the_table() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    for (state, count) in [("closed", 2), ("open", 1), ("half_open", 1)] {
        for _ in 0..count {
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, owner, url, events, breaker_state)
                 VALUES (gen_random_uuid(), 'tester', 'https://hooks.example/x', '{job.succeeded}', $1)",
            )
            .bind(state)
            .execute(env.pool())
            .await
            .unwrap();
        }
    }
    // A deleted endpoint is not counted.
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, owner, url, events, breaker_state, deleted_at)
         VALUES (gen_random_uuid(), 'tester', 'https://hooks.example/y', '{job.succeeded}', 'open', now())",
    )
    .execute(env.pool())
    .await
    .unwrap();
    let plain = reqwest::Client::new();
    let resp = plain.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    assert_eq!(must(&samples, "mediaq_webhook_endpoints", &[("state", "closed")], &text), 2.0);
    assert_eq!(must(&samples, "mediaq_webhook_endpoints", &[("state", "open")], &text), 1.0);
    assert_eq!(must(&samples, "mediaq_webhook_endpoints", &[("state", "half_open")], &text), 1.0);
    assert_eq!(must(&samples, "mediaq_jobs", &[("status", "succeeded")], &text), 0.0);
}

/// A webhook receiver on loopback that answers every request with `status`; counts requests.
async fn receiver(status: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn webhook_deliveries_are_counted_by_outcome() {
    let env = TestEnv::new().await;
    let webhooks = [("MEDIAQ_WEBHOOK_ALLOW_HTTP", "true"), ("MEDIAQ_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")];
    let api = env.api_with(&webhooks).await;
    let worker_env =
        [webhooks.as_slice(), &[("MEDIAQ_METRICS_BIND", "127.0.0.1:0"), ("MEDIAQ_WEBHOOK_RETRY_BASE", "1h")]].concat();
    let worker = env.worker_with(&worker_env).await;
    let (ok_url, ok_hits) = receiver(200).await;
    let (failing_url, failing_hits) = receiver(503).await;
    for url in [&ok_url, &failing_url] {
        let resp = api.client.post(api.url("/v1/webhooks")).json(&serde_json::json!({ "url": url })).send().await;
        assert_eq!(resp.unwrap().status(), 201);
    }
    let resp = api.upload(fixtures::bytes(&fixtures::VP9_OPUS), "video/webm", Some("clip.webm")).await;
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let base = worker.metrics_url.clone().unwrap();
    let client = reqwest::Client::new();
    let (text, samples) = mediaq_e2e::wait_for(Duration::from_secs(30), "both deliveries counted", || {
        let (client, url) = (client.clone(), format!("{base}/metrics"));
        async move {
            let text = client.get(url).send().await.ok()?.text().await.ok()?;
            let samples = parse(&text);
            let delivered = value(&samples, "mediaq_webhook_deliveries_total", &[("outcome", "delivered")])?;
            let retrying = value(&samples, "mediaq_webhook_deliveries_total", &[("outcome", "retrying")])?;
            (delivered >= 1.0 && retrying >= 1.0).then_some((text, samples))
        }
    })
    .await;
    assert!(ok_hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(failing_hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(must(&samples, "mediaq_webhook_deliveries_total", &[("outcome", "gave_up")], &text), 0.0);
    // One failure does not open a breaker: both endpoints are closed.
    let resp = client.get(api.url("/metrics")).send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(must(&parse(&text), "mediaq_webhook_endpoints", &[("state", "closed")], &text), 2.0);
}
