//! A job's place in line and estimate (its `queue` facts) as a short phrase: "3rd in line,
//! ready in about 40 s", "converting, ready in about 12 s", "waiting for more of the upload".

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The phrase for `job` at `now`, or `None` when it has no queue facts (finished).
pub fn describe(job: &Value, now: DateTime<Utc>) -> Option<String> {
    let queue = job.get("queue").filter(|q| q.is_object())?;
    if queue["waiting_for_bytes"].as_bool() == Some(true) {
        return Some("waiting for more of the upload".into());
    }
    let ready = queue["estimated_finish_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| format!("ready in {}", about((t.with_timezone(&Utc) - now).num_seconds())));
    let place = match (job["status"].as_str(), queue["position"].as_i64()) {
        (Some("processing"), _) => "converting".to_owned(),
        (_, Some(0)) => "next in line".to_owned(),
        (_, Some(ahead)) => format!("{} in line", ordinal(ahead + 1)),
        _ => return ready,
    };
    Some(match (ready, queue["workers"].as_i64()) {
        (Some(ready), _) => format!("{place}, {ready}"),
        (None, Some(0)) => format!("{place} (no worker is running)"),
        (None, _) => place,
    })
}

/// "about 40 s", "about 3 min", "about 2 h"; "a moment" when due.
fn about(seconds: i64) -> String {
    match seconds {
        i64::MIN..=1 => "a moment".into(),
        2..=89 => format!("about {seconds} s"),
        90..=5399 => format!("about {} min", (seconds + 30) / 60),
        _ => format!("about {} h", (seconds + 1800) / 3600),
    }
}

fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn phrases() {
        let now = DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z").unwrap().with_timezone(&Utc);
        let job = |status: &str, queue: Value| json!({ "status": status, "queue": queue });
        let q = |position: Value, finish: Value, workers: i64| {
            json!({ "lane": "cpu", "position": position, "waiting_for_bytes": false, "workers": workers,
                    "estimated_start_at": null, "estimated_finish_at": finish })
        };
        assert_eq!(
            describe(&job("queued", q(json!(2), json!("2026-12-08T10:00:40Z"), 1)), now).unwrap(),
            "3rd in line, ready in about 40 s"
        );
        assert_eq!(
            describe(&job("queued", q(json!(0), json!("2026-12-08T10:05:00Z"), 1)), now).unwrap(),
            "next in line, ready in about 5 min"
        );
        assert_eq!(
            describe(&job("processing", q(json!(0), json!("2026-12-08T10:00:12Z"), 1)), now).unwrap(),
            "converting, ready in about 12 s"
        );
        assert_eq!(
            describe(&job("queued", q(json!(10), Value::Null, 0)), now).unwrap(),
            "11th in line (no worker is running)"
        );
        let waiting = json!({ "status": "receiving", "queue": { "waiting_for_bytes": true } });
        assert_eq!(describe(&waiting, now).unwrap(), "waiting for more of the upload");
        assert_eq!(describe(&json!({ "status": "succeeded", "queue": null }), now), None);
        assert_eq!(ordinal(21), "21st");
        assert_eq!(ordinal(12), "12th");
    }
}
