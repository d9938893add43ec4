//! AAC in, AAC out: the audio packets go into the MP4 unchanged (Safari's recordings, phones'
//! videos). Only AAC-LC, mono or stereo, at 44.1 or 48 kHz qualifies: what plays everywhere the
//! converted audio does. Timestamps are kept (minus the common start), so the input's priming
//! (an edit list that starts after the first samples) becomes the output's edit list.

use ffmpeg::{codec, Packet, Rational, Stream};
use ffmpeg_next as ffmpeg;

use super::error::Result;
use super::input;
use super::output::{Muxer, TrackKind};

/// MPEG-4 Audio Object Type of AAC-LC, the first 5 bits of the AudioSpecificConfig.
const AOT_AAC_LC: u8 = 2;

/// Whether the stream can be copied: AAC-LC with its AudioSpecificConfig, 1 or 2 channels,
/// 44.1 or 48 kHz.
pub fn eligible(stream: &Stream) -> bool {
    let parameters = stream.parameters();
    if parameters.id() != codec::Id::AAC {
        return false;
    }
    // SAFETY: ffmpeg-next's `Parameters` exposes neither extradata nor sample rate nor channel
    // count; codecpar is valid while the stream borrows its context, and extradata holds
    // extradata_size bytes.
    unsafe {
        let par = &*parameters.as_ptr();
        if par.extradata.is_null() || par.extradata_size < 2 {
            return false;
        }
        let object_type = *par.extradata >> 3;
        object_type == AOT_AAC_LC
            && (1..=2).contains(&par.ch_layout.nb_channels)
            && [44_100, 48_000].contains(&par.sample_rate)
    }
}

pub struct AudioCopy {
    track: usize,
    /// What the muxer needs, handed over at the first packet (once every track is announced).
    ready: Option<(codec::Parameters, f64)>,
    time_base: Rational,
    /// Subtracted from every timestamp so that the output starts at 0 (stream time base).
    offset: i64,
    last_dts: Option<i64>,
}

impl AudioCopy {
    pub fn new(stream: &Stream, offset: i64, muxer: &mut Muxer) -> Self {
        let time_base = stream.time_base();
        // Where the first sample is presented (the stream's start leaves the priming out).
        let start_s = (input::start_time(stream) - offset) as f64 * f64::from(time_base);
        Self {
            track: muxer.add_track(),
            ready: Some((stream.parameters(), start_s)),
            time_base,
            offset,
            last_dts: None,
        }
    }

    /// Copies one packet into the MP4.
    pub fn send_packet(&mut self, packet: &Packet, muxer: &mut Muxer) -> Result<()> {
        if let Some((parameters, start_s)) = self.ready.take() {
            muxer.set_copy(self.track, parameters, self.time_base, None, TrackKind::Audio, start_s)?;
        }
        let Some(dts) = packet.dts().or(packet.pts()).map(|t| t - self.offset) else {
            return Ok(()); // a packet without a time is not placed
        };
        // Audio has no reordering; timestamps must increase.
        let dts = match self.last_dts {
            Some(last) if dts <= last => last + 1,
            _ => dts,
        };
        self.last_dts = Some(dts);
        let mut packet = packet.clone();
        packet.set_pts(Some(dts));
        packet.set_dts(Some(dts));
        muxer.write(self.track, packet)
    }

    /// Leaves the track out when it held no packet.
    pub fn finish(&mut self, muxer: &mut Muxer) -> Result<()> {
        if self.ready.is_some() {
            return muxer.abandon(self.track, "the audio track holds no packet");
        }
        Ok(())
    }
}
