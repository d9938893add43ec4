//! The shapes of the API's JSON bodies, for the OpenAPI document. The handlers build their bodies
//! with `serde_json` (shared with webhook events), so these types describe them rather than
//! produce them: `tests/tests/openapi_fuzz.rs` checks every response against them. In response
//! bodies every field is always present (`Option` ones as `null`), so [`super::document`] marks
//! every property of a response schema `required` except those in [`super::ABSENT_WHEN_EMPTY`];
//! a field the server stops sending then fails the schema check.

#![allow(dead_code)]

use utoipa::ToSchema;

pub use super::webhook_schemas::*;

/// Where a job is in its life. `succeeded`, `failed`, `canceled` and `expired` are terminal.
/// `receiving`: a resumable upload (`/v1/uploads`) is still arriving and no worker converts it yet.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum JobStatus {
    Receiving,
    Queued,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    Expired,
}

/// Why a job failed: a stable code (`invalid_input`, `unsupported_codec`, `transcode_failed`,
/// `timeout`, ...) and a sentence for people.
#[derive(ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// What the API recorded about the upload.
#[derive(ToSchema)]
pub struct JobInput {
    /// The client's file name, sanitized.
    pub filename: String,
    pub size_bytes: u64,
    /// Hex SHA-256 of the uploaded bytes; `null` while a resumable upload is still arriving.
    pub sha256: Option<String>,
    pub content_type: String,
}

/// What the worker recorded about the MP4.
#[derive(ToSchema)]
pub struct JobOutput {
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_s: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
}

/// One attempt at the conversion: how it ended and what it cost.
#[derive(ToSchema)]
pub struct JobAttempt {
    pub attempt: i32,
    pub worker: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub exit_status: Option<String>,
    pub wall_s: Option<f64>,
    pub user_cpu_s: Option<f64>,
    pub system_cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
}

#[derive(ToSchema)]
pub struct JobLinks {
    /// `/v1/jobs/{id}`
    #[schema(rename = "self")]
    pub self_: String,
    /// `/v1/jobs/{id}/output` once the job has succeeded (and its files still exist).
    pub output: Option<String>,
    /// `/v1/jobs/{id}/poster` when the succeeded job has a poster (video jobs; null for audio only).
    pub poster: Option<String>,
    /// Signed links for the caller that play without any header (`GET /v1/jobs/{id}` and
    /// `GET /v1/jobs`; null until the job has succeeded; never in webhook events).
    pub play: Option<PlayLinks>,
    /// `/v1/play/{token}/stream.m3u8` while the job is `processing`: a signed HLS playlist
    /// (`EXT-X-PLAYLIST-TYPE:EVENT`) of the segments converted so far, closed with
    /// `EXT-X-ENDLIST` when the job ends (segments only when the workers write them:
    /// `MEDIAQ_STREAM_SEGMENT_SECONDS`); null otherwise.
    pub stream: Option<String>,
}

/// Signed playback links (paths relative to the API's address): each opens one file of one
/// job without any header until `expires_at`, and only while the key that asked for it is
/// not revoked.
#[derive(ToSchema)]
pub struct PlayLinks {
    /// `/v1/play/{token}/output.mp4`: the MP4, with Range (for `<video src>`).
    pub output: String,
    /// `/v1/play/{token}/poster.jpg`: the poster; null when the job has none.
    pub poster: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A conversion job. Poll `GET /v1/jobs/{id}` (honour `Retry-After`, send `If-None-Match`) until
/// `status` is terminal; download from `links.output`.
#[derive(ToSchema)]
#[schema(as = Job)]
pub struct JobSchema {
    #[schema(format = "uuid")]
    pub id: String,
    pub status: JobStatus,
    /// 0 to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: f64,
    pub attempts: i32,
    pub error: Option<JobError>,
    pub input: JobInput,
    pub output: Option<JobOutput>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When a retry is scheduled (`queued` after a transient failure).
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// When the job's stored files were deleted.
    #[schema(format = DateTime)]
    pub files_deleted_at: Option<String>,
    /// Orders the job among its owner's waiting jobs (`?priority=` on upload); across owners
    /// the queue stays fair whatever the priorities.
    pub priority: JobPriority,
    /// For an unfinished job: its lane, place in line and estimated start and finish, computed
    /// afresh on each read (`null` once finished, and in webhook events).
    pub queue: Option<JobQueue>,
    /// Every attempt (empty in the upload's response, in lists and in webhook events).
    pub attempt_history: Vec<JobAttempt>,
    pub links: JobLinks,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobPriority {
    Low,
    Normal,
    High,
}

/// Where a job is in the queue. Each lane has worker slots of its own: `cpu` for whole inputs,
/// `live` for resumable uploads converted while they arrive.
#[derive(ToSchema)]
pub struct JobQueue {
    /// `cpu` or `live`; `null` before the job was first queued.
    pub lane: Option<JobLane>,
    /// Jobs that will start before this one (0 when it runs); `null` when it is not in the queue.
    #[schema(minimum = 0)]
    pub position: Option<i64>,
    /// A resumable upload's job out of the queue until more bytes arrive (its first 4 KiB not
    /// yet checked, its key at its live limit, or its upload idle).
    pub waiting_for_bytes: bool,
    /// Worker slots of the lane alive now.
    #[schema(minimum = 0)]
    pub workers: Option<i64>,
    /// When it is estimated to start (its start, once running); `null` when there is nothing
    /// to estimate from (no worker alive, or a live recording still arriving).
    #[schema(format = DateTime)]
    pub estimated_start_at: Option<String>,
    /// When it is estimated to finish, from the workers' recent speed (see README).
    #[schema(format = DateTime)]
    pub estimated_finish_at: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobLane {
    Cpu,
    Live,
}

/// A page of jobs, newest first.
#[derive(ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSchema>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[schema(format = "uuid")]
    pub next_cursor: Option<String>,
}

/// The error body of every 4xx and 5xx response.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The request's id (also in `X-Request-Id`), for support and the server's logs.
    pub request_id: Option<String>,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A stable machine code (see each response's list).
    pub code: String,
    /// A sentence for people; it may change between versions.
    pub message: String,
}

/// `POST /v1/upload-tokens` (every field optional; an empty body takes the defaults).
#[derive(ToSchema)]
pub struct UploadTokenRequest {
    /// Largest upload the token allows (default and ceiling: the server's upload limit).
    #[schema(minimum = 0)]
    pub max_bytes: Option<u64>,
    /// Lifetime in seconds (default MEDIAQ_UPLOAD_TOKEN_TTL, at most 3600).
    #[schema(minimum = 0)]
    pub expires_in: Option<u64>,
    /// Free-form JSON object kept with the token (at most 4096 bytes as JSON, no U+0000).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A single-use upload credential for a browser (`Authorization: Bearer mqt_...`), shown once.
#[derive(ToSchema)]
pub struct UploadToken {
    pub token: String,
    pub token_id: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub max_bytes: u64,
}

/// One row of the audit trail.
#[derive(ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// `key:<id>`, `token:<id>`, `worker:<host>`, `admin-cli`, `anonymous`, ...
    pub actor: String,
    /// `job.created`, `job.downloaded`, `job.poster_downloaded`, `auth.failed`, ...
    pub action: String,
    #[schema(format = "uuid")]
    pub job_id: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub details: serde_json::Value,
}

/// A page of the audit trail, newest first.
#[derive(ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<i64>,
}

#[derive(ToSchema)]
pub struct Requeued {
    #[schema(format = "uuid")]
    pub id: String,
    pub status: JobStatus,
}

/// Queue statistics.
#[derive(ToSchema)]
pub struct AdminStats {
    /// Jobs per status (statuses with jobs only).
    pub jobs_by_status: std::collections::BTreeMap<String, i64>,
    pub queue_depth: i64,
    pub oldest_queued_age_s: Option<f64>,
    pub oldest_due_age_s: Option<f64>,
    pub pending_tasks: i64,
    pub dead_letters: i64,
}

#[derive(ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(ToSchema)]
pub struct ReadyChecks {
    /// `ok`, `migrations_pending` or `unavailable`.
    pub database: String,
    /// `ok` or `unavailable`.
    pub storage: String,
}

/// Readiness: `ready` (200) or `not_ready` (503) with each check and, for storage, the cause.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: ReadyChecks,
    pub error: Option<ErrorDetail>,
}

/// `multipart/form-data` upload (a browser form): one file in the field `file`.
#[derive(ToSchema)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary, content_media_type = "video/webm")]
    pub file: Vec<u8>,
}
