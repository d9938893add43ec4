//! `mediaq-transcode`: the synchronous child that converts one WebM file to MP4.
//!
//! ```text
//! mediaq-transcode --input IN.webm|- --output OUT.mp4 [--poster POSTER.jpg] [--preset veryfast] [--crf 23] [--threads auto]
//!                  [--max-width 4096] [--max-height 4096] [--max-pixels 8294400] [--max-duration 7200]
//!                  [--max-streams 8] [--max-fps 240] [--max-output-bytes 4294967296]
//!                  [--cpu-per-media-second 20]
//! ```
//!
//! Each `--max-*` limit fails the job with its own code (`dimensions_exceeded`, `pixels_exceeded`,
//! `duration_exceeded`, `streams_exceeded`, `frame_rate_exceeded`, `output_size_exceeded`).
//!
//! stdout carries the line protocol of [`mediaq_protocol`] (one JSON event per line);
//! stderr carries libav's own log. Exit status: 0 on success, `EXIT_FAILED` after an `error`
//! event, `EXIT_USAGE` for a bad command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use mediaq_engine::sandbox;
use mediaq_engine::transcode::{self, Conversion, Limits};
use mediaq_protocol::spec::TranscodeSpec;
use mediaq_protocol::{ChildFailureCode, Event, EXIT_FAILED, EXIT_USAGE};

/// Converts one WebM/Matroska file (VP8/VP9/AV1, Opus/Vorbis) to MP4 (H.264/AAC).
#[derive(Debug, Parser)]
#[command(name = "mediaq-transcode")]
struct Args {
    /// Input WebM/Matroska file, or `-` for standard input (read once, front to back, as it
    /// arrives: a live upload the worker feeds through a pipe).
    #[arg(long, value_name = "PATH")]
    input: String,
    /// Output MP4 file (created or truncated; removed again on failure).
    #[arg(long, value_name = "PATH")]
    output: String,
    /// Poster JPEG of a frame near the start (in the output's directory); none when absent.
    #[arg(long, value_name = "PATH")]
    poster: Option<String>,
    /// Apply the sandbox, report its layers as one `sandbox` event, and exit (worker start-up check).
    #[arg(long)]
    self_test: bool,
    /// Encoder settings and limits, as the worker writes them (`TranscodeSpec::to_args`).
    #[command(flatten)]
    spec: TranscodeSpec,
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
    let (input, output) = (PathBuf::from(&args.input), PathBuf::from(&args.output));
    let poster = args.poster.map(PathBuf::from);
    let job = Conversion { input, output, poster, settings: args.spec.settings(), limits: Limits::from(&args.spec) };
    let readable = (!job.reads_stdin()).then_some(job.input.as_path());
    let layers = sandbox::apply(readable, &job_dir(&job.output));

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
