//! Authentication and authorization: opaque bearer credentials (no cookies, so no CSRF
//! surface), scopes, and object-level checks (someone else's job is a 404, never a 403).

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use mediaq_shared::{
    apikey::{Credential, Kind, Scope},
    db::tokens::{self, Grant},
    Job,
};

use crate::{app::AppState, error::ApiError, ingest::tus_rules, request_id};

/// Who is calling, once authenticated: an API key, or an upload token minted by one.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API key (for a token: the key that minted it).
    pub key_id: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    pub token: Option<Grant>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope.as_str()))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// Object-level authorization: a job is visible to its owner and to admins only; an upload
    /// token sees the one job it created.
    pub fn can_see(&self, job: &Job) -> bool {
        match &self.token {
            Some(grant) => grant.job_id == Some(job.id),
            None => self.is_admin() || job.owner == self.owner,
        }
    }

    /// Routes only an API key may use (listing, minting tokens).
    pub fn require_key(&self) -> Result<(), ApiError> {
        match self.token {
            Some(_) => Err(ApiError::InsufficientScope("an API key (upload tokens cannot do this)")),
            None => Ok(()),
        }
    }

    /// Who acts, for the audit trail.
    pub fn actor(&self) -> String {
        match &self.token {
            Some(grant) => format!("token:{}", grant.id),
            None => format!("key:{}", self.key_id),
        }
    }

    /// `Some(owner)` to restrict a listing, `None` for admins (everything).
    pub fn owner_filter(&self) -> Option<&str> {
        (!self.is_admin()).then_some(self.owner.as_str())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        #[cfg(feature = "bench-no-auth")]
        {
            // Benchmark builds only (see Cargo.toml): every request is an admin, nothing is checked.
            let _ = (parts, state);
            return Ok(Caller {
                key_id: "bench".into(),
                owner: "bench".into(),
                scopes: vec![Scope::Admin],
                token: None,
            });
        }
        #[allow(unreachable_code)]
        if parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("api_key=") || p.starts_with("access_token=")))
        {
            return Err(ApiError::CredentialsInUrl);
        }
        let presented = bearer(&parts.headers);
        let peer = parts.extensions.get::<crate::rate_limit::ClientIp>().map(|c| c.0);
        let Some(presented) = presented else {
            audit_failure(state, peer, None, "missing");
            return Err(ApiError::Unauthorized("send an API key as `Authorization: Bearer mq_...`"));
        };
        let verified = match Credential::parse(presented) {
            Ok(credential) if credential.kind == Kind::ApiKey => state
                .keys
                .verify(&state.pool, &credential)
                .await?
                .map(|k| Caller { key_id: k.id, owner: k.owner, scopes: k.scopes, token: None })
                .ok_or(credential.id),
            Ok(credential) => tokens::verify(&state.pool, &credential)
                .await?
                // Past its expiry, a token may only finish the upload it started.
                .filter(|grant| {
                    !grant.expired || tus_rules::expired_token_may(grant.job_id, &parts.method, parts.uri.path())
                })
                .map(|grant| Caller {
                    key_id: grant.api_key_id.clone(),
                    owner: grant.owner.clone(),
                    scopes: vec![Scope::JobsWrite, Scope::JobsRead],
                    token: Some(grant),
                })
                .ok_or(credential.id),
            Err(_) => Err(String::new()),
        };
        match verified {
            Ok(caller) => {
                // A credential's budget is spent only by requests that proved it: anyone can
                // send a key id (it is not secret), so failures count against their address.
                if let Err(retry_after) = state.rate_limits.check_credential(&caller.actor()) {
                    state.rejections.record(
                        peer,
                        "rate_limit.hit",
                        "credential",
                        Some(&caller.key_id),
                        request_id::current(),
                    );
                    return Err(ApiError::RateLimited(retry_after));
                }
                Ok(caller)
            }
            Err(key_id) => {
                let reason = if key_id.is_empty() { "malformed" } else { "rejected" };
                audit_failure(state, peer, Some(key_id.as_str()).filter(|k| !k.is_empty()), reason);
                Err(ApiError::Unauthorized("the credential is invalid, revoked or expired"))
            }
        }
    }
}

/// The bearer credential of a request: `Authorization: <scheme> <credential>` where the scheme is
/// `Bearer` in any case (RFC 9110: schemes are case-insensitive). The one parser of credentials:
/// authentication and rate limiting both go through [`Caller`].
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credential) = value.split_once(char::is_whitespace)?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Counted in memory and written aggregated (see [`crate::rejections`]): a flood of failures
/// costs no database write per request.
fn audit_failure(state: &AppState, peer: Option<std::net::IpAddr>, key_id: Option<&str>, reason: &'static str) {
    state.rejections.record(peer, "auth.failed", reason, key_id, request_id::current());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_for_every_spelling_of_bearer() {
        let mut h = axum::http::HeaderMap::new();
        for (value, want) in [
            ("Bearer mq_abc", Some("mq_abc")),
            ("bearer mq_abc", Some("mq_abc")),
            ("BEARER   mq_abc  ", Some("mq_abc")),
            ("Bearer\tmq_abc", Some("mq_abc")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("mq_abc", None),
        ] {
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer(&h), want, "{value:?}");
        }
    }
}
