//! The outbound HTTP client for webhooks: every address a host resolves to is checked at
//! connect time (no DNS rebinding between registration and delivery), no proxy, no redirects,
//! a timeout on the whole exchange, and at most a few KiB of the response read.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use mediaq_shared::{
    db::deliveries::{Claimed, Outcome},
    webhook::{event_body, signature, AddressPolicy, WebhookConfig},
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Response bytes read before the connection is dropped (the body is not used).
const MAX_RESPONSE_BYTES: usize = 4096;

/// A resolver that refuses a host if any of its addresses is not allowed by the policy.
struct CheckedResolver(AddressPolicy);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends signed events.
pub struct Sender {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl Sender {
    pub fn new(config: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver(config.policy.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("mediaq-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy: config.policy.clone() })
    }

    /// Sends one attempt of a claimed delivery; never fails, the outcome says what happened.
    pub async fn send(&self, claimed: &Claimed) -> Outcome {
        let started = Instant::now();
        let result = self.exchange(claimed).await;
        let latency = started.elapsed();
        match result {
            Ok(status) if (200..300).contains(&status) => {
                Outcome { latency, response_status: Some(status), error: None }
            }
            Ok(status) => Outcome { latency, response_status: Some(status), error: Some(format!("HTTP {status}")) },
            Err(error) => Outcome { latency, response_status: None, error: Some(error) },
        }
    }

    async fn exchange(&self, claimed: &Claimed) -> Result<u16, String> {
        // Literal addresses never reach the resolver: check them (and the scheme) here.
        let url = self.policy.parse(&claimed.url).map_err(|e| format!("URL refused: {e}"))?;
        if claimed.secrets.is_empty() {
            return Err("the owner has no usable signing secret (is MEDIAQ_SECRETS_KEY the one that sealed it?)".into());
        }
        let body = event_body(claimed.event_id, &claimed.event_type, claimed.created, &claimed.job);
        let secrets: Vec<&str> = claimed.secrets.iter().map(String::as_str).collect();
        let signature = signature::sign(&secrets, chrono::Utc::now().timestamp(), &body);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::SIGNATURE_HEADER, signature)
            .header(signature::EVENT_ID_HEADER, claimed.event_id.to_string())
            .header("Mediaq-Event-Type", &claimed.event_type)
            .header("Mediaq-Delivery-Attempt", claimed.attempt.to_string())
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        drain_capped(response).await;
        Ok(status)
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of a response, then lets the connection go.
async fn drain_capped(mut response: reqwest::Response) {
    let mut read = 0;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

/// A short cause for the delivery log: the error and its sources, without the URL's query.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.last() {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_owned(),
    }
}
