//! The error type of the transcode engine: a stable machine code plus a message a person can act on.

use std::fmt;

use crate::protocol::TranscodeErrorCode;

/// A failed transcode, reported by the child as an `error` event.
#[derive(Debug, Clone)]
pub struct TranscodeError {
    pub code: TranscodeErrorCode,
    pub message: String,
}

impl TranscodeError {
    pub fn new(code: TranscodeErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The file cannot be parsed as WebM/Matroska or holds nothing to convert.
    pub fn invalid_media(message: impl Into<String>) -> Self {
        Self::new(TranscodeErrorCode::InvalidMedia, message)
    }

    /// The file holds audio/video in a codec the service does not accept.
    pub fn unsupported_codec(message: impl Into<String>) -> Self {
        Self::new(TranscodeErrorCode::UnsupportedCodec, message)
    }

    /// libav failed while decoding, filtering, encoding or writing.
    pub fn transcode(message: impl Into<String>) -> Self {
        Self::new(TranscodeErrorCode::TranscodeError, message)
    }

    /// A libav call failed: `what` says what was being done ("opening the H.264 encoder").
    /// A full disk (ENOSPC, EDQUOT) or an I/O error is the machine's fault, not the file's:
    /// reported as `storage_error` so that the worker retries the job later.
    pub fn libav(what: &str, err: ffmpeg_next::Error) -> Self {
        match err {
            ffmpeg_next::Error::Other { errno } if [libc::ENOSPC, libc::EDQUOT, libc::EIO].contains(&errno) => {
                Self::new(TranscodeErrorCode::StorageError, format!("{what} failed: {err}"))
            }
            _ => Self::transcode(format!("{what} failed: {err}")),
        }
    }
}

impl fmt::Display for TranscodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for TranscodeError {}

/// Shorthand for results of the transcode engine.
pub type Result<T, E = TranscodeError> = std::result::Result<T, E>;

/// Adds the "what was being done" context to a libav error.
pub trait LibavContext<T> {
    fn during(self, what: &str) -> Result<T>;
}

impl<T> LibavContext<T> for std::result::Result<T, ffmpeg_next::Error> {
    fn during(self, what: &str) -> Result<T> {
        self.map_err(|e| TranscodeError::libav(what, e))
    }
}
