//! Rate limits (per client address, failed authentications included, and per verified credential).
//! The client address is the peer's, or, when the peer is a trusted proxy
//! (MEDIAQ_TRUSTED_PROXIES), the right-most untrusted address of X-Forwarded-For.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};

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

    /// Spends one request of a verified credential's budget; `Err(seconds to wait)` when it is spent.
    pub fn check_credential(&self, id: &str) -> Result<(), u64> {
        match self.per_key.check_key(&id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now()).as_secs() + 1),
        }
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

pub async fn middleware(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else { return next.run(request).await };
    let ip = client_ip(request.headers(), peer, &state.config.trusted_proxies);
    request.extensions_mut().insert(ClientIp(ip));
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    // Every request spends its address's budget, failed authentications included; a credential's
    // own budget is spent after it is verified (`auth::Caller`).
    if let Err(not_until) = state.rate_limits.per_ip.check_key(&ip) {
        let retry_after = not_until.wait_time_from(state.rate_limits.clock.now()).as_secs() + 1;
        state.rejections.record(Some(ip), "rate_limit.hit", "address", None, request_id::current());
        return ApiError::RateLimited(retry_after).into_response();
    }
    next.run(request).await
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
}
