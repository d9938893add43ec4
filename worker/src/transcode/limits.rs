//! Resource limits checked while probing and again while decoding.
//!
//! A later issue adds a configurable probe gate; these are the hard ceilings the child enforces on
//! its own so that a hostile file cannot make it allocate huge frames or run for hours.

use super::error::{Result, TranscodeError};

/// Largest accepted frame width or height, in pixels (DCI 4K).
pub const MAX_DIMENSION: u32 = 4096;
/// Largest accepted frame area, in pixels (4096x2160; also admits 3840x2160 both ways round).
pub const MAX_PIXELS: u64 = 4096 * 2160;
/// Largest accepted media timestamp, in seconds (6 hours).
pub const MAX_DURATION_S: f64 = 6.0 * 3600.0;
/// At most this many streams in the input (libav `max_streams`).
pub const MAX_STREAMS: u32 = 32;
/// libav `probesize` (bytes) and `analyzeduration` (microseconds): the CLI's defaults, made explicit.
pub const PROBE_SIZE: i64 = 5_000_000;
pub const ANALYZE_DURATION_US: i64 = 5_000_000;
/// Packets the muxer may hold back while waiting for the first decodable video frame.
pub const MAX_PENDING_PACKETS: usize = 20_000;

/// Fails with `limits_exceeded` when a frame size is above the limits.
pub fn check_dimensions(width: u32, height: u32) -> Result<()> {
    if width > MAX_DIMENSION || height > MAX_DIMENSION || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(TranscodeError::limits_exceeded(format!(
            "the video is {width}x{height} pixels; at most {MAX_DIMENSION} pixels per side and \
             {MAX_PIXELS} pixels per frame are accepted"
        )));
    }
    Ok(())
}

/// Fails with `limits_exceeded` when a timestamp lies beyond the longest accepted duration.
pub fn check_timestamp(seconds: f64) -> Result<()> {
    if seconds > MAX_DURATION_S {
        return Err(TranscodeError::limits_exceeded(format!(
            "the media has a timestamp at {seconds:.0} s; at most {MAX_DURATION_S:.0} s are accepted"
        )));
    }
    Ok(())
}
