//! Video: decode VP8/VP9/AV1, convert to yuv420p at the first frame's size rounded down to even,
//! encode with libx264 exactly as the CLI reference does, keeping the input's timestamps (VFR).

use std::collections::HashMap;

use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, color, decoder, encoder, ffi, frame, picture, Packet, Rational, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result, TranscodeError};
use super::input;
use super::limits::{FrameCounter, Limits};
use super::output::{Muxer, TrackKind};
use super::poster::PosterPicker;
use super::select;
use crate::protocol::EncodeSettings;

pub struct VideoPipeline {
    track: usize,
    decoder: decoder::Video,
    time_base: Rational,
    /// Subtracted from every timestamp so that the output starts at 0 (stream time base).
    offset: i64,
    frame_rate: Option<Rational>,
    /// Duration of a frame whose packet carries none (stream time base).
    default_duration: i64,
    settings: EncodeSettings,
    global_header: bool,
    /// Opened at the first decoded frame, which fixes the output size.
    encoder: Option<encoder::Video>,
    size: (u32, u32),
    scaler: Option<scaling::Context>,
    /// Frame durations by pts: libx264 packets carry none (FFmpeg 5.1).
    durations: HashMap<i64, i64>,
    last_pts: Option<i64>,
    frames: u64,
    decode_errors: u64,
    limits: Limits,
    /// Frame rate and frame count, measured on the output timestamps.
    counter: FrameCounter,
    poster: Option<PosterPicker>,
}

impl VideoPipeline {
    pub fn new(
        stream: &Stream,
        offset: i64,
        settings: &EncodeSettings,
        limits: &Limits,
        muxer: &mut Muxer,
    ) -> Result<Self> {
        let decoder =
            select::open_decoder(stream, &settings.threads, limits)?.video().during("opening the video decoder")?;
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
        Ok(Self {
            track,
            decoder,
            time_base,
            offset,
            frame_rate,
            default_duration,
            settings: settings.clone(),
            global_header: muxer.needs_global_header(),
            encoder: None,
            size: (0, 0),
            scaler: None,
            durations: HashMap::new(),
            last_pts: None,
            frames: 0,
            decode_errors: 0,
            limits: *limits,
            counter: FrameCounter::new(limits),
            poster: None,
        })
    }

    /// Picks the poster from the decoded frames too.
    pub fn with_poster(mut self, poster: Option<PosterPicker>) -> Self {
        self.poster = poster;
        self
    }

    /// Packets or frames the decoder refused so far.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Decodes one packet of the video stream and encodes what comes out.
    pub fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            Err(err) if is_again(&err) => {
                self.receive_frames(muxer)?;
                if self.decoder.send_packet(packet).is_err() {
                    self.decode_errors += 1;
                }
            }
            // A damaged packet costs its frame, not the job.
            Err(_) => self.decode_errors += 1,
        }
        self.receive_frames(muxer)
    }

    /// Drains decoder and encoder at the end of the input.
    pub fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        let _ = self.decoder.send_eof();
        self.receive_frames(muxer)?;
        if let Some(poster) = self.poster.as_mut() {
            poster.finish();
        }
        if self.encoder.is_none() {
            let why = format!("the video track holds no decodable picture ({} damaged packets)", self.decode_errors);
            return muxer.abandon(self.track, &why);
        }
        self.encoder.as_mut().expect("checked").send_eof().during("flushing the H.264 encoder")?;
        self.receive_packets(muxer)
    }

    fn receive_frames(&mut self, muxer: &mut Muxer) -> Result<()> {
        let mut frame = frame::Video::empty();
        let mut errors_in_a_row = 0;
        loop {
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    errors_in_a_row = 0;
                    self.encode_frame(frame, muxer)?;
                    frame = frame::Video::empty();
                }
                Err(err) if is_again(&err) || err == ffmpeg::Error::Eof => return Ok(()),
                Err(_) => {
                    self.decode_errors += 1;
                    errors_in_a_row += 1;
                    if errors_in_a_row > 100 {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn encode_frame(&mut self, frame: frame::Video, muxer: &mut Muxer) -> Result<()> {
        self.limits.check_dimensions(frame.width(), frame.height())?;
        self.frames += 1;
        if self.encoder.is_none() {
            // Every frame is scaled to the first one's size, rounded down to even.
            self.size = (frame.width() & !1, frame.height() & !1);
            if self.size.0 == 0 || self.size.1 == 0 {
                return Err(TranscodeError::invalid_media(format!(
                    "the video is only {}x{} pixels",
                    frame.width(),
                    frame.height()
                )));
            }
        }

        // Timestamps pass through (no constant frame rate); they must only increase.
        let pts = frame
            .timestamp()
            .or(frame.pts())
            .map(|p| p - self.offset)
            .unwrap_or_else(|| self.last_pts.map_or(0, |l| l + self.default_duration));
        let pts = match self.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        let seconds = pts as f64 * f64::from(self.time_base);
        self.limits.check_timestamp(seconds)?;
        self.counter.count(seconds)?;
        self.last_pts = Some(pts);
        if let Some(poster) = self.poster.as_mut() {
            poster.offer(&frame, seconds);
        }
        // SAFETY: ffmpeg-next (FFmpeg 5.1) does not expose AVFrame.pkt_duration; the frame is a
        // valid decoded frame owned here.
        let duration = unsafe { (*frame.as_ptr()).pkt_duration };
        let duration = if duration > 0 { duration } else { self.default_duration };
        self.durations.insert(pts, duration);

        let aspect_ratio = frame.aspect_ratio();
        let (width, height) = self.size;
        let mut frame = if frame.format() == Pixel::YUV420P && frame.width() == width && frame.height() == height {
            frame
        } else {
            self.convert(&frame)?
        };
        if self.encoder.is_none() {
            self.open_encoder(&frame, aspect_ratio, seconds, muxer)?;
        }
        frame.set_pts(Some(pts));
        // Let libx264 make its own frame-type decisions instead of copying the input's.
        frame.set_kind(picture::Type::None);
        self.encoder.as_mut().expect("opened").send_frame(&frame).during("encoding video")?;
        self.receive_packets(muxer)
    }

    /// Scales/converts a frame to the output size and yuv420p (bicubic, as the CLI's scaler).
    /// YUV keeps its colour description (full range stays full, as with the CLI); RGB (VP9
    /// profile 1 gbrp) becomes limited-range BT.601 YUV, which is what swscale produces.
    fn convert(&mut self, frame: &frame::Video) -> Result<frame::Video> {
        let (width, height) = self.size;
        let format = frame.format();
        let fits = self.scaler.as_ref().is_some_and(|s| {
            let i = s.input();
            i.format == format && i.width == frame.width() && i.height == frame.height()
        });
        if !fits {
            let scaler = scaling::Context::get(
                format,
                frame.width(),
                frame.height(),
                Pixel::YUV420P,
                width,
                height,
                scaling::Flags::BICUBIC,
            )
            .during("setting up the video scaler")?;
            self.scaler = Some(scaler);
        }
        let mut out = frame::Video::new(Pixel::YUV420P, width, height);
        let scaler = self.scaler.as_mut().expect("set");
        scaler.run(frame, &mut out).during("scaling video")?;
        let rgb = frame.color_space() == color::Space::RGB
            || format.descriptor().is_some_and(|d| d.name().starts_with("gbr"));
        if rgb {
            out.set_color_range(color::Range::MPEG);
            out.set_color_space(color::Space::SMPTE170M);
        } else {
            out.set_color_range(frame.color_range());
            out.set_color_space(frame.color_space());
        }
        out.set_color_primaries(frame.color_primaries());
        out.set_color_transfer_characteristic(frame.color_transfer_characteristic());
        Ok(out)
    }

    /// Opens libx264 for the first frame as it will be encoded (size, colour description).
    fn open_encoder(
        &mut self,
        first: &frame::Video,
        aspect_ratio: Rational,
        start_s: f64,
        muxer: &mut Muxer,
    ) -> Result<()> {
        let (width, height) = self.size;
        let codec = encoder::find_by_name("libx264")
            .ok_or_else(|| TranscodeError::transcode("this libavcodec build has no libx264 encoder"))?;
        let mut enc = codec::Context::new_with_codec(codec).encoder().video().during("setting up the H.264 encoder")?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(self.time_base);
        enc.set_frame_rate(self.frame_rate);
        if aspect_ratio.numerator() > 0 {
            enc.set_aspect_ratio(aspect_ratio);
        }
        enc.set_colorspace(first.color_space());
        enc.set_color_range(first.color_range());
        enc.set_color_primaries(first.color_primaries());
        enc.set_color_transfer_characteristic(first.color_transfer_characteristic());
        // SAFETY: ffmpeg-next has no getter for AVCodecContext.flags and its setter overwrites
        // (which would drop libx264's +cgop default), nor a chroma location setter. Plain field
        // writes on a context we own, before it is opened.
        unsafe {
            let ctx = enc.as_mut_ptr();
            if self.global_header {
                (*ctx).flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32;
            }
            (*ctx).chroma_sample_location = (*first.as_ptr()).chroma_location;
        }
        let mut options = ffmpeg::Dictionary::new();
        options.set("preset", &self.settings.preset);
        options.set("crf", &self.settings.crf.to_string());
        options.set("threads", &self.settings.threads);
        if self.settings.keyint > 0 {
            // The CLI's `-g`: libx264's keyint (a keyframe at least every N frames).
            options.set("g", &self.settings.keyint.to_string());
        }
        let enc = enc.open_as_with(codec, options).during("opening the H.264 encoder")?;
        muxer.set_encoder(self.track, &enc, self.frame_rate, TrackKind::Video { width, height }, start_s)?;
        self.encoder = Some(enc);
        Ok(())
    }

    fn receive_packets(&mut self, muxer: &mut Muxer) -> Result<()> {
        let encoder = self.encoder.as_mut().expect("opened");
        loop {
            let mut packet = Packet::empty();
            match encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    let duration = packet.pts().and_then(|pts| self.durations.remove(&pts));
                    if packet.duration() <= 0 {
                        packet.set_duration(duration.unwrap_or(self.default_duration));
                    }
                    muxer.write(self.track, packet)?;
                }
                Err(err) if is_again(&err) || err == ffmpeg::Error::Eof => return Ok(()),
                Err(err) => return Err(TranscodeError::libav("encoding video", err)),
            }
        }
    }
}

/// EAGAIN: the codec wants the other direction (drain output / feed input) first.
pub fn is_again(err: &ffmpeg::Error) -> bool {
    matches!(err, ffmpeg::Error::Other { errno } if *errno == ffmpeg::error::EAGAIN)
}
