//! The HTTP side: one client with the bearer key, and the server's errors as [`Failure`]s that
//! keep its code and sentence.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::text::clean;

/// Most of an error body read (the API's are a few hundred bytes); the rest is never read.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Most of a JSON answer read (a page of 100 jobs is about 100 KB).
const MAX_JSON_BODY: usize = 8 << 20;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
pub enum Failure {
    /// The server refused the request (4xx): its code and sentence.
    Refused { status: u16, code: String, message: String, request_id: Option<String> },
    /// The server failed (5xx) or answered something that is not the API's.
    Server { status: u16, code: String, message: String, request_id: Option<String> },
    /// No answer: connection refused, reset, timed out, or dropped mid-request.
    Unreachable(String),
    /// The job ended without an MP4 (failed, canceled or expired).
    JobFailed { id: String, status: String, code: Option<String>, message: Option<String> },
    /// Anything on this side: a file that cannot be read or written, bad arguments.
    Local(String),
}

impl Failure {
    /// 0 is success, 2 is a usage error (clap's).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Local(_) => 1,
            Self::JobFailed { .. } => 3,
            Self::Refused { .. } => 4,
            Self::Server { .. } | Self::Unreachable(_) => 5,
        }
    }

    pub fn to_json(&self) -> Value {
        let (kind, code, message, status) = match self {
            Self::Refused { status, code, message, .. } => ("refused", code.clone(), message.clone(), Some(*status)),
            Self::Server { status, code, message, .. } => ("server", code.clone(), message.clone(), Some(*status)),
            Self::Unreachable(m) => ("unreachable", "unreachable".to_owned(), m.clone(), None),
            Self::JobFailed { status, code, message, .. } => (
                "job_failed",
                code.clone().unwrap_or_else(|| format!("job_{status}")),
                message.clone().unwrap_or_else(|| format!("the job is {status}")),
                None,
            ),
            Self::Local(m) => ("local", "local_error".to_owned(), m.clone(), None),
        };
        serde_json::json!({ "error": { "kind": kind, "code": code, "message": message, "http_status": status } })
    }
}

/// Shown to people: whatever came from the server is [`clean`]ed first.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cleaned().fmt_raw(f)
    }
}

impl Failure {
    /// The same failure with every text [`clean`]ed.
    fn cleaned(&self) -> Self {
        let opt = |s: &Option<String>| s.as_deref().map(clean);
        match self {
            Self::Refused { status, code, message, request_id } => Self::Refused {
                status: *status,
                code: clean(code),
                message: clean(message),
                request_id: opt(request_id),
            },
            Self::Server { status, code, message, request_id } => Self::Server {
                status: *status,
                code: clean(code),
                message: clean(message),
                request_id: opt(request_id),
            },
            Self::JobFailed { id, status, code, message } => {
                Self::JobFailed { id: clean(id), status: clean(status), code: opt(code), message: opt(message) }
            }
            Self::Unreachable(m) => Self::Unreachable(clean(m)),
            Self::Local(m) => Self::Local(clean(m)),
        }
    }

    fn fmt_raw(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { status, code, message, request_id }
            | Self::Server { status, code, message, request_id } => {
                write!(f, "{code}: {message} (HTTP {status}")?;
                if let Some(id) = request_id {
                    write!(f, ", request {id}")?;
                }
                write!(f, ")")
            }
            Self::Unreachable(m) => write!(f, "unreachable: {m}"),
            Self::JobFailed { id, status, code, message } => {
                write!(f, "job {id} {status}")?;
                if let (Some(c), Some(m)) = (code, message) {
                    write!(f, ": {c}: {m}")?;
                }
                Ok(())
            }
            Self::Local(m) => write!(f, "{m}"),
        }
    }
}

/// A transport error: the server could not be reached, or the connection broke.
pub fn unreachable(base: &str, err: &reqwest::Error) -> Failure {
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    Failure::Unreachable(format!("cannot reach the mediaq server at {base} ({cause})"))
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, key: Option<&str>) -> Result<Self, Failure> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| Failure::Local("the API key holds characters a header cannot carry".into()))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("mediaq-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::Local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), http })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends, and turns a transport error into [`Failure::Unreachable`] and an error status into
    /// the server's code and sentence.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let response = request.send().await.map_err(|e| unreachable(&self.base, &e))?;
        check(response).await
    }

    pub async fn json(&self, method: Method, path: &str) -> Result<Value, Failure> {
        let response = self.send(self.request(method, path)).await?;
        self.read_json(response).await
    }

    /// A successful answer's JSON body, read up to [`MAX_JSON_BODY`].
    pub async fn read_json(&self, response: Response) -> Result<Value, Failure> {
        let status = response.status().as_u16();
        let (body, cut) = read_bounded(response, MAX_JSON_BODY).await.map_err(|e| unreachable(&self.base, &e))?;
        let bad =
            |what: String| Failure::Server { status, code: "bad_response".into(), message: what, request_id: None };
        if cut {
            return Err(bad(format!("the answer is larger than {MAX_JSON_BODY} bytes")));
        }
        serde_json::from_slice(&body).map_err(|e| bad(format!("the answer is not JSON: {e}")))
    }
}

/// At most `limit` bytes of a body, and whether there was more (left unread: the connection is
/// dropped with the response).
async fn read_bounded(response: Response, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..limit - body.len()]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// An error status as a [`Failure`] with the API's code and sentence (or what the body was).
pub async fn check(response: Response) -> Result<Response, Failure> {
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(response);
    }
    let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // A hostile or broken server may send an endless body: only its start is read.
    let body = read_bounded(response, MAX_ERROR_BODY).await.map(|(body, _)| body).unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v["error"][name].as_str()).map(str::to_owned);
    let code = field("code").unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        }
    });
    let status = status.as_u16();
    Err(if status < 500 {
        Failure::Refused { status, code, message, request_id }
    } else {
        Failure::Server { status, code, message, request_id }
    })
}
