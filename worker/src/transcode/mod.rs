//! The transcode engine of the `mediaq-transcode` child: WebM/Matroska with VP8/VP9/AV1 video and
//! Opus/Vorbis audio to MP4 with H.264 (libx264) and AAC, synchronously, reporting through
//! [`crate::protocol::Event`]s.
//!
//! Flow: [`input`] opens and probes (Matroska only, codec whitelist, the probe gate of [`Limits`],
//! then RLIMIT_CPU scaled to the duration) -> one
//! [`video::VideoPipeline`] and/or [`audio::AudioPipeline`] per selected stream -> [`output::Muxer`]
//! writes the MP4 (`+faststart`). [`progress`] turns the demuxer position into progress events.

mod audio;
mod error;
mod input;
mod limits;
mod output;
mod progress;
mod video;

use std::path::{Path, PathBuf};

use ffmpeg::format::context::Input;
use ffmpeg::{Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

pub use error::{Result, TranscodeError};
pub use limits::Limits;
pub use progress::EventSink;

use crate::protocol::{EncodeSettings, Event, MediaFacts};
use audio::AudioPipeline;
use input::Selection;
use output::Muxer;
use progress::Progress;
use video::VideoPipeline;

/// One conversion: what to read, where to write, how to encode, within which limits.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
    pub settings: EncodeSettings,
    pub limits: Limits,
}

/// Initialises libav once per process; its log goes to stderr, warnings and errors only.
pub fn init_libav() -> Result<()> {
    ffmpeg::init().map_err(|e| TranscodeError::libav("initialising libav", e))?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Warning);
    Ok(())
}

/// Runs a job: emits `probe` and `progress` events through `sink` and returns the output's facts
/// (the caller reports them as `done`). On failure no output file is left behind.
///
/// Once probed, this lowers the calling process's RLIMIT_CPU to 60 s + `cpu_per_media_second` x
/// the duration (meant for the `mediaq-transcode` child, one job per process).
pub fn run(job: &Job, sink: &mut EventSink) -> Result<MediaFacts> {
    let limits = &job.limits;
    let mut input = input::open(&job.input, limits)?;
    let selection = input::select_streams(&mut input, limits)?;
    let facts = input::facts(&input, selection);
    let file_size = input.io_size();
    if let Some(seconds) = limits.cpu_seconds(facts.duration_s, file_size) {
        limits::lower_cpu_limit(seconds);
    }
    let mut progress = Progress::new(facts.duration_s, file_size);
    emit(sink, Event::Probe { input: facts })?;
    progress.start(sink).map_err(stdout_closed)?;

    let mut muxer = Muxer::create(&job.output, limits)?;
    let result = convert(&mut input, selection, job, &mut muxer, &mut progress, sink).and_then(|()| muxer.finish());
    match result {
        Ok(facts) => {
            progress.finish(sink).map_err(stdout_closed)?;
            Ok(facts)
        }
        Err(err) => {
            remove_partial_output(&job.output);
            Err(err)
        }
    }
}

fn convert(
    input: &mut Input,
    selection: Selection,
    job: &Job,
    muxer: &mut Muxer,
    progress: &mut Progress,
    sink: &mut EventSink,
) -> Result<()> {
    let time_bases: Vec<Rational> = input.streams().map(|s| s.time_base()).collect();
    let offset_s = start_offset(input, selection);
    let offset_in = |index: usize| -> i64 {
        ((offset_s * 1_000_000.0).round() as i64).rescale(Rational::new(1, 1_000_000), time_bases[index])
    };

    let mut video = match selection.video {
        Some(i) => {
            let stream = input.stream(i).expect("selected stream exists");
            Some(VideoPipeline::new(&stream, offset_in(i), &job.settings, &job.limits, muxer)?)
        }
        None => None,
    };
    let mut audio = match selection.audio {
        Some(i) => {
            let stream = input.stream(i).expect("selected stream exists");
            Some(AudioPipeline::new(&stream, offset_in(i), &job.settings.threads, &job.limits, muxer)?)
        }
        None => None,
    };

    let mut position_s: Option<f64> = None;
    let mut damaged_in_a_row = 0;
    loop {
        let mut packet = Packet::empty();
        match packet.read(input) {
            Ok(()) => damaged_in_a_row = 0,
            Err(ffmpeg::Error::Eof) => break,
            // The demuxer resyncs past damaged data; give up only on a long run of it.
            Err(ffmpeg::Error::InvalidData) if damaged_in_a_row < 1000 => {
                damaged_in_a_row += 1;
                continue;
            }
            Err(ffmpeg::Error::InvalidData) => break,
            Err(err) => return Err(TranscodeError::libav("reading the input file", err)),
        }
        let index = packet.stream();
        if let Some(ts) = packet.pts().or(packet.dts()) {
            let seconds = ts as f64 * f64::from(time_bases[index]) - offset_s;
            position_s = Some(position_s.map_or(seconds, |p| p.max(seconds)));
        }
        if Some(index) == selection.video {
            video.as_mut().expect("pipeline exists").send_packet(&packet, muxer)?;
        } else if Some(index) == selection.audio {
            audio.as_mut().expect("pipeline exists").send_packet(&packet, muxer)?;
        }
        progress.update(sink, position_s, input::bytes_read(input)).map_err(stdout_closed)?;
    }

    if let Some(video) = video.as_mut() {
        video.finish(muxer)?;
    }
    if let Some(audio) = audio.as_mut() {
        audio.finish(muxer)?;
    }
    Ok(())
}

/// Where the selected streams start, in seconds; the output starts there. Negative starts (Opus
/// pre-skip) are left alone: the decoder already trims them.
fn start_offset(input: &Input, selection: Selection) -> f64 {
    [selection.video, selection.audio]
        .into_iter()
        .flatten()
        .filter_map(|i| input.stream(i))
        .filter(|s| s.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE)
        .map(|s| input::start_time(&s) as f64 * f64::from(s.time_base()))
        .fold(None, |min: Option<f64>, s| Some(min.map_or(s, |m| m.min(s))))
        .unwrap_or(0.0)
        .max(0.0)
}

fn emit(sink: &mut EventSink, event: Event) -> Result<()> {
    sink(event).map_err(stdout_closed)
}

fn stdout_closed(err: std::io::Error) -> TranscodeError {
    TranscodeError::transcode(format!("cannot report to the worker: {err}"))
}

fn remove_partial_output(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            eprintln!("mediaq-transcode: could not remove the partial output: {err}");
        }
    }
}
