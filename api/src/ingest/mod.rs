//! Upload ingest: stream -> checks -> durable object (local: fsync + atomic rename; S3: completed
//! multipart upload) -> one transaction (job row, audit
//! row, queue task) -> 202. The API never decodes media; it only reads the EBML header.
//! This module receives; [`store`] stores and records.

mod admit;
mod ebml;
mod receiver;
pub mod resumable;
pub mod slots;
mod sniff;
mod store;
pub mod tus_rules;

pub use admit::{admit, Admission, Recorded, UploadHead};
use store::store;
pub use store::Origin;

use axum::{
    body::BodyDataStream,
    extract::{FromRequest, Multipart, Request},
};
use futures_util::StreamExt;
use mediaq_shared::OriginalFilename;
use sha2::{Digest, Sha256};

use crate::{app::AppState, error::ApiError};
use receiver::{Pace, Received, Receiver};

/// Name used when the client gives none.
const DEFAULT_FILENAME: &str = "upload.webm";
/// Cap on a non-file form field (they are read and ignored).
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// An upload's body, held by the handler from the start so that whatever ends the request, its
/// refusal reads the rest of the body (or not) in one place: [`UploadBody::refuse`].
pub struct UploadBody(BodyState);

enum BodyState {
    Unread(Box<Request>),
    Raw(BodyDataStream),
    Form(Multipart),
    /// Taken by a form parser that refused it.
    Gone,
}

impl UploadBody {
    pub fn new(request: Request) -> Self {
        Self(BodyState::Unread(Box::new(request)))
    }

    /// The body as a raw byte stream (a tus PATCH's).
    pub fn raw(&mut self) -> &mut BodyDataStream {
        if !matches!(self.0, BodyState::Raw(_)) {
            self.0 = BodyState::Raw(match std::mem::replace(&mut self.0, BodyState::Gone) {
                BodyState::Unread(request) => request.into_body().into_data_stream(),
                // A body already taken as a form has nothing left to read raw.
                _ => axum::body::Body::empty().into_data_stream(),
            });
        }
        match &mut self.0 {
            BodyState::Raw(stream) => stream,
            _ => unreachable!("made raw above"),
        }
    }

    /// Ends a refused upload: refusals of well-formed requests read the rest of the body
    /// (bounded) so that a client still sending sees the error rather than a reset connection,
    /// and keep-alive survives; an over-size body, a broken stream or a silent client are cut
    /// off at once.
    pub async fn refuse(self, error: &ApiError) {
        if !error.drains_body() {
            return;
        }
        match self.0 {
            BodyState::Unread(request) => drain_stream(&mut request.into_body().into_data_stream()).await,
            BodyState::Raw(mut stream) => drain_stream(&mut stream).await,
            BodyState::Form(multipart) => drain_form(multipart).await,
            BodyState::Gone => {}
        }
    }
}

/// Receives an admitted upload into storage: a raw body (`Content-Type: video/webm`,
/// `audio/webm`, `video/x-matroska` or `audio/x-matroska`, named by `filename`), or a browser
/// form (`multipart/form-data` with exactly one file in the field `file`).
pub async fn receive(
    state: &AppState,
    limit: u64,
    head: &UploadHead,
    filename: Option<&str>,
    body: &mut UploadBody,
) -> Result<Upload, ApiError> {
    body.0 = match std::mem::replace(&mut body.0, BodyState::Gone) {
        BodyState::Unread(request) if head.multipart => BodyState::Form(
            Multipart::from_request(*request, state).await.map_err(|e| ApiError::MalformedMultipart(e.body_text()))?,
        ),
        BodyState::Unread(request) => BodyState::Raw(request.into_body().into_data_stream()),
        opened => opened,
    };
    match &mut body.0 {
        BodyState::Form(multipart) => receive_form(state, limit, multipart).await,
        BodyState::Raw(stream) => receive_raw(state, limit, &head.content_type, filename, stream).await,
        BodyState::Unread(_) | BodyState::Gone => Err(ApiError::internal("an upload body was received twice")),
    }
}

async fn receive_raw(
    state: &AppState,
    limit: u64,
    content_type: &str,
    filename: Option<&str>,
    stream: &mut BodyDataStream,
) -> Result<Upload, ApiError> {
    let declared = sniff::check_declared_type(content_type)?;
    let filename = OriginalFilename::sanitize(filename.unwrap_or(DEFAULT_FILENAME));
    sniff::check_extension(&filename)?;
    let mut receiver = Receiver::create(&state.storage, limit).await?;
    receiver.copy_from(stream, Pace::from_config(&state.config), |_| ApiError::UploadIncomplete).await?;
    Ok(Upload { received: receiver.finish().await?, filename, content_type: declared.to_owned() })
}

async fn receive_form(state: &AppState, limit: u64, multipart: &mut Multipart) -> Result<Upload, ApiError> {
    let mut upload: Option<Upload> = None;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") {
            if field.file_name().is_some() {
                return Err(if upload.is_none() { ApiError::MissingFile } else { ApiError::TooManyFiles });
            }
            skip_text_field(field).await?;
            continue;
        }
        if upload.is_some() {
            return Err(ApiError::TooManyFiles);
        }
        sniff::check_part_type(field.content_type())?;
        let filename = OriginalFilename::sanitize(field.file_name().unwrap_or(DEFAULT_FILENAME));
        sniff::check_extension(&filename)?;
        let content_type = sniff::part_type(field.content_type());
        let mut receiver = Receiver::create(&state.storage, limit).await?;
        receiver.copy_from(field, Pace::from_config(&state.config), malformed).await?;
        upload = Some(Upload { received: receiver.finish().await?, filename, content_type: content_type.to_owned() });
    }
    upload.ok_or(ApiError::MissingFile)
}

/// A received upload, before it is recorded (its object goes away if it is dropped).
pub struct Upload {
    received: Received,
    filename: OriginalFilename,
    content_type: String,
}

impl Upload {
    /// What makes two job-creation requests "the same" for Idempotency-Key: the bytes, the
    /// declared type and the (sanitized) filename.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.received.sha256.as_str(), &self.content_type, self.filename.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// How much of a refused body is read (and discarded) so that a client still sending gets the
/// error response rather than a reset connection. Past this, the connection is simply closed.
const DRAIN_MAX_BYTES: usize = 16 << 20;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn drain_stream(stream: &mut BodyDataStream) {
    let mut seen = 0;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

async fn drain_form(mut multipart: Multipart) {
    let mut seen = 0;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Some(Ok(chunk)) = field.next().await {
                seen += chunk.len();
                if seen > DRAIN_MAX_BYTES {
                    return;
                }
            }
        }
    })
    .await;
}

impl ApiError {
    /// Whether a refused upload's body is read to its end (bounded): see [`UploadBody::refuse`].
    fn drains_body(&self) -> bool {
        !matches!(
            self,
            ApiError::PayloadTooLarge { .. }
                | ApiError::UploadIncomplete
                | ApiError::UploadTimeout(_)
                | ApiError::UploadTooSlow(_)
                | ApiError::MalformedMultipart(_)
                // Another PATCH holds the upload: this one's body is not read at all.
                | ApiError::UploadBusy
        )
    }
}

fn malformed(err: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::MalformedMultipart(format!("the multipart body is malformed or ended early: {}", err.body_text()))
}

async fn skip_text_field(mut field: axum::extract::multipart::Field<'_>) -> Result<(), ApiError> {
    let mut seen = 0;
    while let Some(chunk) = field.next().await {
        seen += chunk.map_err(malformed)?.len();
        if seen > MAX_TEXT_FIELD {
            return Err(ApiError::MalformedMultipart("a form field other than `file` is too large".into()));
        }
    }
    Ok(())
}
