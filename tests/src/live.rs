//! A resumable upload driven over HTTP through the real tus route (`/v1/uploads`), the way a
//! recorder sends it: creation with a deferred (or known) length, one PATCH per timeslice, and
//! a last PATCH that brings the length. Every PATCH must be acknowledged (`204`) before the next.

use reqwest::StatusCode;
use serde_json::Value;

use crate::Api;

/// One upload: create it, append timeslices, finish it.
pub struct TusUpload {
    /// The job's id (the upload's URL is `/v1/uploads/{id}`).
    pub id: String,
    url: String,
    client: reqwest::Client,
    received: u64,
    length: Option<u64>,
}

impl TusUpload {
    /// `POST /v1/uploads` with `Upload-Length` (or `Upload-Defer-Length: 1`), as `api`'s key: a
    /// `recording.webm` of type `video/webm`.
    pub async fn create(api: &Api, length: Option<u64>) -> Self {
        Self::create_typed(api, length, "video/webm").await
    }

    /// [`Self::create`] with another `filetype`: `video/webm`, `video/x-matroska` (Chrome's
    /// H.264 recordings) or `video/mp4`.
    pub async fn create_typed(api: &Api, length: Option<u64>, filetype: &str) -> Self {
        // Upload-Metadata values are base64: "recording.webm", then the type.
        let filetype = match filetype {
            "video/webm" => "dmlkZW8vd2VibQ==",
            "video/x-matroska" => "dmlkZW8veC1tYXRyb3NrYQ==",
            "video/mp4" => "dmlkZW8vbXA0",
            other => panic!("no base64 spelling here for {other}"),
        };
        let mut request = api
            .client
            .post(api.url("/v1/uploads"))
            .header("tus-resumable", "1.0.0")
            .header("upload-metadata", format!("filename cmVjb3JkaW5nLndlYm0=,filetype {filetype}"));
        request = match length {
            Some(length) => request.header("upload-length", length),
            None => request.header("upload-defer-length", "1"),
        };
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "creation: {}", resp.text().await.unwrap_or_default());
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let job: Value = resp.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        assert_eq!(location, format!("/v1/uploads/{id}"));
        assert_eq!(job["status"], "receiving", "{job}");
        Self { id, url: api.url(&location), client: api.client.clone(), received: 0, length }
    }

    /// The job id as a UUID (for database queries).
    pub fn uuid(&self) -> uuid::Uuid {
        self.id.parse().unwrap()
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// One acknowledged PATCH of `bytes` at the current offset.
    pub async fn append(&mut self, bytes: &[u8]) {
        let resp = self.send(bytes, None).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "PATCH: {}", resp.text().await.unwrap_or_default());
        self.received += bytes.len() as u64;
        assert_eq!(resp.headers()["upload-offset"].to_str().unwrap(), self.received.to_string());
    }

    /// The recorder's last PATCH: `bytes` with the whole length (deferred until now), which
    /// completes the upload.
    pub async fn append_last(&mut self, bytes: &[u8]) {
        let length = self.received + bytes.len() as u64;
        assert!(self.length.is_none_or(|l| l == length), "the last PATCH ends the upload");
        let resp = self.send(bytes, Some(length)).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "last PATCH: {}", resp.text().await.unwrap_or_default());
        self.received = length;
        self.length = Some(length);
    }

    /// Completes the upload at what was received: an empty PATCH with the length, when it was
    /// deferred (with a known length, the last `append` completed it already).
    pub async fn finish(&mut self) {
        if self.length.is_none() {
            self.append_last(&[]).await;
        }
        assert_eq!(self.length, Some(self.received), "finished short of its declared length");
    }

    /// A PATCH at the current offset, answered as it is (for refusals).
    pub async fn send(&self, bytes: &[u8], length: Option<u64>) -> reqwest::Response {
        let mut request = self
            .client
            .patch(&self.url)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", self.received);
        if let Some(length) = length {
            request = request.header("upload-length", length);
        }
        request.body(bytes.to_vec()).send().await.unwrap()
    }

    /// Moves the upload's expiry into the past (as if the client had been gone that long).
    pub async fn expire_now(&self, pool: &sqlx::PgPool) {
        sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 second' WHERE job_id = $1")
            .bind(self.uuid())
            .execute(pool)
            .await
            .unwrap();
    }
}

/// `bytes` cut into `count` nearly equal segments (a recorder's timeslices, about as many
/// seconds of media each as the file lasts divided by `count`).
pub fn slices(bytes: &[u8], count: usize) -> Vec<&[u8]> {
    let size = bytes.len().div_ceil(count.max(1));
    bytes.chunks(size.max(1)).collect()
}
