//! The transcode engine of the `mediaq-transcode` child: WebM/Matroska and MP4/MOV with
//! VP8/VP9/AV1/H.264/HEVC video and Opus/Vorbis/AAC/PCM audio to MP4 with H.264 (libx264) and AAC,
//! synchronously, reporting through [`crate::protocol::Event`]s.
//!
//! Flow: [`input`] opens and probes (Matroska or ISO-BMFF only, codec whitelist, the probe gate of [`Limits`],
//! then RLIMIT_CPU scaled to the duration) -> one
//! [`video::VideoPipeline`] and/or [`audio::AudioPipeline`] per selected stream -> [`output::Muxer`]
//! writes the MP4 (`+faststart`). [`progress`] turns the demuxer position into progress events.
//!
//! H.264 video (Chrome's `avc1` recordings, Safari's) is copied instead of encoded again
//! ([`remux::VideoCopy`], checked by decoding every packet); when the copy turns out not to decode
//! cleanly, the file is converted again with the video transcoded. AAC-LC audio is copied too
//! ([`audio_copy::AudioCopy`]). The `done` facts say which path each took (`video_path`,
//! `audio_path`). A rotation (display matrix) is kept as the MP4's display matrix, copied or
//! converted alike (`rotation` in the facts).
//!
//! A file most of whose bytes never reached a decoder fails `damaged_input` ([`damage`]).

mod audio;
mod audio_copy;
mod damage;
mod edit_list;
mod error;
mod input;
mod limits;
mod output;
mod poster;
mod progress;
mod remux;
mod segments;
mod select;
mod stdin;
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
use audio_copy::AudioCopy;
use damage::Readable;
use output::Muxer;
use progress::Progress;
use remux::VideoCopy;
use select::Selection;
use video::VideoPipeline;

/// One conversion: what to read, where to write, how to encode, within which limits.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The input file, or [`STDIN`] for standard input.
    pub input: PathBuf,
    pub output: PathBuf,
    /// Where the poster JPEG goes (beside the output); None: no poster.
    pub poster: Option<PathBuf>,
    pub settings: EncodeSettings,
    pub limits: Limits,
}

/// The input name that means standard input (`--input -`).
pub const STDIN: &str = mediaq_protocol::STDIN_INPUT;

impl Conversion {
    /// Whether the input is read from standard input (a pipe: read once, front to back).
    pub fn reads_stdin(&self) -> bool {
        self.input.as_os_str() == STDIN
    }

    fn source(&self) -> input::Source<'_> {
        if self.reads_stdin() {
            input::Source::Stdin
        } else {
            input::Source::File(&self.input)
        }
    }
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
/// the duration (meant for the `mediaq-transcode` child, one job per process). Standard input
/// with no declared duration (a recording still arriving) keeps the ceiling the worker set.
///
/// Standard input is read once, front to back: H.264 video is then always transcoded (the
/// copy's fallback would need to read the input a second time), and progress is reported as
/// `read` events (bytes read) for the worker to relate to the upload's size.
pub fn run(job: &Conversion, sink: &mut EventSink) -> Result<MediaFacts> {
    let limits = &job.limits;
    let stream = job.reads_stdin();
    let mut input = input::open(job.source(), limits)?;
    let selection = select::select_streams(&mut input, limits)?;
    let facts = select::facts(&input, selection);
    let file_size = input.io_size();
    if !(stream && facts.duration_s.is_none()) {
        if let Some(seconds) = limits.cpu_seconds(facts.duration_s, file_size) {
            limits::lower_cpu_limit(seconds);
        }
    }
    let mut progress = if stream { Progress::stream() } else { Progress::new(facts.duration_s, file_size) };
    emit(sink, Event::Probe { input: facts })?;
    progress.start(sink).map_err(stdout_closed)?;

    let keeps_dts = input::is_isobmff(&input);
    let copy = !stream && selection.video.and_then(|i| input.stream(i)).is_some_and(|s| remux::eligible(&s, keeps_dts));
    let mut done = None;
    let mut selection = selection;
    if copy {
        done = pass(&mut input, selection, job, VideoMode::Copy, &mut progress, sink)?.map(|f| (f, "remuxed"));
        if done.is_none() {
            eprintln!("mediaq-transcode: the H.264 video does not decode cleanly; transcoding it instead");
            input = input::open(job.source(), limits)?;
            selection = select::select_streams(&mut input, limits)?;
        }
    }
    let (mut facts, video_path) = match done {
        Some(done) => done,
        None => (
            pass(&mut input, selection, job, VideoMode::Transcode, &mut progress, sink)?
                .ok_or_else(|| TranscodeError::transcode("the transcode pass ended without an output"))?,
            "transcoded",
        ),
    };
    if facts.video_codec.is_some() {
        facts.video_path = Some(video_path.into());
    }
    if facts.audio_codec.is_some() {
        let copied = selection.audio.and_then(|i| input.stream(i)).is_some_and(|s| audio_copy::eligible(&s));
        facts.audio_path = Some(if copied { "remuxed" } else { "transcoded" }.into());
    }
    progress.finish(sink).map_err(stdout_closed)?;
    Ok(facts)
}

/// How the video stream is carried into the MP4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoMode {
    Transcode,
    Copy,
}

/// One conversion pass writing the output: the facts, or None when the copied video turned out
/// not to decode cleanly (the output is removed; the caller transcodes instead).
fn pass(
    input: &mut Input,
    selection: Selection,
    job: &Conversion,
    mode: VideoMode,
    progress: &mut Progress,
    sink: &mut EventSink,
) -> Result<Option<MediaFacts>> {
    let mut muxer = Muxer::create(&job.output, &job.limits)?.with_segments(job.settings.segment_seconds)?;
    let result = match convert(input, selection, job, mode, &mut muxer, progress, sink) {
        Ok(true) => muxer.finish_segments().and_then(|()| {
            // A copy that may still be redone reports its segments only once it is kept.
            for event in muxer.take_segments() {
                emit(sink, event)?;
            }
            muxer.finish().map(Some)
        }),
        Ok(false) => {
            drop(muxer);
            Ok(None)
        }
        Err(err) => {
            drop(muxer);
            Err(err)
        }
    };
    if !matches!(result, Ok(Some(_))) {
        remove_partial_output(&job.output);
        if let Some(path) = job.poster.as_deref() {
            poster::remove(path);
        }
    }
    result
}

/// The video stream's pipeline: decoded and encoded again, or copied (and checked).
enum VideoTrack {
    Transcode(VideoPipeline),
    Copy(VideoCopy),
}

impl VideoTrack {
    fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        match self {
            Self::Transcode(p) => p.send_packet(packet, muxer),
            Self::Copy(c) => c.send_packet(packet, muxer),
        }
    }

    fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        match self {
            Self::Transcode(p) => p.finish(muxer),
            Self::Copy(c) => c.finish(muxer),
        }
    }

    fn clean(&self) -> bool {
        match self {
            Self::Transcode(_) => true,
            Self::Copy(c) => c.clean(),
        }
    }

    /// Packets or frames the decoder refused so far.
    fn errors(&self) -> u64 {
        match self {
            Self::Transcode(p) => p.decode_errors(),
            Self::Copy(c) => c.problems(),
        }
    }
}

/// The audio stream's pipeline: decoded and encoded again, or copied (AAC-LC).
enum AudioTrack {
    Transcode(AudioPipeline),
    Copy(AudioCopy),
}

impl AudioTrack {
    fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        match self {
            Self::Transcode(p) => p.send_packet(packet, muxer),
            Self::Copy(c) => c.send_packet(packet, muxer),
        }
    }

    fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        match self {
            Self::Transcode(p) => p.finish(muxer),
            Self::Copy(c) => c.finish(muxer),
        }
    }

    /// Packets or frames the decoder refused so far (a copy decodes nothing).
    fn errors(&self) -> u64 {
        match self {
            Self::Transcode(p) => p.decode_errors(),
            Self::Copy(_) => 0,
        }
    }
}

fn convert(
    input: &mut Input,
    selection: Selection,
    job: &Conversion,
    mode: VideoMode,
    muxer: &mut Muxer,
    progress: &mut Progress,
    sink: &mut EventSink,
) -> Result<bool> {
    let time_bases: Vec<Rational> = input.streams().map(|s| s.time_base()).collect();
    let offset_s = start_offset(input, selection);
    let offset_in = |index: usize| -> i64 {
        ((offset_s * 1_000_000.0).round() as i64).rescale(Rational::new(1, 1_000_000), time_bases[index])
    };

    let mut video = match selection.video {
        Some(i) => {
            let stream = input.stream(i).expect("selected stream exists");
            Some(match mode {
                VideoMode::Transcode => VideoTrack::Transcode(
                    VideoPipeline::new(&stream, offset_in(i), &job.settings, &job.limits, muxer)?
                        .with_poster(poster_picker(job, input, &stream)),
                ),
                VideoMode::Copy => VideoTrack::Copy(
                    VideoCopy::new(
                        &stream,
                        offset_in(i),
                        input::is_isobmff(input),
                        &job.settings.threads,
                        &job.limits,
                        muxer,
                    )?
                    .with_poster(poster_picker(job, input, &stream)),
                ),
            })
        }
        None => None,
    };
    let mut audio = match selection.audio {
        Some(i) => {
            let stream = input.stream(i).expect("selected stream exists");
            Some(if audio_copy::eligible(&stream) {
                AudioTrack::Copy(AudioCopy::new(&stream, offset_in(i), muxer))
            } else {
                AudioTrack::Transcode(AudioPipeline::new(
                    &stream,
                    offset_in(i),
                    &job.settings.threads,
                    &job.limits,
                    muxer,
                )?)
            })
        }
        None => None,
    };

    let mut position_s: Option<f64> = None;
    let mut damaged_in_a_row = 0;
    let mut damaged = false;
    let mut readable = Readable::default();
    loop {
        let mut packet = Packet::empty();
        match packet.read(input) {
            Ok(()) => damaged_in_a_row = 0,
            Err(ffmpeg::Error::Eof) => break,
            // The demuxer resyncs past damaged data; give up only on a long run of it.
            Err(ffmpeg::Error::InvalidData) if damaged_in_a_row < 1000 => {
                damaged_in_a_row += 1;
                damaged = true;
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
            let video = video.as_mut().expect("pipeline exists");
            let before = video.errors();
            video.send_packet(&packet, muxer)?;
            readable.packet(&packet, before, video.errors());
        } else if Some(index) == selection.audio {
            let audio = audio.as_mut().expect("pipeline exists");
            let before = audio.errors();
            audio.send_packet(&packet, muxer)?;
            readable.packet(&packet, before, audio.errors());
        }
        progress.update(sink, position_s, input::bytes_read(input)).map_err(stdout_closed)?;
        if mode == VideoMode::Transcode {
            for event in muxer.take_segments() {
                emit(sink, event)?;
            }
        }
    }

    // Before the pipelines finish: a file with nothing decodable is damaged, not merely empty,
    // when most of it could not be read.
    readable.check(input.io_size().or_else(|| input::bytes_read(input)))?;
    if let Some(video) = video.as_mut() {
        video.finish(muxer)?;
    }
    if let Some(audio) = audio.as_mut() {
        audio.finish(muxer)?;
    }
    // A copy is only kept when nothing of the file was skipped as damaged.
    Ok(mode == VideoMode::Transcode || (!damaged && video.as_ref().is_none_or(VideoTrack::clean)))
}

fn poster_picker(job: &Conversion, input: &Input, stream: &ffmpeg::Stream) -> Option<poster::PosterPicker> {
    let path = job.poster.as_deref()?;
    Some(poster::PosterPicker::new(path, stream, input::duration_s(input), &job.limits))
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
