//! Audio: decode Opus/Vorbis, resample/downmix to 48 kHz stereo fltp in a filter graph that also
//! keeps the audio continuous and aligned with the video, encode AAC-LC 128 kb/s.

use ffmpeg::format::{sample, Sample};
use ffmpeg::{codec, decoder, encoder, ffi, filter, frame, ChannelLayout, Packet, Rational};
use ffmpeg::{Rescale, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result, TranscodeError};
use super::limits::Limits;
use super::output::{Muxer, TrackKind};
use super::select;
use super::video::is_again;

const OUTPUT_RATE: i32 = 48_000;
const OUTPUT_BIT_RATE: usize = 128_000;

/// The properties of decoded frames a filter graph is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FrameKey {
    rate: u32,
    format: Sample,
    layout: u64,
    channels: u16,
}

pub struct AudioPipeline {
    track: usize,
    decoder: decoder::Audio,
    time_base: Rational,
    /// Subtracted from every timestamp so that the output starts at 0 (stream time base).
    offset: i64,
    encoder: encoder::Audio,
    /// Built at the first decoded frame; rebuilt if the decoded format changes.
    graph: Option<(filter::Graph, FrameKey)>,
    /// The pts the next decoded frame should have, in samples (1/rate).
    next_pts: Option<i64>,
    /// Where the decoded audio ends, in the encoder's time base: the sink pads its last frame
    /// with silence up to the AAC frame size, which is cut back to this.
    end_pts: Option<i64>,
    frames: u64,
    decode_errors: u64,
    limits: Limits,
}

impl AudioPipeline {
    pub fn new(stream: &Stream, offset: i64, threads: &str, limits: &Limits, muxer: &mut Muxer) -> Result<Self> {
        let decoder = select::open_decoder(stream, threads, limits)?.audio().during("opening the audio decoder")?;
        let codec = encoder::find_by_name("aac")
            .ok_or_else(|| TranscodeError::transcode("this libavcodec build has no AAC encoder"))?;
        let mut enc = codec::Context::new_with_codec(codec).encoder().audio().during("setting up the AAC encoder")?;
        enc.set_rate(OUTPUT_RATE);
        enc.set_format(Sample::F32(sample::Type::Planar));
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_channels(2);
        enc.set_bit_rate(OUTPUT_BIT_RATE);
        enc.set_time_base(Rational::new(1, OUTPUT_RATE));
        if muxer.needs_global_header() {
            // SAFETY: ffmpeg-next's flag setter overwrites instead of OR-ing; plain field write
            // on a context we own, before it is opened.
            unsafe { (*enc.as_mut_ptr()).flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32 };
        }
        let mut options = ffmpeg::Dictionary::new();
        options.set("threads", threads);
        let encoder = enc.open_as_with(codec, options).during("opening the AAC encoder")?;
        Ok(Self {
            track: muxer.add_track(),
            decoder,
            time_base: stream.time_base(),
            offset,
            encoder,
            graph: None,
            next_pts: None,
            end_pts: None,
            frames: 0,
            decode_errors: 0,
            limits: *limits,
        })
    }

    /// Packets or frames the decoder refused so far.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Decodes one packet of the audio stream and encodes what comes out.
    pub fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            Err(err) if is_again(&err) => {
                self.receive_frames(muxer)?;
                if self.decoder.send_packet(packet).is_err() {
                    self.decode_errors += 1;
                }
            }
            // A damaged packet costs its samples, not the job.
            Err(_) => self.decode_errors += 1,
        }
        self.receive_frames(muxer)
    }

    /// Drains decoder, filter graph and encoder at the end of the input.
    pub fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        let _ = self.decoder.send_eof();
        self.receive_frames(muxer)?;
        if self.frames == 0 {
            let why = format!("the audio track holds no decodable audio ({} damaged packets)", self.decode_errors);
            return muxer.abandon(self.track, &why);
        }
        self.drain_graph(muxer)?;
        self.encoder.send_eof().during("flushing the AAC encoder")?;
        self.receive_packets(muxer)
    }

    fn receive_frames(&mut self, muxer: &mut Muxer) -> Result<()> {
        let mut frame = frame::Audio::empty();
        let mut errors_in_a_row = 0;
        loop {
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    errors_in_a_row = 0;
                    self.filter_frame(frame, muxer)?;
                    frame = frame::Audio::empty();
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

    fn filter_frame(&mut self, mut frame: frame::Audio, muxer: &mut Muxer) -> Result<()> {
        if frame.rate() == 0 || frame.channels() == 0 || frame.samples() == 0 {
            self.decode_errors += 1;
            return Ok(());
        }
        self.frames += 1;
        let key = frame_key(&mut frame)?;
        if self.graph.as_ref().is_none_or(|(_, k)| *k != key) {
            // First frame, or the decoded format changed (never seen in WebM): a new graph
            // continues the timeline (no padding back to 0). The old one is dropped, not
            // flushed: a short frame in mid-stream would be refused by the AAC encoder.
            let graph = build_graph(key, self.encoder.frame_size())?;
            self.graph = Some((graph, key));
        }

        // Timestamps in samples; jitter below one tick of the stream time base is rounding.
        let rate = Rational::new(1, key.rate as i32);
        let expected = self.next_pts;
        let pts = match frame.timestamp().or(frame.pts()) {
            Some(ts) => {
                let ts = (ts - self.offset).rescale(self.time_base, rate);
                let tolerance = 1.rescale(self.time_base, rate).max(1);
                match expected {
                    Some(e) if (ts - e).abs() <= tolerance => e,
                    _ => ts,
                }
            }
            None => expected.unwrap_or(0),
        };
        self.limits.check_timestamp(pts as f64 / f64::from(key.rate))?;
        if self.frames == 1 {
            muxer.set_encoder(self.track, &self.encoder, None, TrackKind::Audio, pts as f64 / f64::from(key.rate))?;
        }
        self.next_pts = Some(pts + frame.samples() as i64);
        self.end_pts = Some((pts + frame.samples() as i64).rescale(rate, self.encoder.time_base()));
        frame.set_pts(Some(pts));

        let (graph, _) = self.graph.as_mut().expect("built");
        graph.get("in").expect("source exists").source().add(&frame).during("resampling audio")?;
        self.pull_filtered(muxer)
    }

    /// Sends end of stream into the current graph and encodes what it still holds.
    fn drain_graph(&mut self, muxer: &mut Muxer) -> Result<()> {
        let Some((graph, _)) = self.graph.as_mut() else {
            return Ok(());
        };
        graph.get("in").expect("source exists").source().flush().during("resampling audio")?;
        self.pull_filtered_to_end(muxer, true)?;
        self.graph = None;
        Ok(())
    }

    fn pull_filtered(&mut self, muxer: &mut Muxer) -> Result<()> {
        self.pull_filtered_to_end(muxer, false)
    }

    /// Encodes what the graph has ready; `at_end`: after its flush, without the sink's padding.
    fn pull_filtered_to_end(&mut self, muxer: &mut Muxer, at_end: bool) -> Result<()> {
        let (graph, _) = self.graph.as_mut().expect("built");
        let mut sink = graph.get("out").expect("sink exists");
        let sink_time_base = sink.sink().time_base();
        loop {
            let mut frame = frame::Audio::empty();
            match sink.sink().frame(&mut frame) {
                Ok(()) => {
                    let pts = frame.pts().map(|p| p.rescale(sink_time_base, self.encoder.time_base()));
                    frame.set_pts(pts);
                    if let (true, Some(pts), Some(end)) = (at_end, pts, self.end_pts) {
                        let real = end - pts;
                        if real <= 0 {
                            continue;
                        }
                        if real < frame.samples() as i64 {
                            frame.set_samples(real as usize);
                        }
                    }
                    self.encoder.send_frame(&frame).during("encoding audio")?;
                    Self::drain_encoder(&mut self.encoder, self.track, muxer)?;
                }
                Err(err) if is_again(&err) || err == ffmpeg::Error::Eof => return Ok(()),
                Err(err) => return Err(TranscodeError::libav("resampling audio", err)),
            }
        }
    }

    fn receive_packets(&mut self, muxer: &mut Muxer) -> Result<()> {
        Self::drain_encoder(&mut self.encoder, self.track, muxer)
    }

    fn drain_encoder(encoder: &mut encoder::Audio, index: usize, muxer: &mut Muxer) -> Result<()> {
        loop {
            let mut packet = Packet::empty();
            match encoder.receive_packet(&mut packet) {
                Ok(()) => muxer.write(index, packet)?,
                Err(err) if is_again(&err) || err == ffmpeg::Error::Eof => return Ok(()),
                Err(err) => return Err(TranscodeError::libav("encoding audio", err)),
            }
        }
    }
}

/// The frame's properties; a frame without a channel layout gets the default one for its
/// channel count (the resampler needs a layout to downmix).
fn frame_key(frame: &mut frame::Audio) -> Result<FrameKey> {
    let channels = frame.channels();
    let mut layout = frame.channel_layout().bits();
    if layout == 0 || ChannelLayout::from_bits_truncate(layout).channels() != i32::from(channels) {
        layout = ChannelLayout::default(i32::from(channels)).bits();
        if layout == 0 {
            return Err(TranscodeError::unsupported_codec(format!(
                "audio with {channels} channels and no channel layout cannot be downmixed"
            )));
        }
        // SAFETY: ffmpeg-next (FFmpeg 5.1) cannot set the new-style AVFrame.ch_layout. Both the
        // legacy mask and ch_layout are rewritten consistently on a decoded frame owned here.
        unsafe {
            let f = frame.as_mut_ptr();
            (*f).channel_layout = layout;
            ffi::av_channel_layout_uninit(&mut (*f).ch_layout);
            ffi::av_channel_layout_from_mask(&mut (*f).ch_layout, layout);
        }
    }
    Ok(FrameKey { rate: frame.rate(), format: frame.format(), layout, channels })
}

/// abuffer -> aresample (48 kHz; the first frame keeps its timestamp, so the track starts where
/// the input's did; later gaps or overlaps over 10 ms are filled with silence or trimmed, so the
/// audio never drifts from its timestamps) -> aformat (fltp stereo) -> abuffersink in AAC-sized
/// frames. A graph built after a format change continues the timeline.
fn build_graph(key: FrameKey, frame_size: u32) -> Result<filter::Graph> {
    let mut graph = filter::Graph::new();
    let args = format!(
        "time_base=1/{rate}:sample_rate={rate}:sample_fmt={fmt}:channel_layout=0x{layout:x}",
        rate = key.rate,
        fmt = key.format.name(),
        layout = key.layout,
    );
    let abuffer = filter::find("abuffer").expect("libavfilter has abuffer");
    let abuffersink = filter::find("abuffersink").expect("libavfilter has abuffersink");
    graph.add(&abuffer, "in", &args).during("setting up the audio filter")?;
    graph.add(&abuffersink, "out", "").during("setting up the audio filter")?;
    let spec = format!(
        "aresample={OUTPUT_RATE}:async=1:min_hard_comp=0.01,\
         aformat=sample_fmts=fltp:sample_rates={OUTPUT_RATE}:channel_layouts=stereo"
    );
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(&spec))
        .during("setting up the audio filter")?;
    graph.validate().during("setting up the audio filter")?;
    if frame_size > 0 {
        graph.get("out").expect("sink exists").sink().set_frame_size(frame_size);
    }
    Ok(graph)
}
