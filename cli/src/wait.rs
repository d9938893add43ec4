//! Polling a job until it is terminal, as the API asks: `Retry-After` between polls, and
//! `If-None-Match` so that an unchanged job costs a bodiless 304.

use std::time::Duration;

use indicatif::ProgressBar;
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

use crate::client::{Client, Failure};

pub const TERMINAL: [&str; 4] = ["succeeded", "failed", "canceled", "expired"];

/// A job id as the server spells them (a UUID); anything else never reaches a URL.
pub fn check_id(id: &str) -> Result<&str, Failure> {
    let ok = id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(Failure::Local(format!("{id:?} is not a job id (a UUID such as 01938f4e-8b5c-7d3a-9f1e-2c4b6a8d0e1f)")))
    }
}

/// Polls until the job is terminal; shows its progress on `bar` (0 to 1000).
pub async fn until_terminal(client: &Client, id: &str, bar: &ProgressBar) -> Result<Value, Failure> {
    let mut etag: Option<String> = None;
    let mut job = Value::Null;
    let mut transient_failures = 0;
    loop {
        let mut request = client.request(Method::GET, &format!("/v1/jobs/{id}"));
        if let Some(tag) = &etag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = match client.send(request).await {
            Ok(r) => {
                transient_failures = 0;
                r
            }
            // A poll that fails for a moment (a restart, a 503) is retried a few times.
            Err(f @ (Failure::Unreachable(_) | Failure::Server { status: 503, .. })) => {
                transient_failures += 1;
                if transient_failures > 5 {
                    return Err(f);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(f) => return Err(f),
        };
        let wait = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(Duration::from_secs(1), |s| Duration::from_secs_f64(s.clamp(0.2, 30.0)));
        if response.status() != StatusCode::NOT_MODIFIED {
            etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            job = client.read_json(response).await?;
            let progress = job["progress"].as_f64().unwrap_or(0.0);
            bar.set_position((progress * 1000.0).round() as u64);
            let status = crate::text::clean(job["status"].as_str().unwrap_or(""));
            let message = match crate::line::describe(&job, chrono::Utc::now()) {
                Some(line) => format!("{status}: {}", crate::text::clean(&line)),
                None => status,
            };
            bar.set_message(message);
        }
        if job["status"].as_str().is_some_and(|s| TERMINAL.contains(&s)) {
            return Ok(job);
        }
        tokio::time::sleep(wait).await;
    }
}

/// A terminal job that has no MP4, as the failure it is.
pub fn require_success(job: &Value) -> Result<(), Failure> {
    let status = job["status"].as_str().unwrap_or("unknown");
    if status == "succeeded" {
        return Ok(());
    }
    Err(Failure::JobFailed {
        id: job["id"].as_str().unwrap_or("?").to_owned(),
        status: status.to_owned(),
        code: job["error"]["code"].as_str().map(str::to_owned),
        message: job["error"]["message"].as_str().map(str::to_owned),
    })
}
