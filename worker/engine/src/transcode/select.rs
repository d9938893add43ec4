//! Stream selection: which tracks are converted, the closed list of accepted codecs and the only
//! decoder implementations this service is willing to run for them.

use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::codec::{self, Id};
use ffmpeg::format::context::Input;
use ffmpeg::format::stream::Disposition;
use ffmpeg::{ffi, media, Dictionary, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result, TranscodeError};
use super::input::duration_s;
use super::limits::Limits;
use super::output::rotation_cw;
use crate::protocol::MediaFacts;

/// Decoders libav may open at all, also while probing (`codec_whitelist`): what `MediaRecorder`
/// writes into WebM/Matroska in Chrome/Edge and Firefox and into MP4 in Chrome and Safari, what
/// phones record into MP4/MOV, and nothing else.
pub const DECODER_WHITELIST: &str = "vp8,vp9,libdav1d,av1,h264,hevc,opus,vorbis,aac,\
    pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le,pcm_f64le,pcm_s16be,pcm_s24be";

/// Accepted video codecs and the decoders used for them, best first.
const VIDEO_DECODERS: &[(Id, &[&str])] = &[
    (Id::VP8, &["vp8"]),
    (Id::VP9, &["vp9"]),
    (Id::AV1, &["libdav1d", "av1"]),
    (Id::H264, &["h264"]),
    (Id::HEVC, &["hevc"]),
];
/// Accepted audio codecs and their decoders (Matroska's A_PCM/INT/LIT and A_PCM/FLOAT/IEEE; Chrome
/// records `audio/webm;codecs=pcm` as 32-bit float; QuickTime's big-endian PCM; AAC from Safari
/// and phones).
const AUDIO_DECODERS: &[(Id, &[&str])] = &[
    (Id::OPUS, &["opus"]),
    (Id::VORBIS, &["vorbis"]),
    (Id::PCM_S16LE, &["pcm_s16le"]),
    (Id::PCM_S24LE, &["pcm_s24le"]),
    (Id::PCM_S32LE, &["pcm_s32le"]),
    (Id::PCM_F32LE, &["pcm_f32le"]),
    (Id::PCM_F64LE, &["pcm_f64le"]),
    (Id::AAC, &["aac"]),
    (Id::PCM_S16BE, &["pcm_s16be"]),
    (Id::PCM_S24BE, &["pcm_s24be"]),
];
/// The accepted codecs as error messages name them.
const ACCEPTED_VIDEO: &str = "vp8, vp9, av1, h264, hevc";
const ACCEPTED_AUDIO: &str = "opus, vorbis, aac, pcm";

/// Checks what the header declares, before probing: the size of every candidate video track
/// (probing may reset a size it cannot decode), the duration, and the codecs of the tracks that
/// would be chosen.
pub fn check_header(input: &Input, limits: &Limits) -> Result<()> {
    for stream in input.streams().filter(|s| is_candidate(s, media::Type::Video)) {
        let (width, height) = dimensions(&stream);
        limits.check_dimensions(width, height)?;
    }
    if let Some(seconds) = duration_s(input) {
        limits.check_duration(seconds)?;
    }
    // Matroska and MP4 name each track's codec in their headers. Refuse a file whose tracks are all in
    // codecs we do not convert now: probing first would wait for megabytes of a live upload that
    // can never succeed (the recorder would keep sending until it stops).
    for kind in [media::Type::Video, media::Type::Audio] {
        if let Some(index) = best_stream(input, kind, decoders_of(kind)) {
            check_codec(input, index, kind)?;
        }
    }
    Ok(())
}

/// The streams chosen for conversion.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub video: Option<usize>,
    pub audio: Option<usize>,
}

/// Picks the best real video stream (no cover art) and the best audio stream, checks their codecs,
/// the video's dimensions and frame rate and the duration after probing, and tells the demuxer to
/// discard every other stream.
pub fn select_streams(input: &mut Input, limits: &Limits) -> Result<Selection> {
    let video = best_stream(input, media::Type::Video, VIDEO_DECODERS);
    let audio = best_stream(input, media::Type::Audio, AUDIO_DECODERS);
    if video.is_none() && audio.is_none() {
        return Err(TranscodeError::invalid_media("the file contains no audio or video track"));
    }
    for (index, kind) in [(video, media::Type::Video), (audio, media::Type::Audio)] {
        if let Some(index) = index {
            check_codec(input, index, kind)?;
        }
    }
    if let Some(index) = video {
        let stream = input.stream(index).expect("selected stream exists");
        let (width, height) = dimensions(&stream);
        limits.check_dimensions(width, height)?;
        let tick_rate = stream.time_base().invert();
        limits.check_declared_frame_rate(stream.avg_frame_rate(), stream.rate(), tick_rate)?;
    }
    if let Some(seconds) = duration_s(input) {
        limits.check_duration(seconds)?;
    }
    for mut stream in input.streams_mut() {
        if Some(stream.index()) != video && Some(stream.index()) != audio {
            // SAFETY: ffmpeg-next has no setter for AVStream.discard; the pointer is valid while
            // `stream` borrows the context, and the demuxer reads this field on each packet.
            unsafe { (*stream.as_mut_ptr()).discard = ffi::AVDiscard::AVDISCARD_ALL };
        }
    }
    Ok(Selection { video, audio })
}

/// The best stream of `kind`: an accepted codec over another one, then the default track, then
/// the larger picture or more channels, then the lower index. Cover art is never picked.
fn best_stream(input: &Input, kind: media::Type, accepted: &[(Id, &[&str])]) -> Option<usize> {
    input
        .streams()
        .filter(|s| s.parameters().medium() == kind)
        .filter(|s| !s.disposition().contains(Disposition::ATTACHED_PIC))
        .max_by_key(|s| {
            let ok = accepted.iter().any(|(id, _)| *id == s.parameters().id());
            let default = s.disposition().contains(Disposition::DEFAULT);
            let (w, h) = dimensions(s);
            let size = u64::from(w) * u64::from(h) + u64::from(channels(s));
            (ok, default, size, std::cmp::Reverse(s.index()))
        })
        .map(|s| s.index())
}

/// The decoders accepted for streams of `kind`.
fn decoders_of(kind: media::Type) -> &'static [(Id, &'static [&'static str])] {
    if kind == media::Type::Video {
        VIDEO_DECODERS
    } else {
        AUDIO_DECODERS
    }
}

/// `unsupported_codec` unless the stream at `index` (the best of its `kind`) is in an accepted codec.
fn check_codec(input: &Input, index: usize, kind: media::Type) -> Result<()> {
    let stream = input.stream(index).expect("selected stream exists");
    if decoder_names(stream.parameters().id()).is_some() {
        return Ok(());
    }
    let (name, accepted) =
        if kind == media::Type::Video { ("video", ACCEPTED_VIDEO) } else { ("audio", ACCEPTED_AUDIO) };
    Err(TranscodeError::unsupported_codec(format!(
        "the {name} codec {} is not supported (accepted: {accepted})",
        stream.parameters().id().name()
    )))
}

/// A stream of `kind` in an accepted codec that is not cover art.
fn is_candidate(stream: &Stream, kind: media::Type) -> bool {
    let parameters = stream.parameters();
    parameters.medium() == kind
        && decoder_names(parameters.id()).is_some()
        && !stream.disposition().contains(Disposition::ATTACHED_PIC)
}

fn decoder_names(id: Id) -> Option<&'static [&'static str]> {
    VIDEO_DECODERS.iter().chain(AUDIO_DECODERS).find(|(i, _)| *i == id).map(|(_, n)| *n)
}

/// Width and height from the container's codec parameters (0 when unknown).
pub fn dimensions(stream: &Stream) -> (u32, u32) {
    // SAFETY: ffmpeg-next's `Parameters` has no width/height getters; codecpar is valid while the
    // stream borrows its context.
    unsafe {
        let par = (*stream.as_ptr()).codecpar;
        ((*par).width.max(0) as u32, (*par).height.max(0) as u32)
    }
}

fn channels(stream: &Stream) -> u32 {
    // SAFETY: as in `dimensions`.
    unsafe { (*(*stream.as_ptr()).codecpar).ch_layout.nb_channels.max(0) as u32 }
}

/// Opens the decoder for a selected stream: only the whitelisted implementation, with the packet
/// time base set (Opus pre-skip), `threads` as the CLI does and the frame size capped.
pub fn open_decoder(stream: &Stream, threads: &str, limits: &Limits) -> Result<codec::decoder::Opened> {
    open_decoder_with(stream, threads, limits, &[])
}

/// [`open_decoder`] with more decoder options (`err_detect` for the remux check).
pub fn open_decoder_with(
    stream: &Stream,
    threads: &str,
    limits: &Limits,
    extra: &[(&str, &str)],
) -> Result<codec::decoder::Opened> {
    let id = stream.parameters().id();
    let names = decoder_names(id)
        .ok_or_else(|| TranscodeError::unsupported_codec(format!("the codec {} is not supported", id.name())))?;
    let codec = names.iter().find_map(|name| codec::decoder::find_by_name(name)).ok_or_else(|| {
        TranscodeError::transcode(format!(
            "no {} decoder in this libavcodec build (looked for {})",
            id.name(),
            names.join(", ")
        ))
    })?;
    let context =
        codec::Context::from_parameters(stream.parameters()).during("reading the stream's codec parameters")?;
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(stream.time_base());
    let mut options = Dictionary::new();
    options.set("threads", threads);
    options.set("max_pixels", &limits.libav_max_pixels());
    for (key, value) in extra {
        options.set(key, value);
    }
    decoder.open_as_with(codec, options).map_err(|err| match err {
        // The codec setup in the file (Vorbis headers, OpusHead, ...) is damaged.
        ffmpeg::Error::InvalidData | ffmpeg::Error::PatchWelcome => {
            TranscodeError::invalid_media(format!("the {} track's codec setup is damaged ({err})", id.name()))
        }
        err => TranscodeError::libav(&format!("opening the {} decoder", codec.name()), err),
    })
}

/// Facts about the input for the `probe` event.
pub fn facts(input: &Input, selection: Selection) -> MediaFacts {
    let mut facts = MediaFacts { duration_s: duration_s(input), ..MediaFacts::default() };
    if let Some(stream) = selection.video.and_then(|i| input.stream(i)) {
        let (w, h) = dimensions(&stream);
        facts.width = (w > 0).then_some(w);
        facts.height = (h > 0).then_some(h);
        facts.video_codec = Some(stream.parameters().id().name().to_string());
        let matrix = stream.side_data().find(|d| d.kind() == SideDataType::DisplayMatrix);
        facts.rotation = Some(matrix.map_or(0, |m| rotation_cw(m.data())));
    }
    if let Some(stream) = selection.audio.and_then(|i| input.stream(i)) {
        facts.audio_codec = Some(stream.parameters().id().name().to_string());
    }
    facts
}
