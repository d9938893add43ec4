//! Moving bytes: uploads (streamed from the file, with an `Idempotency-Key` so that a retry after
//! a dropped connection never makes a second job) and downloads (to `OUT.part`, then renamed).

use std::{path::Path, time::Duration};

use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use reqwest::{header, Method};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::client::{unreachable, Client, Failure};

/// How an upload travels. Only `POST /v1/jobs` exists today; a server that answers
/// `OPTIONS /v1/uploads` with `Tus-Version` offers resumable (tus) uploads, which a later
/// version of this client will use to resume from the last stored byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One request per attempt; a retry sends the whole file again, with the same key.
    Post,
    /// The server offers tus; not implemented here yet, so uploads still go by `Post`.
    TusOffered,
}

pub async fn detect_transport(client: &Client) -> Transport {
    let probe = client.request(Method::OPTIONS, "/v1/uploads").timeout(Duration::from_secs(5)).send().await;
    match probe {
        Ok(r) if r.headers().contains_key("tus-version") => Transport::TusOffered,
        _ => Transport::Post,
    }
}

/// The key a file is uploaded with: a hash of its bytes and name, so that the same command run
/// again (or retried inside this one) returns the job the first run made, for the server's 24 h.
pub async fn idempotency_key(path: &Path, filename: &str) -> Result<String, Failure> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| local(path, "cannot read", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        let n = file.read(&mut buf).await.map_err(|e| local(path, "cannot read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.update([0]);
    hasher.update(filename.as_bytes());
    Ok(format!("mediaq-cli-{}", &hex::encode(hasher.finalize())[..48]))
}

fn local_exists(path: &Path) -> Failure {
    Failure::Local(format!("{} exists: pass --force to replace it", path.display()))
}

fn local(path: &Path, what: &str, e: std::io::Error) -> Failure {
    Failure::Local(format!("{what} {}: {e}", path.display()))
}

/// Whether a failed attempt is worth repeating with the same key.
fn retryable(failure: &Failure) -> bool {
    match failure {
        Failure::Unreachable(_) => true,
        Failure::Server { status, .. } => *status == 503,
        Failure::Refused { code, .. } => code == "idempotency_request_in_progress" || code == "rate_limited",
        _ => false,
    }
}

/// Uploads one file; the job as the server created it (or replayed it).
pub async fn upload(
    client: &Client,
    path: &Path,
    filename: &str,
    key: &str,
    retries: u32,
    bar: &ProgressBar,
) -> Result<Value, Failure> {
    let size = tokio::fs::metadata(path).await.map_err(|e| local(path, "cannot read", e))?.len();
    bar.set_length(size);
    let mut attempt = 0;
    loop {
        bar.set_position(0);
        let result = upload_once(client, path, filename, key, size, bar).await;
        match result {
            Err(failure) if attempt < retries && retryable(&failure) => {
                attempt += 1;
                let wait = Duration::from_millis(500 << attempt.min(5));
                bar.set_message(format!("retrying ({failure})"));
                tokio::time::sleep(wait).await;
                bar.set_message("");
            }
            Err(Failure::Unreachable(m)) if attempt > 0 => {
                return Err(Failure::Unreachable(format!("{m}; gave up after {} attempts", attempt + 1)))
            }
            other => return other,
        }
    }
}

async fn upload_once(
    client: &Client,
    path: &Path,
    filename: &str,
    key: &str,
    size: u64,
    bar: &ProgressBar,
) -> Result<Value, Failure> {
    let file = tokio::fs::File::open(path).await.map_err(|e| local(path, "cannot read", e))?;
    let counted = bar.clone();
    let stream = ReaderStream::with_capacity(file, 256 * 1024).inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
    let request = client
        .request(Method::POST, "/v1/jobs")
        .query(&[("filename", filename)])
        .header(header::CONTENT_TYPE, "video/webm")
        .header(header::CONTENT_LENGTH, size)
        .header("idempotency-key", key)
        .body(reqwest::Body::wrap_stream(stream));
    let response = client.send(request).await?;
    client.read_json(response).await
}

/// An existing file at `out` is refused unless `force` (checked before anything is fetched).
pub fn refuse_overwrite(out: &Path, force: bool) -> Result<(), Failure> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(local_exists(out));
    }
    Ok(())
}

/// Downloads a job's MP4 to `out` (through `out.part`); the bytes written. Without `force`, a
/// file that appeared at `out` meanwhile is not replaced either (the part is linked into place,
/// which fails on an existing name, instead of renamed over it).
pub async fn download(client: &Client, id: &str, out: &Path, force: bool, bar: &ProgressBar) -> Result<u64, Failure> {
    let response = client.send(client.request(Method::GET, &format!("/v1/jobs/{id}/output"))).await?;
    if let Some(len) = response.content_length() {
        bar.set_length(len);
    }
    bar.set_position(0);
    let part = out.with_extension("mp4.part");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(|e| local(dir, "cannot create", e))?;
    }
    let mut file = tokio::fs::File::create(&part).await.map_err(|e| local(&part, "cannot write", e))?;
    let mut stream = response.bytes_stream();
    let mut written = 0u64;
    let result: Result<(), Failure> = async {
        while let Some(chunk) = stream.try_next().await.map_err(|e| unreachable(&client.base, &e))? {
            file.write_all(&chunk).await.map_err(|e| local(&part, "cannot write", e))?;
            written += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all().await.map_err(|e| local(&part, "cannot write", e))
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    if force {
        tokio::fs::rename(&part, out).await.map_err(|e| local(out, "cannot write", e))?;
    } else {
        let placed = match tokio::fs::hard_link(&part, out).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(local_exists(out)),
            // A file system without hard links: the check just before the rename has to do.
            Err(_) => match refuse_overwrite(out, false) {
                Ok(()) => tokio::fs::rename(&part, out).await.map_err(|e| local(out, "cannot write", e)),
                refused => refused,
            },
        };
        let _ = tokio::fs::remove_file(&part).await;
        placed?;
    }
    Ok(written)
}
