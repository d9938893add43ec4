//! The MP4 output: tracks, the header (`+faststart`), packets held back until the header, and the
//! facts reported in the `done` event.
//!
//! The bytes written are checked against `max_output_bytes` after every packet and once the file
//! is complete (`output_size_exceeded`).
//!
//! A track is announced up front and becomes ready when its encoder is open (at the first decoded
//! frame). The header is written once every track is ready or abandoned: a track whose stream
//! yields nothing decodable is left out instead of failing the whole job.
//!
//! Timing: each track starts where its first frame was in the input (relative to the others);
//! the muxer turns a later start into an empty edit. An audio track that starts after the
//! others is moved at least [`MIN_AUDIO_DELAY_S`] in (the whole output with it) so that the muxer
//! writes its two-entry edit list, which [`edit_list`] then corrects to hide the AAC priming.

use std::collections::VecDeque;
use std::path::Path;

use ffmpeg::format::context::Output;
use ffmpeg::{codec, ffi, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ffmpeg;

use super::edit_list::{self, DelayedStart};
use super::error::{LibavContext, Result, TranscodeError};
use super::limits::{self, Limits};
use super::segments::Segmenter;
use crate::protocol::{Event, MediaFacts};

/// What an output track holds, for the `done` facts.
#[derive(Debug, Clone, Copy)]
pub enum TrackKind {
    Video { width: u32, height: u32 },
    Audio,
}

/// An audio track that starts after the others starts at least this late (seconds): the MP4
/// muxer writes an empty edit only when the first packet (priming included) lies after 0.
const MIN_AUDIO_DELAY_S: f64 = 0.025;

#[derive(Default)]
struct Track {
    /// Set when the encoder is open.
    encoder: Option<(codec::Parameters, Rational, TrackKind)>,
    /// Where the first frame goes, seconds on the input's timeline less the common offset.
    start_s: f64,
    /// Encoder priming (AAC: 1024 samples), encoder time base.
    priming: i64,
    /// The first packet's pts as written (stream time base).
    first_pts: Option<i64>,
    frame_rate: Option<Rational>,
    display_matrix: Option<Vec<u8>>,
    abandoned: bool,
    /// The output stream, once the header is written.
    stream: Option<usize>,
    /// Time base the muxer chose for the stream.
    time_base: Option<Rational>,
    /// Latest end written, in seconds.
    end_s: Option<f64>,
}

pub struct Muxer {
    output: Output,
    path: std::path::PathBuf,
    /// Added to every timestamp (seconds), fixed when the header is written.
    shift_s: f64,
    tracks: Vec<Track>,
    /// (track, packet) written before the header.
    pending: VecDeque<(usize, Packet)>,
    header_written: bool,
    facts: MediaFacts,
    limits: Limits,
    /// The fragmented-MP4 stream written beside the MP4, when configured.
    segments: Option<Segmenter>,
}

impl Muxer {
    /// Creates the MP4 file at `path` (UTF-8; the caller checked).
    pub fn create(path: &Path, limits: &Limits) -> Result<Self> {
        let path = path.to_str().ok_or_else(|| TranscodeError::transcode("the output path is not valid UTF-8"))?;
        // "file:" keeps a ':' in the path from being read as a protocol name.
        let output = ffmpeg::format::output_as(&format!("file:{path}"), "mp4").during("creating the output file")?;
        Ok(Self {
            output,
            path: Path::new(path).to_path_buf(),
            shift_s: 0.0,
            tracks: Vec::new(),
            pending: VecDeque::new(),
            header_written: false,
            facts: MediaFacts::default(),
            limits: *limits,
            segments: None,
        })
    }

    /// Also writes the stream's segments of `seconds` beside the MP4 (0: none).
    pub fn with_segments(mut self, seconds: u32) -> Result<Self> {
        if seconds > 0 {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            self.segments = Some(Segmenter::create(dir, seconds)?);
        }
        Ok(self)
    }

    /// The segments completed since the last call (`segment` events to report).
    pub fn take_segments(&mut self) -> Vec<Event> {
        self.segments.as_mut().map(Segmenter::take).unwrap_or_default()
    }

    /// Closes the stream's last segment.
    pub fn finish_segments(&mut self) -> Result<()> {
        match self.segments.as_mut() {
            Some(segments) => segments.finish(),
            None => Ok(()),
        }
    }

    /// Whether encoders must put their headers into extradata (always true for MP4).
    pub fn needs_global_header(&self) -> bool {
        self.output.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER)
    }

    /// Announces a track; the header waits for it to become ready or be abandoned.
    pub fn add_track(&mut self) -> usize {
        self.tracks.push(Track::default());
        self.tracks.len() - 1
    }

    /// Keeps a display matrix (rotation) for the track's stream.
    pub fn set_display_matrix(&mut self, track: usize, matrix: &[u8]) {
        self.tracks[track].display_matrix = Some(matrix.to_vec());
    }

    /// Marks a track ready with its opened encoder; its first frame is at `start_s` (seconds).
    pub fn set_encoder<E: AsRef<codec::Context>>(
        &mut self,
        track: usize,
        encoder: &E,
        frame_rate: Option<Rational>,
        kind: TrackKind,
        start_s: f64,
    ) -> Result<()> {
        let time_base = encoder.as_ref().time_base();
        // SAFETY: ffmpeg-next has no getter for AVCodecContext.initial_padding; a plain read of
        // an opened encoder's field.
        let priming = i64::from(unsafe { (*encoder.as_ref().as_ptr()).initial_padding }.max(0));
        let parameters = codec::Parameters::from(encoder);
        self.set_ready(track, parameters, time_base, frame_rate, kind, start_s, priming)
    }

    /// Marks a track ready with a stream copied as it is (packets in `time_base`); its first
    /// frame is at `start_s` (seconds).
    pub fn set_copy(
        &mut self,
        track: usize,
        parameters: codec::Parameters,
        time_base: Rational,
        frame_rate: Option<Rational>,
        kind: TrackKind,
        start_s: f64,
    ) -> Result<()> {
        self.set_ready(track, parameters, time_base, frame_rate, kind, start_s, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn set_ready(
        &mut self,
        track: usize,
        parameters: codec::Parameters,
        time_base: Rational,
        frame_rate: Option<Rational>,
        kind: TrackKind,
        start_s: f64,
        priming: i64,
    ) -> Result<()> {
        let t = &mut self.tracks[track];
        if t.abandoned || self.header_written {
            return Ok(());
        }
        t.encoder = Some((parameters, time_base, kind));
        t.frame_rate = frame_rate;
        t.start_s = start_s;
        t.priming = priming;
        self.write_header_when_ready()
    }

    /// Leaves a track out of the output (its stream decoded to nothing).
    pub fn abandon(&mut self, track: usize, why: &str) -> Result<()> {
        let t = &mut self.tracks[track];
        if t.encoder.is_some() || t.abandoned {
            return Ok(());
        }
        eprintln!("mediaq-transcode: leaving out a track: {why}");
        t.abandoned = true;
        self.write_header_when_ready()
    }

    fn write_header_when_ready(&mut self) -> Result<()> {
        let ready = |t: &Track| t.encoder.is_some() || t.abandoned;
        if self.header_written || !self.tracks.iter().all(ready) {
            return Ok(());
        }
        if self.tracks.iter().all(|t| t.abandoned) {
            return Err(TranscodeError::invalid_media("nothing in the file could be decoded"));
        }
        self.shift_s = self.start_shift();
        for track in self.tracks.iter_mut().filter(|t| !t.abandoned) {
            let (parameters, time_base, kind) = track.encoder.clone().expect("ready");
            if let Some(segments) = self.segments.as_mut() {
                segments.add_stream(parameters.clone(), time_base, track.frame_rate)?;
            }
            let mut stream = self.output.add_stream(codec::Id::None).during("adding an output stream")?;
            stream.set_parameters(parameters);
            stream.set_time_base(time_base);
            if let Some(rate) = track.frame_rate {
                stream.set_avg_frame_rate(rate);
            }
            // SAFETY: ffmpeg-next can neither clear the codec tag (0 lets the MP4 muxer choose
            // avc1/mp4a) nor add stream side data. codecpar is valid while `stream` borrows the
            // context; av_stream_new_side_data (FFmpeg 5.1) returns a stream-owned buffer of the
            // requested size or NULL, and the copy stays within it.
            unsafe {
                let st = stream.as_mut_ptr();
                (*(*st).codecpar).codec_tag = 0;
                if let Some(matrix) = &track.display_matrix {
                    let dst = ffi::av_stream_new_side_data(
                        st,
                        ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                        matrix.len(),
                    );
                    if !dst.is_null() {
                        std::ptr::copy_nonoverlapping(matrix.as_ptr(), dst, matrix.len());
                    }
                }
            }
            track.stream = Some(stream.index());
            match kind {
                TrackKind::Video { width, height } => {
                    self.facts.width = Some(width);
                    self.facts.height = Some(height);
                    self.facts.video_codec = Some("h264".into());
                    self.facts.rotation = Some(track.display_matrix.as_deref().map_or(0, rotation_cw));
                }
                TrackKind::Audio => self.facts.audio_codec = Some("aac".into()),
            }
        }

        let mut options = Dictionary::new();
        options.set("movflags", "+faststart");
        self.output.write_header_with(options).during("writing the MP4 header")?;
        self.header_written = true;
        self.check_size()?;
        // The muxer picks its own time bases in write_header: read them back.
        for track in &mut self.tracks {
            if let Some(index) = track.stream {
                track.time_base = self.output.stream(index).map(|s| s.time_base());
            }
        }
        if let Some(segments) = self.segments.as_mut() {
            let time_bases: Vec<Rational> = self.output.streams().map(|s| s.time_base()).collect();
            segments.write_header(&time_bases)?;
        }
        while let Some((track, packet)) = self.pending.pop_front() {
            self.write_now(track, packet)?;
        }
        Ok(())
    }

    /// The shift that puts the earliest track at 0 and a later audio track at least
    /// [`MIN_AUDIO_DELAY_S`] after it (or exactly at 0: its priming then falls before 0, where
    /// the muxer's own edit list hides it).
    fn start_shift(&self) -> f64 {
        let ready = || self.tracks.iter().filter(|t| !t.abandoned && t.encoder.is_some());
        let earliest = ready().map(|t| t.start_s).fold(f64::INFINITY, f64::min);
        let shift = if earliest.is_finite() { -earliest } else { 0.0 };
        // Only an encoded track has priming to hide; a copied one carries its own edit.
        let audio = ready().find(|t| matches!(t.encoder, Some((_, _, TrackKind::Audio))) && t.priming > 0);
        match audio.map(|a| a.start_s + shift) {
            Some(delay) if delay > 0.5 / 48_000.0 && delay < MIN_AUDIO_DELAY_S => shift + MIN_AUDIO_DELAY_S - delay,
            _ => shift,
        }
    }

    /// Writes one encoded packet of `track`; timestamps in the encoder's time base.
    pub fn write(&mut self, track: usize, packet: Packet) -> Result<()> {
        if self.header_written {
            return self.write_now(track, packet);
        }
        if self.pending.len() >= limits::MAX_PENDING_PACKETS {
            // One track decodes, another has not produced anything for a long time.
            for index in 0..self.tracks.len() {
                self.abandon(index, "no decodable data while the other track went on")?;
            }
            return self.write_now(track, packet);
        }
        self.pending.push_back((track, packet));
        Ok(())
    }

    fn write_now(&mut self, track: usize, mut packet: Packet) -> Result<()> {
        let t = &mut self.tracks[track];
        let (Some(stream), Some(time_base), Some((_, encoder_time_base, _))) = (t.stream, t.time_base, &t.encoder)
        else {
            return Ok(()); // an abandoned track
        };
        packet.set_stream(stream);
        packet.rescale_ts(*encoder_time_base, time_base);
        let shift = ((self.shift_s * 1e6).round() as i64).rescale(Rational::new(1, 1_000_000), time_base);
        if shift != 0 {
            packet.set_pts(packet.pts().map(|p| p + shift));
            packet.set_dts(packet.dts().map(|d| d + shift));
        }
        if t.first_pts.is_none() {
            t.first_pts = packet.pts();
        }
        if let Some(pts) = packet.pts() {
            let end = (pts + packet.duration().max(0)) as f64 * f64::from(time_base);
            t.end_s = Some(t.end_s.map_or(end, |e| e.max(end)));
        }
        if let Some(segments) = self.segments.as_mut() {
            segments.write(&packet)?;
        }
        packet.write_interleaved(&mut self.output).during("writing to the MP4 file")?;
        self.check_size()
    }

    /// Fails with `output_size_exceeded` once the output is over the limit.
    fn check_size(&self) -> Result<()> {
        // SAFETY: ffmpeg-next exposes no write position. `pb` is owned by the open output
        // context; `avio_seek(pb, 0, SEEK_CUR)` only reports the current position (buffered
        // bytes included) and does no I/O.
        let position = unsafe {
            let pb = (*self.output.as_ptr()).pb;
            if pb.is_null() {
                return Ok(());
            }
            ffi::avio_seek(pb, 0, libc::SEEK_CUR)
        };
        match u64::try_from(position) {
            Ok(bytes) => self.limits.check_output_size(bytes),
            Err(_) => Ok(()),
        }
    }

    /// The complete file's size, after the trailer (and the `+faststart` rewrite).
    fn check_final_size(&self) -> Result<()> {
        // SAFETY: as in `check_size`; `avio_size` asks the file protocol for the size (fstat).
        let size = unsafe {
            let pb = (*self.output.as_ptr()).pb;
            if pb.is_null() {
                return Ok(());
            }
            ffi::avio_size(pb)
        };
        match u64::try_from(size) {
            Ok(bytes) => self.limits.check_output_size(bytes),
            Err(_) => Ok(()),
        }
    }

    /// The audio track's start when it lies after 0 with its priming (then the muxer wrote
    /// `[empty][media from 0]`), in the stream's time base.
    fn delayed_audio(&self) -> Option<DelayedStart> {
        let track = self.tracks.iter().find(|t| matches!(t.encoder, Some((_, _, TrackKind::Audio))))?;
        let (first, time_base, (_, encoder_time_base, _)) =
            (track.first_pts?, track.time_base?, track.encoder.as_ref()?);
        let priming = track.priming.rescale(*encoder_time_base, time_base);
        (first > 0 && priming > 0).then_some(DelayedStart { start: first + priming, priming })
    }

    /// Writes the trailer (and moves the index to the front) and returns the output's facts.
    pub fn finish(mut self) -> Result<MediaFacts> {
        if !self.header_written {
            return Err(TranscodeError::invalid_media("nothing in the file could be decoded"));
        }
        self.output.write_trailer().during("finishing the MP4 file")?;
        self.check_final_size()?;
        if let Some(delayed) = self.delayed_audio() {
            edit_list::trim_delayed_audio_priming(&self.path, delayed)?;
        }
        // MP4 presentation starts at 0 (edit lists hide encoder priming and fill late starts).
        let end = self.tracks.iter().filter_map(|t| t.end_s).fold(f64::NEG_INFINITY, f64::max);
        self.facts.duration_s = end.is_finite().then(|| (end.max(0.0) * 1000.0).round() / 1000.0);
        Ok(self.facts)
    }
}

/// The clockwise rotation, in degrees rounded to a quarter turn, that a display matrix (nine
/// native-endian 32-bit values, 16.16 fixed point; libavutil's display.h) applies to the picture.
pub fn rotation_cw(matrix: &[u8]) -> u16 {
    let value = |i: usize| {
        let bytes: [u8; 4] = matrix.get(i * 4..i * 4 + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]);
        f64::from(i32::from_ne_bytes(bytes)) / 65536.0
    };
    let (scale0, scale1) = (value(0).hypot(value(3)), value(1).hypot(value(4)));
    if scale0 == 0.0 || scale1 == 0.0 {
        return 0;
    }
    // av_display_rotation_get returns -atan2(b, a), the angle ffprobe prints; players turn the
    // picture clockwise by its opposite.
    let clockwise = (value(1) / scale1).atan2(value(0) / scale0).to_degrees().rem_euclid(360.0);
    ((clockwise / 90.0).round() as u16 % 4) * 90
}

#[cfg(test)]
mod tests {
    use super::rotation_cw;

    fn matrix(a: i32, b: i32, c: i32, d: i32) -> Vec<u8> {
        [a, b, 0, c, d, 0, 0, 0, 1 << 30].iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn rotations_of_display_matrices() {
        let one = 1 << 16;
        assert_eq!(rotation_cw(&matrix(one, 0, 0, one)), 0);
        // An iPhone held upright ([0 1; -1 0]): ffprobe shows "rotation of -90 degrees", players
        // turn the picture 90 degrees clockwise.
        assert_eq!(rotation_cw(&matrix(0, one, -one, 0)), 90);
        assert_eq!(rotation_cw(&matrix(0, -one, one, 0)), 270);
        assert_eq!(rotation_cw(&matrix(-one, 0, 0, -one)), 180);
        assert_eq!(rotation_cw(&[]), 0);
    }
}
