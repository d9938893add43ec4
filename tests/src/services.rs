//! Starting the real `mediaq-api` and `mediaq-worker` binaries against a per-test database.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use sqlx::{postgres::PgPoolOptions, Connection, Executor, PgConnection, PgPool};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::bin_dir;

/// A fresh database (migrated by the real `mediaq-api migrate`) and a fresh storage root.
pub struct TestEnv {
    pub database_url: String,
    /// A key with jobs:write and jobs:read, owner `tester`: every Api client sends it.
    pub api_key: String,
    pub db_name: String,
    pub storage: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    pool: PgPool,
}

fn admin_url() -> String {
    std::env::var("MEDIAQ_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("MEDIAQ_TEST_DATABASE_URL must point at a PostgreSQL server (scripts/test.sh sets it)")
}

/// `postgres://.../olddb?x` -> `postgres://.../newdb?x`
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::on_server(&admin_url()).await
    }

    /// A fresh database on the server at `admin` (e.g. a test's private server).
    pub async fn on_server(admin: &str) -> Self {
        let admin = admin.to_owned();
        let db_name = format!("mediaq_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).await.expect("create test database");
        conn.close().await.ok();
        let database_url = with_database(&admin, &db_name);
        let status = std::process::Command::new(bin_dir().join("mediaq-api"))
            .arg("migrate")
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .status()
            .expect("run mediaq-api migrate");
        assert!(status.success(), "mediaq-api migrate failed");
        let api_key = create_key(&database_url, "tester", "jobs:write,jobs:read", "tester");
        let pool = PgPoolOptions::new().max_connections(4).connect(&database_url).await.expect("connect test db");
        Self {
            database_url,
            api_key,
            db_name,
            storage: tempfile::Builder::new().prefix("mediaq-storage-").tempdir().unwrap(),
            logs: tempfile::Builder::new().prefix("mediaq-logs-").tempdir().unwrap(),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn storage_dir(&self) -> &Path {
        self.storage.path()
    }

    /// Environment every service of this test gets.
    fn base_env(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("MEDIAQ_STORAGE_DIR".into(), self.storage_dir().display().to_string()),
            ("RUST_LOG".into(), std::env::var("MEDIAQ_TEST_LOG").unwrap_or_else(|_| "info".into())),
        ]
    }

    pub async fn api(&self) -> Api {
        self.api_with(&[]).await
    }

    pub async fn api_with(&self, env: &[(&str, &str)]) -> Api {
        self.api_as(&self.api_key, env).await
    }

    /// An API process whose client sends `key` (another tenant's, say).
    pub async fn api_as(&self, key: &str, env: &[(&str, &str)]) -> Api {
        let log = self.logs.path().join(format!("api-{}.log", uuid::Uuid::new_v4().simple()));
        let mut cmd = Command::new(bin_dir().join("mediaq-api"));
        // Tests poll fast and upload in bursts: limits high unless a test sets its own.
        cmd.envs(self.base_env())
            .env("MEDIAQ_BIND", "127.0.0.1:0")
            .env("MEDIAQ_RATE_LIMIT_IP", "10000")
            .env("MEDIAQ_RATE_LIMIT_KEY", "10000")
            .env("MEDIAQ_QUOTA_ACTIVE_JOBS", "10000");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, line, _) = spawn_until(cmd, &log, "mediaq-api listening on ").await;
        let base_url = line.trim().to_owned();
        Api { service: Service { child, log }, base_url, client: client_with_key(key), key: key.to_owned() }
    }

    pub async fn worker(&self) -> Worker {
        self.worker_with(&[]).await
    }

    pub async fn worker_with(&self, env: &[(&str, &str)]) -> Worker {
        self.worker_via(&[], env).await
    }

    /// A worker started through a command prefix (e.g. `ip netns exec HOST`).
    pub async fn worker_via(&self, prefix: &[String], env: &[(&str, &str)]) -> Worker {
        let log = self.logs.path().join(format!("worker-{}.log", uuid::Uuid::new_v4().simple()));
        let bin = bin_dir().join("mediaq-worker");
        let mut cmd = match prefix.split_first() {
            None => Command::new(&bin),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bin);
                cmd
            }
        };
        cmd.envs(self.base_env())
            .env("MEDIAQ_TRANSCODE_BIN", bin_dir().join("mediaq-transcode"))
            .env("MEDIAQ_X264_PRESET", "ultrafast");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, _, earlier) = spawn_until(cmd, &log, "mediaq-worker ready").await;
        // With MEDIAQ_METRICS_BIND set, the worker prints where it serves /metrics before it is ready.
        let metrics_url =
            earlier.iter().find_map(|l| l.strip_prefix("mediaq-worker metrics on ")).map(|u| u.trim().to_owned());
        Worker { service: Service { child, log }, metrics_url }
    }
}

/// Spawns a service with stdout piped and stderr in `log`, and waits for a stdout line starting
/// with `marker`; returns the rest of that line and the lines printed before it.
async fn spawn_until(mut cmd: Command, log: &Path, marker: &str) -> (Child, String, Vec<String>) {
    let log_file = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::piped()).stderr(log_file).stdin(Stdio::null()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn service");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut earlier = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix(marker) {
                return Some(rest.to_owned());
            }
            earlier.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(rest)) => {
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            (child, rest, earlier)
        }
        _ => {
            let _ = child.start_kill();
            panic!("service did not print {marker:?}; log:\n{}", tail(log, 60));
        }
    }
}

pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running child process, killed when dropped; its log is printed if the test failed.
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait()).await.expect("service exits in time").unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- {} (last lines) ----\n{}", self.log.display(), tail(&self.log, 80));
        }
        let _ = self.child.start_kill();
    }
}

pub struct Api {
    pub service: Service,
    pub base_url: String,
    /// Sends `Authorization: Bearer <key>` on every request.
    pub client: reqwest::Client,
    pub key: String,
}

/// A client that sends `key` as its bearer credential.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Creates an API key with the real CLI and returns it (the last line of its output).
pub fn create_key(database_url: &str, name: &str, scopes: &str, owner: &str) -> String {
    let out = std::process::Command::new(bin_dir().join("mediaq-api"))
        .args(["keys", "create", "--name", name, "--scopes", scopes, "--owner", owner])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mediaq-api keys create");
    assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().last().expect("the key on the last line").trim().to_owned()
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.base_url.trim_start_matches("http://").parse().unwrap()
    }

    /// Raw-body upload.
    pub async fn upload(&self, bytes: Vec<u8>, content_type: &str, filename: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url("/v1/jobs")).header("content-type", content_type).body(bytes);
        if let Some(name) = filename {
            req = req.query(&[("filename", name)]);
        }
        req.send().await.unwrap()
    }

    /// Starts a raw-body upload (`video/webm`, `Connection: close`) over a plain TCP connection
    /// and sends the head and only the first `sent` bytes of `body`: a slow client, or one about
    /// to vanish. `extra_headers` are added as they are (each line ending in `\r\n`).
    pub async fn start_partial_upload(&self, body: &[u8], sent: usize, extra_headers: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let head = format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: video/webm\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.key,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..sent]).await.unwrap();
        stream.flush().await.unwrap();
        stream
    }

    /// Checks range requests on `url` against its `full` body: a middle range, a suffix, and a
    /// range past the end (416 with `bytes */len`).
    pub async fn check_ranges(&self, url: &str, full: &[u8]) {
        let resp = self.client.get(url).header("range", "bytes=100-1099").send().await.unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.headers()["content-range"], format!("bytes 100-1099/{}", full.len()).as_str());
        assert_eq!(resp.headers()["content-length"], "1000");
        assert_eq!(resp.bytes().await.unwrap(), &full[100..1100]);
        let resp = self.client.get(url).header("range", "bytes=-16").send().await.unwrap();
        assert_eq!(resp.status(), 206);
        assert_eq!(resp.bytes().await.unwrap(), &full[full.len() - 16..]);
        let resp = self.client.get(url).header("range", format!("bytes={}-", full.len() + 10)).send().await.unwrap();
        assert_eq!(resp.status(), 416);
        assert_eq!(resp.headers()["content-range"], format!("bytes */{}", full.len()).as_str());
    }

    /// Browser-form upload (multipart, field `file`).
    pub async fn upload_form(&self, bytes: Vec<u8>, filename: &str, part_type: &str) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str(part_type).unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        self.client.post(self.url("/v1/jobs")).multipart(form).send().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> serde_json::Value {
        let resp = self.client.get(self.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET job {id}");
        resp.json().await.unwrap()
    }

    /// Polls a job until it is terminal; returns every distinct progress seen and the final job.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> (Vec<f64>, serde_json::Value) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            let p = job["progress"].as_f64().unwrap();
            if seen.last() != Some(&p) {
                seen.push(p);
            }
            if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "canceled" | "expired")) {
                return (seen, job);
            }
            if tokio::time::Instant::now() > deadline {
                panic!("job {id} not terminal after {timeout:?}: {job}\napi log:\n{}", tail(&self.service.log, 40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub struct Worker {
    pub service: Service,
    /// `http://ADDR` of the worker's /metrics and /healthz, when MEDIAQ_METRICS_BIND was given.
    pub metrics_url: Option<String>,
}
