//! The audit trail of refused requests (failed authentications, rate-limit hits), aggregated.
//!
//! One row per refusal let an unauthenticated flood write one append-only row per request: a
//! database write on the pool the API needs, and rows that can never be deleted. Refusals are
//! counted in memory per (client address, action, window of MEDIAQ_AUDIT_FAILURE_WINDOW) and
//! each window is written as one row whose details carry the count, the reasons and a few of the
//! key ids presented. So a flood costs one row per client address and window, whatever its rate.
//! Windows are written once they are over, and every open one when the process stops. The
//! counts are in `/metrics` at once (`mediaq_requests_refused_total{action, reason}`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mediaq_shared::db::{audit, audit::AuditEvent};
use serde_json::json;
use sqlx::PgPool;

use crate::metrics::ApiMetrics;

/// Distinct (address, action, window) tallies held at most; past it, refusals are counted under
/// no address (a bound on memory for a flood from very many addresses).
const MAX_BUCKETS: usize = 50_000;
/// Key ids kept per tally (the first ones seen).
const MAX_KEY_IDS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bucket {
    ip: Option<IpAddr>,
    action: &'static str,
    /// Start of the window, in seconds since the epoch.
    window: u64,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    reasons: BTreeMap<&'static str, u64>,
    key_ids: BTreeSet<String>,
    first_request_id: Option<String>,
}

pub struct Rejections {
    window: Duration,
    tallies: Mutex<HashMap<Bucket, Tally>>,
    metrics: Arc<ApiMetrics>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Rejections {
    pub fn new(window: Duration, metrics: Arc<ApiMetrics>) -> Arc<Self> {
        Arc::new(Self { window: window.max(Duration::from_secs(1)), tallies: Mutex::default(), metrics })
    }

    fn window_of(&self, secs: u64) -> u64 {
        let w = self.window.as_secs().max(1);
        secs - secs % w
    }

    /// Counts one refused request (no database write here).
    pub fn record(
        &self,
        ip: Option<IpAddr>,
        action: &'static str,
        reason: &'static str,
        key_id: Option<&str>,
        request_id: Option<String>,
    ) {
        self.metrics.request_refused(action, reason);
        let window = self.window_of(now_secs());
        let mut tallies = self.tallies.lock().expect("rejections lock");
        let mut bucket = Bucket { ip, action, window };
        if tallies.len() >= MAX_BUCKETS && !tallies.contains_key(&bucket) {
            bucket.ip = None;
        }
        let tally = tallies.entry(bucket).or_default();
        tally.count += 1;
        *tally.reasons.entry(reason).or_default() += 1;
        if let Some(id) = key_id {
            if tally.key_ids.len() < MAX_KEY_IDS {
                tally.key_ids.insert(id.to_owned());
            }
        }
        if tally.first_request_id.is_none() {
            tally.first_request_id = request_id;
        }
    }

    /// Tallies whose window is over (all of them with `everything`), taken out of the map.
    fn take(&self, everything: bool) -> Vec<(Bucket, Tally)> {
        let current = self.window_of(now_secs());
        let mut tallies = self.tallies.lock().expect("rejections lock");
        let done: Vec<Bucket> = tallies.keys().filter(|b| everything || b.window < current).cloned().collect();
        done.into_iter().filter_map(|b| tallies.remove_entry(&b)).collect()
    }

    /// Writes finished windows (every window with `everything`) as one audit row each. Rows that
    /// cannot be written are put back and tried again next time.
    pub async fn flush(&self, pool: &PgPool, everything: bool) -> usize {
        let mut written = 0;
        let mut failed = Vec::new();
        for (bucket, tally) in self.take(everything) {
            let event = row(&bucket, &tally, self.window);
            match audit::record(pool, &event).await {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::warn!(error = %e, action = bucket.action, "could not write an aggregated audit row");
                    failed.push((bucket, tally));
                }
            }
        }
        if !failed.is_empty() {
            let mut tallies = self.tallies.lock().expect("rejections lock");
            for (bucket, tally) in failed {
                let into = tallies.entry(bucket).or_default();
                into.count += tally.count;
                for (reason, n) in tally.reasons {
                    *into.reasons.entry(reason).or_default() += n;
                }
                into.key_ids.extend(tally.key_ids.into_iter().take(MAX_KEY_IDS.saturating_sub(into.key_ids.len())));
                into.first_request_id = into.first_request_id.take().or(tally.first_request_id);
            }
        }
        written
    }

    /// Writes finished windows every second for as long as the process runs.
    pub async fn run(self: Arc<Self>, pool: PgPool) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.flush(&pool, false).await;
        }
    }
}

fn row(bucket: &Bucket, tally: &Tally, window: Duration) -> AuditEvent {
    let from = chrono::DateTime::<chrono::Utc>::from(UNIX_EPOCH + Duration::from_secs(bucket.window));
    AuditEvent::new("anonymous", bucket.action).request(tally.first_request_id.clone(), bucket.ip).details(json!({
        "count": tally.count,
        "reasons": tally.reasons,
        "key_ids": tally.key_ids,
        "window_start": from,
        "window_s": window.as_secs(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_tally_per_address_and_action() {
        let r = Rejections::new(Duration::from_secs(3600), Arc::new(ApiMetrics::new()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..1000 {
            r.record(Some(a), "auth.failed", if i % 2 == 0 { "missing" } else { "rejected" }, Some("0123"), None);
        }
        r.record(Some(b), "auth.failed", "missing", None, Some("req-1".into()));
        r.record(Some(a), "rate_limit.hit", "address", None, None);
        let taken = r.take(true);
        assert_eq!(taken.len(), 3);
        let (_, flood) = taken.iter().find(|(b, _)| b.ip == Some(a) && b.action == "auth.failed").unwrap();
        assert_eq!(flood.count, 1000);
        assert_eq!(flood.reasons["missing"], 500);
        assert_eq!(flood.key_ids.len(), 1);
        assert!(r.take(true).is_empty(), "taken tallies are gone");
    }

    #[test]
    fn open_windows_wait_unless_everything_is_asked_for() {
        let r = Rejections::new(Duration::from_secs(3600), Arc::new(ApiMetrics::new()));
        r.record(None, "auth.failed", "missing", None, None);
        assert!(r.take(false).is_empty(), "the current window is still open");
        assert_eq!(r.take(true).len(), 1);
    }
}
