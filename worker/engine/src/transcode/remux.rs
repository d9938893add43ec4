//! H.264 in, H.264 out: the video packets go into the MP4 unchanged (Chrome's `avc1`
//! recordings). Every packet is still decoded, with the same decoder options and limits as the
//! transcode path (frame size, pixel count, frame rate, frame count, timestamps), so a stream is
//! only copied when it decodes cleanly: a limit fails the job as it would when transcoding; a
//! damaged packet or a change of picture size makes [`VideoCopy::clean`] false and the caller
//! transcodes instead.

use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::{codec, decoder, ffi, frame, Packet, Rational, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result};
use super::input;
use super::limits::{FrameCounter, Limits};
use super::output::{Muxer, TrackKind};
use super::poster::PosterPicker;
use super::select;
use super::video::is_again;

/// Whether the stream can be copied into an MP4 that plays everywhere H.264 does: H.264 with its
/// parameter sets in the codec private data, 8-bit 4:2:0, and no reordered frames unless the
/// container `keeps_dts` (Matroska keeps no decode timestamps; MP4 does).
pub fn eligible(stream: &Stream, keeps_dts: bool) -> bool {
    let parameters = stream.parameters();
    if parameters.id() != codec::Id::H264 {
        return false;
    }
    // SAFETY: ffmpeg-next's `Parameters` exposes neither extradata, format nor video_delay;
    // codecpar is valid while the stream borrows its context.
    unsafe {
        let par = &*stream.parameters().as_ptr();
        let yuv420 = [ffi::AVPixelFormat::AV_PIX_FMT_YUV420P, ffi::AVPixelFormat::AV_PIX_FMT_YUVJ420P];
        par.extradata_size > 0
            && !par.extradata.is_null()
            && yuv420.iter().any(|f| *f as i32 == par.format)
            && (par.video_delay == 0 || keeps_dts)
            && par.width > 0
            && par.height > 0
    }
}

pub struct VideoCopy {
    track: usize,
    /// What the muxer needs for the track, handed over at the first packet (once every track
    /// has been announced).
    ready: Option<(codec::Parameters, Option<Rational>, TrackKind, f64)>,
    decoder: decoder::Video,
    time_base: Rational,
    /// Subtracted from every timestamp so that the output starts at 0 (stream time base).
    offset: i64,
    /// Duration of a packet that carries none (stream time base).
    default_duration: i64,
    /// The packet held back until the next one gives its duration.
    held: Option<Packet>,
    last_dts: Option<i64>,
    /// The input's packets carry decode timestamps of their own (MP4): they are kept.
    keeps_dts: bool,
    /// The first frame's size; every later frame must have it.
    size: Option<(u32, u32)>,
    waiting_for_keyframe: bool,
    problems: u64,
    limits: Limits,
    counter: FrameCounter,
    poster: Option<PosterPicker>,
}

impl VideoCopy {
    pub fn new(
        stream: &Stream,
        offset: i64,
        keeps_dts: bool,
        threads: &str,
        limits: &Limits,
        muxer: &mut Muxer,
    ) -> Result<Self> {
        // Errors the decoder would conceal are errors here: a concealed picture is not worth
        // copying. The pictures themselves are never shown: the deblocking filter (which parses
        // nothing) is skipped to save CPU.
        let strict = [("err_detect", "crccheck+bitstream+buffer+explode"), ("skip_loop_filter", "all")];
        let decoder =
            select::open_decoder_with(stream, threads, limits, &strict)?.video().during("opening the video decoder")?;
        let time_base = stream.time_base();
        let frame_rate = input::guess_frame_rate(stream);
        let default_duration = frame_rate
            .map(|r| ffmpeg::rescale::Rescale::rescale(&1, r.invert(), time_base))
            .filter(|d| *d > 0)
            .unwrap_or_else(|| ffmpeg::rescale::Rescale::rescale(&1, (1, 30), time_base).max(1));
        let track = muxer.add_track();
        if let Some(matrix) = stream.side_data().find(|d| d.kind() == SideDataType::DisplayMatrix) {
            muxer.set_display_matrix(track, matrix.data());
        }
        let (width, height) = select::dimensions(stream);
        let start_s = input::start_time(stream).saturating_sub(offset) as f64 * f64::from(time_base);
        let kind = TrackKind::Video { width, height };
        let parameters = stream.parameters();
        Ok(Self {
            ready: Some((parameters, frame_rate, kind, start_s)),
            track,
            decoder,
            time_base,
            offset,
            default_duration,
            held: None,
            last_dts: None,
            keeps_dts,
            size: None,
            waiting_for_keyframe: true,
            problems: 0,
            limits: *limits,
            counter: FrameCounter::new(limits),
            poster: None,
        })
    }

    /// Picks the poster from the checked frames too: until it is chosen, the frames are
    /// decoded with the deblocking filter (a poster is shown).
    pub fn with_poster(mut self, poster: Option<PosterPicker>) -> Self {
        if poster.is_some() {
            self.set_loop_filter(true);
        }
        self.poster = poster;
        self
    }

    fn set_loop_filter(&mut self, on: bool) {
        let discard = if on { ffi::AVDiscard::AVDISCARD_DEFAULT } else { ffi::AVDiscard::AVDISCARD_ALL };
        // SAFETY: ffmpeg-next has no setter for AVCodecContext.skip_loop_filter; the H.264
        // decoder reads it per picture (frame threads copy it from this context at each packet).
        unsafe { (*self.decoder.as_mut_ptr()).skip_loop_filter = discard };
    }

    /// Whether every packet decoded, at one picture size.
    pub fn clean(&self) -> bool {
        self.problems == 0 && self.size.is_some()
    }

    /// Packets or frames the decoder refused so far.
    pub fn problems(&self) -> u64 {
        self.problems
    }

    /// Checks one packet by decoding it, and copies it into the MP4.
    pub fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        if let Some((parameters, frame_rate, kind, start_s)) = self.ready.take() {
            muxer.set_copy(self.track, parameters, self.time_base, frame_rate, kind, start_s)?;
        }
        if self.waiting_for_keyframe {
            if !packet.is_key() {
                self.problems += 1;
                return Ok(());
            }
            self.waiting_for_keyframe = false;
        }
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            Err(err) if is_again(&err) => {
                self.receive_frames()?;
                if self.decoder.send_packet(packet).is_err() {
                    self.problems += 1;
                }
            }
            Err(_) => self.problems += 1,
        }
        self.receive_frames()?;
        self.copy(packet, muxer)
    }

    /// Drains the decoder and writes the last packet.
    pub fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        if self.ready.is_some() {
            return muxer.abandon(self.track, "the video track holds no packet");
        }
        let _ = self.decoder.send_eof();
        self.receive_frames()?;
        if let Some(poster) = self.poster.as_mut() {
            poster.finish();
        }
        if let Some(mut last) = self.held.take() {
            if last.duration() <= 0 {
                last.set_duration(self.default_duration);
            }
            muxer.write(self.track, last)?;
        }
        Ok(())
    }

    fn copy(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        let mut packet = packet.clone();
        // Matroska: no reordering (see `eligible`), decode order is presentation order.
        let (pts, dts) = if self.keeps_dts { (packet.pts(), packet.dts()) } else { (packet.pts(), packet.pts()) };
        let (Some(pts), Some(dts)) = (pts.or(dts), dts.or(pts)) else {
            self.problems += 1;
            return Ok(());
        };
        let (pts, dts) = (pts - self.offset, dts - self.offset);
        // Decode timestamps must increase; duplicates (browser recordings) move on by one tick.
        let dts = match self.last_dts {
            Some(last) if dts <= last => last + 1,
            _ => dts,
        };
        self.last_dts = Some(dts);
        packet.set_pts(Some(pts.max(dts)));
        packet.set_dts(Some(dts));
        if let Some(mut previous) = self.held.replace(packet) {
            if previous.duration() <= 0 {
                previous.set_duration(dts - previous.dts().unwrap_or(dts - self.default_duration));
            }
            muxer.write(self.track, previous)?;
        }
        Ok(())
    }

    fn receive_frames(&mut self) -> Result<()> {
        let mut frame = frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => self.check_frame(&frame)?,
                Err(err) if is_again(&err) || err == ffmpeg::Error::Eof => return Ok(()),
                Err(_) => {
                    self.problems += 1;
                    if self.problems > 100 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The transcode path's limits, on the decoded frame.
    fn check_frame(&mut self, frame: &frame::Video) -> Result<()> {
        let size = (frame.width(), frame.height());
        self.limits.check_dimensions(size.0, size.1)?;
        match self.size {
            None => self.size = Some(size),
            Some(first) if first != size => self.problems += 1,
            Some(_) => {}
        }
        if let Some(pts) = frame.timestamp().or(frame.pts()) {
            let seconds = (pts - self.offset) as f64 * f64::from(self.time_base);
            self.limits.check_timestamp(seconds)?;
            self.counter.count(seconds)?;
            if let Some(poster) = self.poster.as_mut() {
                poster.offer(frame, seconds);
                if poster.done() {
                    self.poster = None;
                    self.set_loop_filter(false);
                }
            }
        }
        Ok(())
    }
}
