//! The stream written beside the MP4 while converting: libav's `hls` muxer with fragmented-MP4
//! segments (`init.mp4`, `seg-{n}.m4s`) in the output's directory, fed a copy of every packet
//! the MP4 gets (one encode, two muxes). Segments are cut at video keyframes once at least the
//! configured length has passed (libx264's `keyint` bounds how long that can take).
//!
//! A segment is complete when the muxer lists it in its playlist (it does so right after closing
//! the file): after each video keyframe the playlist is read back and every newly listed segment
//! is reported as an [`Event::Segment`]. The playlist written here is the muxer's own; the
//! worker keeps only the checked segments and the API writes the playlist players read.

use std::path::{Path, PathBuf};

use ffmpeg::format::context::Output;
use ffmpeg::{codec, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result, TranscodeError};
use crate::protocol::Event;

/// The muxer's own playlist, in the output's directory (read back, never served).
pub const PLAYLIST: &str = "stream.m3u8";
/// The segments' initialization section.
pub const INIT: &str = "init.mp4";

pub struct Segmenter {
    output: Output,
    dir: PathBuf,
    seconds: u32,
    /// Per output stream: the time base packets come in (the MP4 stream's).
    sources: Vec<Rational>,
    header_written: bool,
    /// Segments reported so far.
    announced: u32,
    /// Segment events not yet taken by the caller.
    ready: Vec<Event>,
}

impl Segmenter {
    /// Prepares the stream in `dir` (the output's directory), segments of `seconds`.
    pub fn create(dir: &Path, seconds: u32) -> Result<Self> {
        let playlist = dir.join(PLAYLIST);
        let playlist =
            playlist.to_str().ok_or_else(|| TranscodeError::transcode("the output path is not valid UTF-8"))?;
        let output = ffmpeg::format::output_as(&format!("file:{playlist}"), "hls").during("creating the stream")?;
        Ok(Self {
            output,
            dir: dir.to_path_buf(),
            seconds,
            sources: Vec::new(),
            header_written: false,
            announced: 0,
            ready: Vec::new(),
        })
    }

    /// Adds a stream like the MP4's `index`-th (same parameters; packets come in `time_base`).
    pub fn add_stream(
        &mut self,
        parameters: codec::Parameters,
        time_base: Rational,
        frame_rate: Option<Rational>,
    ) -> Result<()> {
        let mut stream = self.output.add_stream(codec::Id::None).during("adding a stream output")?;
        stream.set_parameters(parameters);
        stream.set_time_base(time_base);
        if let Some(rate) = frame_rate {
            stream.set_avg_frame_rate(rate);
        }
        // SAFETY: as in the MP4 muxer: codecpar is valid while `stream` borrows the context;
        // 0 lets the muxer choose the tag.
        unsafe { (*(*stream.as_mut_ptr()).codecpar).codec_tag = 0 };
        self.sources.push(time_base);
        Ok(())
    }

    /// Writes the header once every stream is added (time bases are then the stream's own).
    pub fn write_header(&mut self, source_time_bases: &[Rational]) -> Result<()> {
        let mut options = Dictionary::new();
        options.set("hls_time", &self.seconds.to_string());
        options.set("hls_list_size", "0");
        options.set("hls_segment_type", "fmp4");
        options.set("hls_fmp4_init_filename", INIT);
        let segments = self.dir.join("seg-%d.m4s");
        options.set("hls_segment_filename", segments.to_str().unwrap_or("seg-%d.m4s"));
        self.output.write_header_with(options).during("writing the stream header")?;
        self.sources = source_time_bases.to_vec();
        self.header_written = true;
        Ok(())
    }

    /// Writes a copy of a packet the MP4 got (its stream index and time base are the MP4's).
    pub fn write(&mut self, packet: &Packet) -> Result<()> {
        if !self.header_written {
            return Ok(());
        }
        let index = packet.stream();
        let (Some(source), Some(stream)) = (self.sources.get(index).copied(), self.output.stream(index)) else {
            return Ok(());
        };
        let target = stream.time_base();
        let video = stream.parameters().medium() == ffmpeg::media::Type::Video;
        let key = video && packet.is_key();
        let mut copy = packet.clone();
        copy.rescale_ts(source, target);
        copy.write_interleaved(&mut self.output).during("writing to the stream")?;
        if key {
            self.collect(false)?;
        }
        Ok(())
    }

    /// Closes the last segment.
    pub fn finish(&mut self) -> Result<()> {
        if !self.header_written {
            return Ok(());
        }
        self.header_written = false;
        self.output.write_trailer().during("finishing the stream")?;
        self.collect(true)
    }

    /// Takes the segment events that became ready.
    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.ready)
    }

    /// Reads the muxer's playlist back and queues an event for every newly listed segment.
    fn collect(&mut self, last: bool) -> Result<()> {
        // The muxer rewrites its playlist after each segment into `stream.m3u8.tmp` and renames
        // it, which the sandbox refuses (it logs that): the temporary file is the current one.
        // (A VOD playlist would be written in place, but only at the end.)
        let current = self.dir.join(format!("{PLAYLIST}.tmp"));
        let path = if current.exists() { current } else { self.dir.join(PLAYLIST) };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !last => return Ok(()),
            Err(err) => return Err(TranscodeError::transcode(format!("reading the stream's playlist: {err}"))),
        };
        let durations: Vec<f64> = text
            .lines()
            .filter_map(|line| line.strip_prefix("#EXTINF:"))
            .filter_map(|rest| rest.split(',').next()?.trim().parse().ok())
            .collect();
        for (index, duration_s) in durations.iter().enumerate().skip(self.announced as usize) {
            let name = format!("seg-{index}.m4s");
            let bytes = std::fs::metadata(self.dir.join(&name))
                .map_err(|e| TranscodeError::transcode(format!("reading {name}: {e}")))?
                .len();
            self.ready.push(Event::Segment { index: index as u32, duration_s: *duration_s, bytes });
            self.announced = index as u32 + 1;
        }
        Ok(())
    }
}
