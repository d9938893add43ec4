//! The contract between `mediaq-worker` and its `mediaq-transcode` child, with no libav in it:
//! the child's command line ([`spec::TranscodeSpec`], defined once) and the line protocol below.
//! Both sides depend on this crate; only the child (`mediaq-engine`) links libav.
//!
//! The line protocol:
//!
//! The child writes one JSON object per line on stdout; the last line is either `done` or `error`.
//! Anything on stderr is libav's own log, captured by the worker for diagnostics only.
//!
//! The worker does not trust what it reads here (the child may have been taken over by its input):
//! lines are at most [`MAX_LINE`] bytes, an `error` names one of the closed set of
//! [`ChildFailureCode`]s (codes only the worker sets, such as `timeout`, do not parse), and any
//! line that is not one of these events ends the attempt as `transcode_error`.

pub mod spec;

pub use mediaq_shared::{ChildFailureCode, FailureCode};
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
    /// libx264's largest keyframe interval in frames (`keyint`); 0 keeps libx264's own (250).
    #[serde(default)]
    pub keyint: u32,
    /// Length of the fragmented-MP4 segments written beside the MP4 for playback while the job
    /// converts (HLS), in seconds; 0 writes none.
    #[serde(default)]
    pub segment_seconds: u32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self { preset: "veryfast".into(), crf: 23, threads: "auto".into(), keyint: 0, segment_seconds: 0 }
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
    /// Output only: how the audio got into the MP4, "transcoded" or "remuxed" (AAC copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_path: Option<String>,
    /// How far players turn the stored picture to show it upright, in degrees clockwise (0, 90,
    /// 180, 270): the input's display matrix, which the output keeps whether its video was
    /// copied or converted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<u16>,
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
    /// The seccomp-bpf filters are installed (allowlist, and the kill list that admits threads only).
    pub seccomp: bool,
    /// The child is the first process of its own PID namespace: nothing it could start survives it.
    #[serde(default)]
    pub pid_namespace: bool,
    /// Every resource limit is finite as the child sees it (address space, CPU, file size, open
    /// files, processes; no core dumps).
    #[serde(default)]
    pub rlimits: bool,
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
    /// Bytes of standard input read so far (instead of fractions when the input is a pipe the
    /// worker feeds: only the worker knows how much is coming).
    Read { bytes: u64 },
    /// A fragmented-MP4 segment of the stream is complete and closed: `seg-{index}.m4s` in the
    /// output's directory (index from 0; `init.mp4` beside it is complete before segment 0).
    Segment { index: u32, duration_s: f64, bytes: u64 },
    /// The output file is complete and closed.
    Done { output: MediaFacts },
    /// The transcode failed with a stable machine code, one a child may send.
    Error { code: ChildFailureCode, message: String },
}

/// Longest line the worker reads from a child; a longer one is a protocol violation.
pub const MAX_LINE: usize = 64 * 1024;

/// The child's `--input` for standard input: a live upload's bytes, fed through a pipe by the worker.
pub const STDIN_INPUT: &str = "-";

/// The failure codes of the transcode engine: the shared [`FailureCode`]s. What a child may put
/// on the wire is narrower, [`ChildFailureCode`].
pub type TranscodeErrorCode = FailureCode;

/// Exit status of the child when it reports an `error` line.
pub const EXIT_FAILED: i32 = 2;
/// Exit status for a bad command line.
pub const EXIT_USAGE: i32 = 64;

/// Writes one event as its line on stdout and flushes it (the test-only stand-in children use
/// this; the transcoder keeps its locked stdout for the whole run).
pub fn emit(event: &Event) {
    emit_raw(format!("{}\n", serde_json::to_string(event).expect("events serialize")).as_bytes());
}

/// Writes bytes to stdout as they are (a stand-in child breaking the protocol on purpose).
pub fn emit_raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// The value after `--name` on this process's command line.
pub fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
