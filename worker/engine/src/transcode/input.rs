//! Opening the input: Matroska/WebM or ISO-BMFF (MP4, fragmented MP4, MOV) only, a local file or
//! standard input, headers checked against the limits before bounded probing. Which streams and decoders are used is [`super::select`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use ffmpeg::format::context::Input;
use ffmpeg::{ffi, Dictionary, Rational, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{Result, TranscodeError};
use super::limits::{self, Limits};
use super::select;
use super::stdin::StdinIo;

/// libav's own default for `max_streams`: the cap used only to count the streams of a file that
/// failed to open under ours.
const LIBAV_DEFAULT_MAX_STREAMS: &str = "1000";
/// The demuxers libav may use (`format_whitelist`): Matroska/WebM, and MOV/MP4 (libav's one
/// demuxer for ISO-BMFF, whose name lists its aliases).
const FORMATS: &str = "matroska,webm,mov,mp4,m4a,3gp,3g2,mj2";

/// Where the input comes from: a local file, or standard input (a pipe the worker feeds while
/// the upload arrives; see [`super::stdin`]).
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Stdin,
}

/// An open input; with standard input, it also owns the custom I/O context (closed after the
/// format context, which never frees it).
pub struct Opened {
    input: Input,
    _io: Option<StdinIo>,
}

impl std::ops::Deref for Opened {
    type Target = Input;
    fn deref(&self) -> &Input {
        &self.input
    }
}

impl std::ops::DerefMut for Opened {
    fn deref_mut(&mut self) -> &mut Input {
        &mut self.input
    }
}

/// Opens the input with the Matroska or the MOV/MP4 demuxer (libav tells them apart from the first
/// bytes; [`FORMATS`] refuses every other demuxer), the `file` protocol only (no protocol at all
/// for standard input) and bounded probing, checks the headers against `limits` (streams,
/// dimensions, duration), then reads stream parameters. Matroska is never sought in: a file
/// written front to back (MediaRecorder output: no Cues, unknown sizes) opens the same way from a
/// pipe. A fragmented MP4 (the recorders' `video/mp4`) also reads front to back; an MP4 whose
/// index comes last (a phone's camera roll) needs a file.
pub fn open(source: Source, limits: &Limits) -> Result<Opened> {
    let unreadable = |ret: i32| {
        TranscodeError::invalid_media(format!(
            "the file cannot be read as WebM/Matroska or MP4/MOV ({})",
            ffmpeg::Error::from(ret)
        ))
    };

    let mut input = match open_header(source, &limits.libav_max_streams())? {
        Ok(input) => input,
        // libav fails a stream over its `max_streams` with ENOMEM. Count them under libav's own
        // default cap (headers only) to tell that apart from a real allocation failure; a pipe
        // cannot be read twice, so there the limit is named without the count.
        Err(ret) if ret == ffi::AVERROR(libc::ENOMEM) => {
            match source {
                Source::File(_) => {
                    if let Ok(input) = open_header(source, LIBAV_DEFAULT_MAX_STREAMS)? {
                        limits.check_streams(input.nb_streams())?;
                    }
                }
                Source::Stdin => limits.check_streams(limits.max_streams.saturating_add(1))?,
            }
            return Err(unreadable(ret));
        }
        Err(ret) => return Err(unreadable(ret)),
    };
    limits.check_streams(input.nb_streams())?;
    select::check_header(&input, limits)?;

    // Probing decodes a few frames: cap their size like the real decoders do.
    // SAFETY: ffmpeg-next cannot pass per-stream options to avformat_find_stream_info. It takes
    // an array of nb_streams dictionaries; they are owned again by `Dictionary::own`, which
    // frees what libav did not consume.
    unsafe {
        let ctx = input.as_mut_ptr();
        let mut stream_options: Vec<*mut ffi::AVDictionary> = (0..(*ctx).nb_streams)
            .map(|_| {
                let mut d = Dictionary::new();
                d.set("threads", "1");
                d.set("max_pixels", &limits.libav_max_pixels());
                d.disown()
            })
            .collect();
        let ret = ffi::avformat_find_stream_info(ctx, stream_options.as_mut_ptr());
        for d in stream_options {
            drop(Dictionary::own(d));
        }
        if ret < 0 {
            return Err(TranscodeError::invalid_media(format!(
                "the file's streams cannot be read ({})",
                ffmpeg::Error::from(ret)
            )));
        }
    }
    Ok(input)
}

/// Opens the source with one of [`FORMATS`]' demuxers and reads its headers (no probing): the outer
/// error is ours, the inner one libav's return code.
fn open_header(source: Source, max_streams: &str) -> Result<std::result::Result<Opened, i32>> {
    let (url, io) = match source {
        Source::File(path) => {
            let mut url = b"file:".to_vec();
            url.extend_from_slice(path.as_os_str().as_bytes());
            let url =
                CString::new(url).map_err(|_| TranscodeError::invalid_media("the input path contains a NUL byte"))?;
            (url, None)
        }
        Source::Stdin => (CString::default(), Some(StdinIo::new()?)),
    };
    let mut options = Dictionary::new();
    // Standard input needs no protocol: an empty whitelist refuses every one.
    options.set("protocol_whitelist", if io.is_some() { "" } else { "file" });
    options.set("format_whitelist", FORMATS);
    // MOV: never follow a data reference to another file (libav's default, kept explicit).
    options.set("enable_drefs", "0");
    options.set("codec_whitelist", select::DECODER_WHITELIST);
    options.set("probesize", &limits::PROBE_SIZE.to_string());
    options.set("analyzeduration", &limits::ANALYZE_DURATION_US.to_string());
    options.set("max_streams", max_streams);

    // SAFETY: ffmpeg-next cannot open a custom I/O context. For standard input, the context is allocated
    // here with our I/O context and AVFMT_FLAG_CUSTOM_IO (libav then never frees or closes it;
    // `Opened` does, after the format context). On success `avformat_open_input` hands us an
    // owned context that `Input::wrap` takes over (it closes it on drop); on failure it frees
    // the context itself. The dictionary is owned again by `Dictionary::own`, which frees what
    // libav did not consume.
    unsafe {
        let mut ctx = ptr::null_mut();
        if let Some(io) = &io {
            ctx = ffi::avformat_alloc_context();
            if ctx.is_null() {
                return Err(TranscodeError::transcode("cannot allocate the input format context"));
            }
            (*ctx).pb = io.as_ptr();
            (*ctx).flags |= ffi::AVFMT_FLAG_CUSTOM_IO;
        }
        let mut raw = options.disown();
        // No format: libav probes the first bytes, then refuses a demuxer not in the whitelist.
        let ret = ffi::avformat_open_input(&mut ctx, url.as_ptr(), ptr::null(), &mut raw);
        drop(Dictionary::own(raw));
        if ret < 0 {
            return Ok(Err(ret));
        }
        Ok(Ok(Opened { input: Input::wrap(ctx), _io: io }))
    }
}

/// Whether the input is ISO-BMFF (MP4/MOV), whose packets carry decode timestamps of their own
/// (Matroska keeps presentation timestamps only).
pub fn is_isobmff(input: &Input) -> bool {
    input.format().name().starts_with("mov")
}

/// The duration the container declares, in seconds, if any.
pub fn duration_s(input: &Input) -> Option<f64> {
    let duration = input.duration();
    (duration > 0).then(|| duration as f64 / f64::from(ffi::AV_TIME_BASE))
}

/// Where a selected stream starts, in its own time base; 0 when unknown.
pub fn start_time(stream: &Stream) -> i64 {
    let start = stream.start_time();
    if start == ffi::AV_NOPTS_VALUE {
        0
    } else {
        start
    }
}

/// The frame rate libav would guess for a stream (the rule of `av_guess_frame_rate`), if any.
/// Only informs the encoder's rate control: timestamps are passed through unchanged.
pub fn guess_frame_rate(stream: &Stream) -> Option<Rational> {
    let valid = |r: Rational| r.numerator() > 0 && r.denominator() > 0;
    let (r, avg) = (stream.rate(), stream.avg_frame_rate());
    let chosen = match (valid(r), valid(avg)) {
        (true, true) if f64::from(avg) < 70.0 && f64::from(r) > 210.0 => avg,
        (true, _) => r,
        (false, true) => avg,
        (false, false) => return None,
    };
    (f64::from(chosen) <= 1000.0).then_some(chosen)
}

/// How far the demuxer has read into the file, in bytes.
pub fn bytes_read(input: &Input) -> Option<i64> {
    // SAFETY: ffmpeg-next exposes no read position. `pb` is owned by the open context;
    // `avio_seek(pb, 0, SEEK_CUR)` only reports the current position and does no I/O.
    unsafe {
        let pb = (*input.as_ptr()).pb;
        if pb.is_null() {
            return None;
        }
        let pos = ffi::avio_seek(pb, 0, libc::SEEK_CUR);
        (pos >= 0).then_some(pos)
    }
}
