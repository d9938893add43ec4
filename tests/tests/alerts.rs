//! The Prometheus alert rules and the Grafana dashboard in deploy/: `promtool check rules` and
//! `promtool test rules` (the rules' unit tests, deploy/prometheus/alerts_test.yml), and every
//! metric that a dashboard query or an alert names is one that mediaq-api or mediaq-worker really
//! exports (both scraped here after a real transcode).
//!
//! promtool comes from Debian's `prometheus` package, unpacked by scripts/lib.sh's
//! `ensure_promtool` into .mediaq/prometheus (or MEDIAQ_PROMTOOL). Missing, it fails the test: it
//! is never skipped.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use mediaq_e2e::{fixtures, TestEnv};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("MEDIAQ_PROMTOOL")
        .map_or_else(|| repo().join(".mediaq/prometheus/usr/bin/promtool"), PathBuf::from);
    assert!(
        path.is_file(),
        "promtool not found at {} (scripts/test.sh unpacks it: `bash -c 'source scripts/lib.sh; ensure_promtool'`, \
         or set MEDIAQ_PROMTOOL)",
        path.display()
    );
    path
}

fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = run_promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    let tested = run_promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every rule is exercised by the unit tests.
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("deploy/prometheus/alerts_test.yml")).unwrap();
    for name in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {name}")), "{name} has no unit test");
    }
}

/// The metric names a PromQL text names (`mediaq_...`).
fn named_metrics(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = promql;
    while let Some(at) = rest.find("mediaq_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every sample name an exposition can hold, from its `# TYPE` lines (a family is described even
/// before it has samples): counters as `_total`, histograms as `_bucket`, `_sum`, `_count`.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
                true
            }
            _ => names.insert(name.to_owned()),
        };
    }
    names
}

#[tokio::test]
async fn every_dashboard_query_and_alert_names_an_exported_metric() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let worker = env.worker_with(&[("MEDIAQ_METRICS_BIND", "127.0.0.1:0")]).await;
    let resp = api.upload(fixtures::bytes(&fixtures::VP8_VORBIS), "video/webm", None).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, job) = api.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let plain = reqwest::Client::new();
    // A refused credential: the refusals' family has a sample to show.
    let refused = plain.get(api.url("/v1/jobs")).bearer_auth("mq_not_a_key").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let mut metrics = BTreeSet::new();
    for url in [api.url("/metrics"), format!("{}/metrics", worker.metrics_url.as_deref().expect("worker metrics"))] {
        let text = plain.get(&url).send().await.unwrap().text().await.unwrap();
        let found = exported(&text);
        assert!(found.len() > 5, "{url}:\n{text}");
        metrics.extend(found);
    }
    // The API counts live workers: this one.
    let text = plain.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l == "mediaq_workers_alive 1"), "{text}");

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/mediaq.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: String = rules.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    for (source, text) in queries.iter().map(|q| ("dashboard", q.as_str())).chain([("alerts.yml", rules.as_str())]) {
        let named = named_metrics(text);
        assert!(!named.is_empty() || source == "alerts.yml", "a dashboard query names no mediaq metric: {text}");
        for name in named {
            assert!(
                metrics.contains(&name),
                "{source} names {name}, which neither /metrics exports: {text}\nexported: {metrics:?}"
            );
        }
    }
    // And every family either exports shows on the dashboard.
    let on_dashboard: BTreeSet<String> = queries.iter().flat_map(|q| named_metrics(q)).collect();
    let families: BTreeSet<String> = metrics
        .iter()
        .map(|m| {
            ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .fold(m.clone(), |m, s| m.strip_suffix(s).map_or(m.clone(), str::to_owned))
        })
        .collect();
    for family in families.iter().filter(|f| f.starts_with("mediaq_")) {
        assert!(on_dashboard.iter().any(|q| q.starts_with(family.as_str())), "{family} is on no dashboard panel");
    }
}
