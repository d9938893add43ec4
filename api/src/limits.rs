//! Rate limits (per client address and per credential, failed authentications included) and
//! per-key quotas. The client address is the peer's, or, when the peer is a trusted proxy
//! (MEDIAQ_TRUSTED_PROXIES), the right-most untrusted address of X-Forwarded-For.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};
use mediaq_shared::db::{audit, audit::AuditEvent};
use serde_json::json;
use sqlx::PgPool;

use crate::{app::AppState, error::ApiError, request_id};

/// The client's address as decided here, for handlers and audit rows.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

pub struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_key: DefaultKeyedRateLimiter<String>,
    clock: governor::clock::DefaultClock,
}

fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("at least 1");
    Quota::per_second(rate).allow_burst(burst)
}

impl RateLimits {
    pub fn new(ip_per_second: u32, key_per_second: u32) -> Arc<Self> {
        Arc::new(Self {
            per_ip: DefaultKeyedRateLimiter::keyed(quota(ip_per_second)),
            per_key: DefaultKeyedRateLimiter::keyed(quota(key_per_second)),
            clock: governor::clock::DefaultClock::default(),
        })
    }

    /// Forgets idle keys (called now and then so that the maps stay small).
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_key.retain_recent();
    }
}

/// The client address for this request.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[mediaq_shared::config::IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded.into_iter().rev().find(|a| !trusted.iter().any(|n| n.contains(a))).unwrap_or(peer)
}

/// The credential id a request presents (`mq_<id>_…` / `mqt_<id>_…`), unverified: enough to
/// count requests per credential, failed ones included.
fn credential_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    let rest = v.strip_prefix("mqt_").or_else(|| v.strip_prefix("mq_"))?;
    rest.split('_').next().filter(|id| id.len() == 16).map(str::to_owned)
}

pub async fn middleware(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else { return next.run(request).await };
    let ip = client_ip(request.headers(), peer, &state.config.trusted_proxies);
    request.extensions_mut().insert(ClientIp(ip));
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let limits = &state.limits;
    let key = credential_id(request.headers());
    let denied =
        limits.per_ip.check_key(&ip).err().or_else(|| key.as_ref().and_then(|k| limits.per_key.check_key(k).err()));
    if let Some(not_until) = denied {
        let wait = not_until.wait_time_from(limits.clock.now());
        let retry_after = wait.as_secs() + 1;
        record_hit(&state.pool, ip, key.as_deref()).await;
        return ApiError::RateLimited(retry_after).into_response();
    }
    next.run(request).await
}

async fn record_hit(pool: &PgPool, ip: IpAddr, key: Option<&str>) {
    let event = AuditEvent::new("anonymous", "rate_limit.hit")
        .request(request_id::current(), Some(ip))
        .details(json!({ "key_id": key }));
    if let Err(e) = audit::record(pool, &event).await {
        tracing::debug!(error = %e, "could not record a rate-limit hit");
    }
}

/// Per-key quotas, checked before an upload is read: unfinished jobs, and bytes in 24 hours
/// (with the declared size of this upload when known).
pub async fn check_quota(state: &AppState, key_id: &str, declared: Option<u64>) -> Result<(), ApiError> {
    let (active, bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status IN ('queued', 'processing')),
                COALESCE(sum(input_size) FILTER (WHERE created_at > now() - interval '1 day'), 0)::bigint
         FROM jobs WHERE api_key_id = $1",
    )
    .bind(key_id)
    .fetch_one(&state.pool)
    .await?;
    if active >= state.config.quota_active_jobs {
        return Err(ApiError::QuotaExceeded(
            format!("this key already has {active} unfinished jobs (the limit); wait for some to finish"),
            30,
        ));
    }
    if bytes as u64 + declared.unwrap_or(1) > state.config.quota_daily_bytes {
        return Err(ApiError::QuotaExceeded(
            format!(
                "this key has uploaded {bytes} bytes in the last 24 hours; the limit is {}",
                state.config.quota_daily_bytes
            ),
            3600,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = mediaq_shared::config::trusted_proxies("10.0.0.0/8").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.5".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(client_ip(&h, proxy, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&h, stranger, &trusted), stranger, "a spoofed header from anyone else is ignored");
        assert_eq!(client_ip(&HeaderMap::new(), proxy, &trusted), proxy);
    }

    #[test]
    fn credential_ids_are_read_without_verification() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer mq_0123456789abcdef_xyz".parse().unwrap());
        assert_eq!(credential_id(&h).as_deref(), Some("0123456789abcdef"));
        h.insert("authorization", "Bearer nonsense".parse().unwrap());
        assert_eq!(credential_id(&h), None);
    }
}
