//! The API's one error type. Each variant maps to a stable machine code and an HTTP status;
//! bodies never carry SQL, paths or internal messages (those go to the log).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the upload is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("the request body is larger than the limit of {0} bytes for this route")]
    BodyTooLarge(u64),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotWebm(String),
    #[error("{0}")]
    ExtensionMismatch(String),
    #[error("the upload is empty")]
    EmptyUpload,
    #[error("{0}")]
    MalformedMultipart(String),
    #[error("the form has no `file` field: send the video in a field named `file`")]
    MissingFile,
    #[error("the form holds more than one file: send one video per request")]
    TooManyFiles,
    #[error("the upload ended before it was complete")]
    UploadIncomplete,
    #[error("the client sent nothing for {0} seconds")]
    UploadTimeout(u64),
    #[error("the upload was slower than the minimum of {0} bytes per second on average")]
    UploadTooSlow(u64),
    #[error("this key already has {0} uploads in progress, as many as one key may have at once; retry when one has finished")]
    TooManyUploads(usize),
    #[error("{0}")]
    InvalidJobId(String),
    #[error("no job with this id")]
    JobNotFound,
    #[error("the job has not succeeded yet (status: {0}); poll it and download when it has")]
    JobNotReady(&'static str),
    #[error("the converted file is no longer available")]
    OutputGone,
    #[error("this job has no poster ({0})")]
    PosterNotAvailable(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("the requested byte range is outside the file")]
    RangeNotSatisfiable,
    #[error("a request with this Idempotency-Key is still in progress; retry when it has finished")]
    IdempotencyInProgress,
    #[error("this Idempotency-Key was used for a different request; use a new key for a new upload")]
    IdempotencyKeyReused,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this key lacks the `{0}` scope")]
    InsufficientScope(&'static str),
    #[error("credentials are accepted only in the Authorization header, never in the URL")]
    CredentialsInUrl,
    #[error("too many requests; retry after {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    QuotaExceeded(String, u64),
    #[error("webhook URL refused: {0}")]
    WebhookUrlRefused(String),
    #[error("a per-job webhook_url needs a signing secret: register an endpoint or POST /v1/webhooks/secret first")]
    WebhookSecretMissing,
    #[error("no webhook endpoint with this id")]
    WebhookNotFound,
    #[error("no such delivery for this endpoint")]
    DeliveryNotFound,
    #[error("only a failed job can be requeued")]
    JobNotRequeueable,
    #[error("only a failed job can be retried (this one is {0})")]
    JobNotFailed(&'static str),
    #[error("this job cannot be retried: {0}; upload the video again")]
    InputGone(&'static str),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable,
    #[error("the server is already receiving {0} uploads, as many as it takes at once; retry shortly")]
    ServerBusy(usize),
    #[error("the server has no room to store the upload")]
    InsufficientStorage,
    #[error("storage is unavailable; try again shortly")]
    StorageUnavailable,
    #[error("this server speaks tus 1.0.0: send `Tus-Resumable: 1.0.0`")]
    TusVersionUnsupported,
    #[error("no upload with this id (it was finished long ago, terminated, expired, or never existed)")]
    UploadNotFound,
    #[error("the upload is at offset {0}: resume from there (HEAD tells the offset)")]
    UploadOffsetMismatch(u64),
    #[error("this upload takes at most {0} more bytes (its Upload-Length)")]
    UploadLengthExceeded(u64),
    #[error("this upload takes no more bytes: {0}")]
    UploadClosed(String),
    #[error("another PATCH to this upload is in progress: wait for it, then ask HEAD for the offset")]
    UploadBusy,
    #[error("this upload has {0} segments, the most one may have (MEDIAQ_MAX_UPLOAD_SEGMENTS): send larger PATCHes")]
    TooManySegments(u32),
    #[error("this link is malformed or was altered")]
    LinkInvalid,
    #[error("this link has expired; ask the API for a new one")]
    LinkExpired,
    #[error("the key that issued this link was revoked")]
    LinkRevoked,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::PayloadTooLarge { .. } | Self::BodyTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotWebm(_) => "not_webm",
            Self::ExtensionMismatch(_) => "extension_mismatch",
            Self::EmptyUpload => "empty_upload",
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::MissingFile => "missing_file",
            Self::TooManyFiles => "too_many_files",
            Self::UploadIncomplete => "upload_incomplete",
            Self::UploadTimeout(_) => "upload_timeout",
            Self::UploadTooSlow(_) => "upload_too_slow",
            Self::TooManyUploads(_) => "too_many_uploads",
            Self::InvalidJobId(_) => "invalid_job_id",
            Self::JobNotFound => "job_not_found",
            Self::JobNotReady(_) => "job_not_ready",
            Self::OutputGone => "output_gone",
            Self::PosterNotAvailable(_) => "poster_not_available",
            Self::BadRequest(_) => "bad_request",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::IdempotencyInProgress => "idempotency_request_in_progress",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unauthorized(_) => "unauthorized",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::CredentialsInUrl => "credentials_in_url",
            Self::RateLimited(_) => "rate_limited",
            Self::QuotaExceeded(..) => "quota_exceeded",
            Self::JobNotRequeueable => "job_not_requeueable",
            Self::JobNotFailed(_) => "job_not_failed",
            Self::InputGone(_) => "input_gone",
            Self::WebhookUrlRefused(_) => "webhook_url_refused",
            Self::WebhookSecretMissing => "webhook_secret_missing",
            Self::WebhookNotFound => "webhook_not_found",
            Self::DeliveryNotFound => "delivery_not_found",
            Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::InsufficientStorage => "insufficient_storage",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ServerBusy(_) => "server_busy",
            Self::TusVersionUnsupported => "tus_version_unsupported",
            Self::UploadNotFound => "upload_not_found",
            Self::UploadOffsetMismatch(_) => "upload_offset_mismatch",
            Self::UploadLengthExceeded(_) => "upload_length_exceeded",
            Self::UploadClosed(_) => "upload_closed",
            Self::UploadBusy => "upload_busy",
            Self::TooManySegments(_) => "too_many_segments",
            Self::LinkInvalid => "link_invalid",
            Self::LinkExpired => "link_expired",
            Self::LinkRevoked => "link_revoked",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::PayloadTooLarge { .. } | Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) | Self::NotWebm(_) | Self::ExtensionMismatch(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::EmptyUpload
            | Self::MalformedMultipart(_)
            | Self::MissingFile
            | Self::TooManyFiles
            | Self::UploadIncomplete
            | Self::BadRequest(_)
            | Self::InvalidJobId(_) => StatusCode::BAD_REQUEST,
            Self::UploadTimeout(_) | Self::UploadTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) | Self::QuotaExceeded(..) | Self::TooManyUploads(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::InsufficientScope(_) | Self::LinkInvalid | Self::LinkExpired | Self::LinkRevoked => {
                StatusCode::FORBIDDEN
            }
            Self::CredentialsInUrl => StatusCode::BAD_REQUEST,
            Self::JobNotFound
            | Self::RouteNotFound
            | Self::WebhookNotFound
            | Self::DeliveryNotFound
            | Self::PosterNotAvailable(_) => StatusCode::NOT_FOUND,
            Self::WebhookUrlRefused(_) | Self::WebhookSecretMissing => StatusCode::UNPROCESSABLE_ENTITY,
            Self::JobNotReady(_) | Self::IdempotencyInProgress | Self::JobNotRequeueable | Self::JobNotFailed(_) => {
                StatusCode::CONFLICT
            }
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::OutputGone | Self::InputGone(_) => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::DatabaseUnavailable | Self::StorageUnavailable | Self::ServerBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::TusVersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Self::UploadNotFound => StatusCode::NOT_FOUND,
            Self::UploadOffsetMismatch(_) => StatusCode::CONFLICT,
            Self::UploadLengthExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UploadClosed(_) => StatusCode::GONE,
            Self::UploadBusy => StatusCode::LOCKED,
            Self::TooManySegments(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if mediaq_shared::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            Self::internal(err)
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Self::InsufficientStorage,
            _ => Self::internal(err),
        }
    }
}

impl From<mediaq_shared::storage::StorageError> for ApiError {
    fn from(err: mediaq_shared::storage::StorageError) -> Self {
        use mediaq_shared::storage::StorageError;
        match err {
            StorageError::Io(e) => e.into(),
            other => {
                tracing::warn!(error = %other, reason = %other.reason(), "storage unavailable");
                Self::StorageUnavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(source) => {
                tracing::error!(error = %source, debug = ?source, "internal error")
            }
            other if status.is_server_error() => {
                tracing::warn!(code = other.code(), "request failed")
            }
            other => tracing::info!(code = other.code(), message = %other, "request rejected"),
        }
        let body = json!({
            "error": { "code": self.code(), "message": self.to_string() },
            "request_id": request_id::current(),
        });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::RateLimited(secs) | Self::QuotaExceeded(_, secs) = &self {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if let Self::TusVersionUnsupported = &self {
            headers.insert("tus-version", HeaderValue::from_static(crate::tus::VERSION));
        }
        if let Self::TooManyUploads(_) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mediaq\""));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is not read: tell the client (and hyper) to drop the connection.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
