//! Test harness: real binaries, a real PostgreSQL database per test, real HTTP over loopback.

pub mod fixtures;
pub mod fuzz;
pub mod hosts;
pub mod live;
pub mod pg;
pub mod probe;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod services;
pub mod webhooks;

pub use services::{Api, TestEnv, Worker};

use std::path::PathBuf;

/// Directory holding the workspace's built binaries: `target/debug`, next to this test binary,
/// or `MEDIAQ_BIN_DIR` (benchmarks run the release binaries from the debug-built tests).
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os("MEDIAQ_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            // target/debug/deps/<test> -> target/debug
            exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
        }
    };
    assert!(
        dir.join("mediaq-api").exists(),
        "{} has no mediaq-api binary: run `cargo build --workspace` first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The shared corpus beside the checkout, when present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    dir.join("MANIFEST.tsv").exists().then(|| dir.canonicalize().unwrap())
}

/// One row of the corpus manifest.
#[derive(Debug, Clone)]
pub struct CorpusEntry {
    pub filename: String,
    pub path: PathBuf,
    pub expected: String,
    pub doc_type: String,
}

pub fn corpus() -> Vec<CorpusEntry> {
    let Some(dir) = corpus_dir() else {
        eprintln!("note: ../shared/corpus not present; corpus checks skipped");
        return Vec::new();
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (fc, ec, dc) = (col("filename"), col("expected"), col("ebml_doctype"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            CorpusEntry {
                filename: cells[fc].to_owned(),
                path: dir.join(cells[fc]),
                expected: cells[ec].to_owned(),
                doc_type: cells[dc].to_owned(),
            }
        })
        .collect()
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The MP4s under `dir` (a job's outputs: each succeeded video job also stores a poster JPEG).
pub fn mp4s_under(dir: &std::path::Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "mp4")).collect()
}

/// Lists the regular files under `dir`, recursively (for "nothing left behind" checks).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Transcoder processes working on `job_id` (their job directory, on the command line, is
/// named after it).
pub fn transcoders_of(job_id: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            (text.contains("mediaq-transcode") && text.contains(job_id)).then_some(pid)
        })
        .collect()
}

/// An error response: its status and code, after checking the error body's shape (code, message,
/// request id) and the X-Request-Id header every response carries.
pub async fn error_code(resp: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("x-request-id"), "every response carries X-Request-Id");
    let body: serde_json::Value = resp.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["request_id"].as_str().is_some(), "{body}");
    (status, code, body)
}
