//! The line protocol between `mediaq-worker` and its `mediaq-transcode` child.
//!
//! The child writes one JSON object per line on stdout; the last line is either `done` or `error`.
//! Anything on stderr is libav's own log, captured by the worker for diagnostics only.

use serde::{Deserialize, Serialize};

/// Encoder settings passed on the child's command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeSettings {
    /// libx264 preset (ultrafast .. veryslow).
    pub preset: String,
    /// libx264 constant rate factor, 0..=51.
    pub crf: u8,
    /// libav `threads` option: "auto" or a number.
    pub threads: String,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self { preset: "veryfast".into(), crf: 23, threads: "auto".into() }
    }
}

/// Facts about a media file, as reported by the child (input after probing, output when done).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    pub duration_s: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Output only: how the video got into the MP4, "transcoded" or "remuxed" (H.264 copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_path: Option<String>,
}

/// The sandbox layers the child applied to itself (reported first, and by `--self-test`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLayers {
    /// Landlock: "full" (every requested right enforced), "partial" (an older ABI), or "none".
    pub landlock: String,
    /// The kernel's Landlock ABI version (0 when unsupported).
    pub landlock_abi: i32,
    /// PR_SET_NO_NEW_PRIVS is set.
    pub no_new_privs: bool,
    /// The seccomp-bpf filter is installed.
    pub seccomp: bool,
}

/// One line of the child's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The sandbox is in place (first line; the only line in `--self-test` mode).
    Sandbox { layers: SandboxLayers },
    /// The input was opened and probed; transcoding starts.
    Probe { input: MediaFacts },
    /// Fraction done, 0.0..=1.0, non-decreasing.
    Progress { progress: f64 },
    /// The output file is complete and closed.
    Done { output: MediaFacts },
    /// The transcode failed; `code` is a stable machine code (see [`TranscodeErrorCode`]).
    Error { code: String, message: String },
}

/// Stable failure codes the child reports. The worker adds its own (`worker_crashed`, `timeout`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscodeErrorCode {
    /// The file cannot be opened or parsed as WebM/Matroska, or holds no audio/video to convert.
    InvalidMedia,
    /// The file holds audio/video, but in a codec this service does not accept.
    UnsupportedCodec,
    /// libav failed while decoding, filtering, encoding or writing.
    TranscodeError,
    /// The video's width or height is over `--max-width` / `--max-height`.
    DimensionsExceeded,
    /// The video's width x height is over `--max-pixels`.
    PixelsExceeded,
    /// The media lasts longer than `--max-duration` (header, timestamps or frame count).
    DurationExceeded,
    /// The file holds more streams than `--max-streams`.
    StreamsExceeded,
    /// The video's declared or measured frame rate is over `--max-fps`.
    FrameRateExceeded,
    /// The output grew over `--max-output-bytes`.
    OutputSizeExceeded,
    /// The job directory's disk is full (or another I/O failure writing the output): transient.
    StorageError,
}

impl TranscodeErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StorageError => "storage_error",
            Self::InvalidMedia => "invalid_media",
            Self::UnsupportedCodec => "unsupported_codec",
            Self::TranscodeError => "transcode_error",
            Self::DimensionsExceeded => "dimensions_exceeded",
            Self::PixelsExceeded => "pixels_exceeded",
            Self::DurationExceeded => "duration_exceeded",
            Self::StreamsExceeded => "streams_exceeded",
            Self::FrameRateExceeded => "frame_rate_exceeded",
            Self::OutputSizeExceeded => "output_size_exceeded",
        }
    }
}

/// Exit status of the child when it reports an `error` line.
pub const EXIT_FAILED: i32 = 2;
/// Exit status for a bad command line.
pub const EXIT_USAGE: i32 = 64;
