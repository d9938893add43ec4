//! A webhook receiver on loopback for the tests: records every request (headers, raw body,
//! arrival time) and answers from a script (status codes, an optional hang), then 200.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What to answer to the next requests, in order; once empty, 200.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Hold the request this long, then 200 (to die mid-delivery).
    Hang(Duration),
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Reply>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

/// A running receiver; dropping it stops it.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: &[Reply]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    /// A receiver on a given address (to bring a dead one back on the same port).
    pub async fn start_on(addr: SocketAddr, script: &[Reply]) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, script)
    }

    fn serve(listener: tokio::net::TcpListener, script: &[Reply]) -> Self {
        let addr = listener.local_addr().unwrap();
        let shared = Shared::default();
        shared.0.lock().unwrap().script = script.iter().copied().collect();
        let app = Router::new().route("/hook", post(hook)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.0.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        crate::wait_for(timeout, &format!("{n} webhook requests"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let reply = {
        let mut inner = shared.0.lock().unwrap();
        inner.received.push(Received { at: Instant::now(), headers, body: body.to_vec() });
        inner.script.pop_front()
    };
    match reply {
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap(),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        None => StatusCode::OK,
    }
}

/// Verifies a `Mediaq-Signature` header with Python's `hmac` (an implementation independent of
/// ours): `Ok` when one `v1` matches and the timestamp is within `tolerance` of now.
pub fn python_verify(header: &str, body: &[u8], secret: &str, tolerance: i64) -> Result<(), String> {
    const SCRIPT: &str = r#"
import hmac, hashlib, sys, time
header, secret, tolerance = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = sys.stdin.buffer.read()
parts = [p.split("=", 1) for p in header.split(",")]
t = [v for k, v in parts if k == "t"][0]
sigs = [v for k, v in parts if k == "v1"]
if abs(time.time() - int(t)) > tolerance:
    sys.exit("stale")
expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
if not any(hmac.compare_digest(expected, s) for s in sigs):
    sys.exit("mismatch")
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT, header, secret, &tolerance.to_string()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
