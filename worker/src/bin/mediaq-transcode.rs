//! `mediaq-transcode`: the synchronous child that converts one WebM file to MP4.
//!
//! ```text
//! mediaq-transcode --input IN.webm --output OUT.mp4 [--preset veryfast] [--crf 23] [--threads auto]
//!                  [--max-width 4096] [--max-height 4096] [--max-pixels 8294400] [--max-duration 7200]
//!                  [--max-streams 8] [--max-fps 240] [--max-output-bytes 4294967296]
//!                  [--cpu-per-media-second 20]
//! ```
//!
//! Each `--max-*` limit fails the job with its own code (`dimensions_exceeded`, `pixels_exceeded`,
//! `duration_exceeded`, `streams_exceeded`, `frame_rate_exceeded`, `output_size_exceeded`).
//!
//! stdout carries the line protocol of [`mediaq_worker::protocol`] (one JSON event per line);
//! stderr carries libav's own log. Exit status: 0 on success, `EXIT_FAILED` after an `error`
//! event, `EXIT_USAGE` for a bad command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use mediaq_worker::protocol::{ChildFailureCode, EncodeSettings, Event, EXIT_FAILED, EXIT_USAGE};
use mediaq_worker::sandbox;
use mediaq_worker::transcode::{self, Job, Limits};

const PRESETS: [&str; 10] =
    ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];

/// Converts one WebM/Matroska file (VP8/VP9/AV1, Opus/Vorbis) to MP4 (H.264/AAC).
#[derive(Debug, Parser)]
#[command(name = "mediaq-transcode")]
struct Args {
    /// Input WebM/Matroska file.
    #[arg(long, value_name = "PATH")]
    input: String,
    /// Output MP4 file (created or truncated; removed again on failure).
    #[arg(long, value_name = "PATH")]
    output: String,
    /// libx264 preset.
    #[arg(long, default_value = "veryfast", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: String,
    /// libx264 constant rate factor.
    #[arg(long, default_value_t = 23, value_parser = clap::value_parser!(u8).range(0..=51))]
    crf: u8,
    /// Codec threads: "auto" or a number from 1 to 64.
    #[arg(long, default_value = "auto", value_parser = parse_threads)]
    threads: String,
    /// Apply the sandbox, report its layers as one `sandbox` event, and exit (worker start-up check).
    #[arg(long)]
    self_test: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The probe gate's limits (checked before decoding and again while decoding).
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Largest frame width.
    #[arg(long, default_value_t = 4096)]
    max_width: u32,
    /// Largest frame height.
    #[arg(long, default_value_t = 4096)]
    max_height: u32,
    /// Largest frame area in pixels.
    #[arg(long, default_value_t = 3840 * 2160)]
    max_pixels: u64,
    /// Longest media duration, in seconds.
    #[arg(long, default_value_t = 7200)]
    max_duration: u64,
    /// Most streams in the input.
    #[arg(long, default_value_t = 8)]
    max_streams: u32,
    /// Highest frame rate.
    #[arg(long, default_value_t = 240)]
    max_fps: u32,
    /// Largest output file, in bytes.
    #[arg(long, default_value_t = 4 << 30)]
    max_output_bytes: u64,
    /// CPU seconds allowed per second of media (plus 60 s), set as RLIMIT_CPU once the duration is known.
    #[arg(long, default_value_t = 20.0, value_parser = parse_cpu_per_media_second)]
    cpu_per_media_second: f64,
}

impl From<&LimitArgs> for Limits {
    fn from(args: &LimitArgs) -> Self {
        Self {
            max_width: args.max_width,
            max_height: args.max_height,
            max_pixels: args.max_pixels,
            max_duration_s: args.max_duration,
            max_streams: args.max_streams,
            max_fps: args.max_fps,
            max_output_bytes: args.max_output_bytes,
            cpu_per_media_second: args.cpu_per_media_second,
        }
    }
}

fn parse_cpu_per_media_second(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err("expected a number of seconds, 0 or more".to_string()),
    }
}

fn parse_threads(value: &str) -> Result<String, String> {
    match value.parse::<u32>() {
        _ if value == "auto" => Ok(value.to_string()),
        Ok(n) if (1..=64).contains(&n) => Ok(n.to_string()),
        _ => Err("expected \"auto\" or a number from 1 to 64".to_string()),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(EXIT_USAGE as u8) } else { ExitCode::SUCCESS };
        }
    };

    // The sandbox goes on before libav starts any thread or opens any file.
    let input = PathBuf::from(&args.input);
    let output = PathBuf::from(&args.output);
    let layers = sandbox::apply(&input, &job_dir(&output));

    let job = Job {
        input,
        output,
        settings: EncodeSettings { preset: args.preset, crf: args.crf, threads: args.threads },
        limits: Limits::from(&args.limits),
    };
    let mut stdout = std::io::stdout().lock();
    let mut sink = |event: Event| -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        stdout.write_all(&line)?;
        stdout.flush()
    };
    if sink(Event::Sandbox { layers }).is_err() || args.self_test {
        return ExitCode::SUCCESS;
    }

    let result = transcode::init_libav().and_then(|()| transcode::run(&job, &mut sink));
    let (event, status) = match result {
        Ok(output) => (Event::Done { output }, ExitCode::SUCCESS),
        Err(err) => (
            Event::Error { code: ChildFailureCode::or_generic(err.code), message: err.message },
            ExitCode::from(EXIT_FAILED as u8),
        ),
    };
    if sink(event).is_err() {
        // The worker is gone; nobody can read the outcome.
        return ExitCode::from(EXIT_FAILED as u8);
    }
    status
}

/// The directory the output is written in (Landlock's read-write root): the output's parent, "."
/// for a bare file name, made absolute when it exists.
fn job_dir(output: &Path) -> PathBuf {
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}
