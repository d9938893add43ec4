//! Why a job failed: the one closed set of stable failure codes, used end to end (the child's
//! protocol, the worker's retry policy, the job row, the API's JSON). Strings appear only at the
//! SQL and JSON edges, through [`FailureCode::as_str`] / [`FailureCode::parse`] and serde.

use serde::{Deserialize, Serialize};

/// A job failure code. The first group may be reported by a transcoder child; the rest only the
/// worker sets (a child claiming one breaks the protocol, see [`ChildFailureCode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The file cannot be opened or parsed as WebM/Matroska, or holds no audio/video to convert.
    InvalidMedia,
    /// The file holds audio/video, but in a codec this service does not accept.
    UnsupportedCodec,
    /// Most of the file is unreadable: bytes the demuxer skipped or the decoders refused (noise,
    /// corruption). A recording merely cut short is not this: it converts what it holds.
    DamagedInput,
    /// libav failed while decoding, filtering, encoding or writing (or the child broke its protocol).
    TranscodeError,
    /// The video's width or height is over the limit.
    DimensionsExceeded,
    /// The video's width x height is over the limit.
    PixelsExceeded,
    /// The media lasts longer than the limit (header, timestamps or frame count).
    DurationExceeded,
    /// The file holds more streams than the limit.
    StreamsExceeded,
    /// The video's declared or measured frame rate is over the limit.
    FrameRateExceeded,
    /// The output grew over the limit.
    OutputSizeExceeded,
    /// Writing or storing the output failed (a full disk, a store that refused it).
    StorageError,
    // ---- set only by the worker
    /// The child tried a forbidden system call, or left something other than a plain file.
    SandboxViolation,
    /// The attempt's child lacked a sandbox layer the worker requires; it was stopped unstarted.
    SandboxUnavailable,
    /// The child hit its memory, CPU-time or file-size limit.
    ResourceLimit,
    /// The conversion ran past its wall-clock limit.
    Timeout,
    /// The child stopped reporting progress.
    Stalled,
    /// The child died another way (a signal, a crash).
    TranscoderCrashed,
    /// The worker running the attempt died, as many times as attempts are allowed.
    WorkerCrashed,
    /// A resumable upload stopped arriving and expired before its last byte (MEDIAQ_UPLOAD_EXPIRY).
    UploadAbandoned,
}

impl FailureCode {
    /// Every code, in the order above.
    pub const ALL: [FailureCode; 19] = [
        Self::InvalidMedia,
        Self::UnsupportedCodec,
        Self::DamagedInput,
        Self::TranscodeError,
        Self::DimensionsExceeded,
        Self::PixelsExceeded,
        Self::DurationExceeded,
        Self::StreamsExceeded,
        Self::FrameRateExceeded,
        Self::OutputSizeExceeded,
        Self::StorageError,
        Self::SandboxViolation,
        Self::SandboxUnavailable,
        Self::ResourceLimit,
        Self::Timeout,
        Self::Stalled,
        Self::TranscoderCrashed,
        Self::WorkerCrashed,
        Self::UploadAbandoned,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMedia => "invalid_media",
            Self::UnsupportedCodec => "unsupported_codec",
            Self::DamagedInput => "damaged_input",
            Self::TranscodeError => "transcode_error",
            Self::DimensionsExceeded => "dimensions_exceeded",
            Self::PixelsExceeded => "pixels_exceeded",
            Self::DurationExceeded => "duration_exceeded",
            Self::StreamsExceeded => "streams_exceeded",
            Self::FrameRateExceeded => "frame_rate_exceeded",
            Self::OutputSizeExceeded => "output_size_exceeded",
            Self::StorageError => "storage_error",
            Self::SandboxViolation => "sandbox_violation",
            Self::SandboxUnavailable => "sandbox_unavailable",
            Self::ResourceLimit => "resource_limit",
            Self::Timeout => "timeout",
            Self::Stalled => "stalled",
            Self::TranscoderCrashed => "transcoder_crashed",
            Self::WorkerCrashed => "worker_crashed",
            Self::UploadAbandoned => "upload_abandoned",
        }
    }

    /// The code a stored string names (the SQL edge).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Whether a transcoder child may report this code.
    pub const fn child_may_send(self) -> bool {
        matches!(
            self,
            Self::InvalidMedia
                | Self::UnsupportedCodec
                | Self::DamagedInput
                | Self::TranscodeError
                | Self::DimensionsExceeded
                | Self::PixelsExceeded
                | Self::DurationExceeded
                | Self::StreamsExceeded
                | Self::FrameRateExceeded
                | Self::OutputSizeExceeded
                | Self::StorageError
        )
    }

    /// Transient causes are the worker's or the machine's, not the file's: they may go away, so
    /// the job is retried. `timeout` is transient only when `retry_timeouts`.
    pub const fn is_transient(self, retry_timeouts: bool) -> bool {
        match self {
            Self::WorkerCrashed
            | Self::TranscoderCrashed
            | Self::Stalled
            | Self::StorageError
            | Self::SandboxUnavailable => true,
            Self::Timeout => retry_timeouts,
            _ => false,
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure code as a transcoder child may send it: deserializing a worker-only code fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FailureCode", into = "FailureCode")]
pub struct ChildFailureCode(FailureCode);

impl ChildFailureCode {
    /// The catch-all: a child that cannot name a better code says this.
    pub const TRANSCODE_ERROR: Self = Self(FailureCode::TranscodeError);

    /// The child's code, or `transcode_error` for one a child may not send.
    pub fn or_generic(code: FailureCode) -> Self {
        Self::try_from(code).unwrap_or(Self::TRANSCODE_ERROR)
    }

    pub fn code(self) -> FailureCode {
        self.0
    }
}

impl TryFrom<FailureCode> for ChildFailureCode {
    type Error = String;
    fn try_from(code: FailureCode) -> Result<Self, String> {
        if code.child_may_send() {
            Ok(Self(code))
        } else {
            Err(format!("{code} is set by the worker only"))
        }
    }
}

impl From<ChildFailureCode> for FailureCode {
    fn from(code: ChildFailureCode) -> Self {
        code.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string_and_json() {
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::parse(code.as_str()), Some(code));
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()));
        }
        assert_eq!(FailureCode::parse("canceled"), None);
    }

    #[test]
    fn a_child_may_not_send_worker_codes() {
        let parse = |s: &str| serde_json::from_str::<ChildFailureCode>(&format!("\"{s}\""));
        assert_eq!(parse("invalid_media").unwrap().code(), FailureCode::InvalidMedia);
        for worker_only in ["sandbox_violation", "worker_crashed", "timeout", "canceled", "interrupted", "nonsense"] {
            assert!(parse(worker_only).is_err(), "{worker_only}");
        }
    }

    #[test]
    fn only_the_machines_failures_are_transient() {
        let transient: Vec<_> = FailureCode::ALL.into_iter().filter(|c| c.is_transient(false)).collect();
        assert_eq!(
            transient,
            [
                FailureCode::StorageError,
                FailureCode::SandboxUnavailable,
                FailureCode::Stalled,
                FailureCode::TranscoderCrashed,
                FailureCode::WorkerCrashed
            ]
        );
        assert!(FailureCode::Timeout.is_transient(true) && !FailureCode::Timeout.is_transient(false));
    }
}
