//! The probe gate: resource limits checked on the headers before probing, again after probing, and
//! again while decoding (headers lie). Each limit fails with its own error code.
//!
//! | limit | code |
//! |---|---|
//! | width or height | `dimensions_exceeded` |
//! | width x height | `pixels_exceeded` |
//! | header duration, timestamps, frame count | `duration_exceeded` |
//! | number of streams | `streams_exceeded` |
//! | declared or measured frame rate | `frame_rate_exceeded` |
//! | bytes written to the output | `output_size_exceeded` |
//!
//! Once the duration is known, [`lower_cpu_limit`] scales the process's RLIMIT_CPU to it.

use std::collections::VecDeque;

use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;

use super::error::{Result, TranscodeError};
use crate::protocol::TranscodeErrorCode;

/// libav `probesize` (bytes) and `analyzeduration` (microseconds): the CLI's defaults, made explicit.
pub const PROBE_SIZE: i64 = 5_000_000;
pub const ANALYZE_DURATION_US: i64 = 5_000_000;
/// Packets the muxer may hold back while waiting for the first decodable video frame.
pub const MAX_PENDING_PACKETS: usize = 20_000;

/// Media seconds over which the decoded frame rate is measured.
const RATE_WINDOW_S: f64 = 2.0;
/// The measured rate is judged over at least this much media time (a shorter span counts as this).
const RATE_MIN_SPAN_S: f64 = 1.0;
/// Headroom over `max_fps` for the measured rate: variable-frame-rate recordings (browsers) bunch
/// frames together after a stall without being fast overall.
const RATE_ALLOWANCE: f64 = 1.5;
/// With the duration unknown, it is estimated from the file size at this many bytes per second
/// (about 80 kb/s: a low bitrate, so a generous estimate).
const ESTIMATE_BYTES_PER_SECOND: f64 = 10_000.0;
/// RLIMIT_CPU base, seconds: probing, encoder start-up and the MP4 trailer.
const CPU_BASE_S: f64 = 60.0;
/// RLIMIT_CPU hard limit over the soft one: SIGXCPU first, SIGKILL this much later.
const CPU_HARD_MARGIN_S: u64 = 5;

/// The probe gate's limits (`mediaq-transcode --max-*` flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest frame width, pixels.
    pub max_width: u32,
    /// Largest frame height, pixels.
    pub max_height: u32,
    /// Largest frame area, pixels (also libav's `max_pixels` for every decoder).
    pub max_pixels: u64,
    /// Longest media duration, seconds.
    pub max_duration_s: u64,
    /// Most streams in the input (libav's `max_streams` is one more, so that we can count).
    pub max_streams: u32,
    /// Highest frame rate, frames per second.
    pub max_fps: u32,
    /// Largest output file, bytes.
    pub max_output_bytes: u64,
    /// CPU seconds per media second for RLIMIT_CPU (plus 60 s); see [`lower_cpu_limit`].
    pub cpu_per_media_second: f64,
}

impl From<&mediaq_protocol::spec::TranscodeSpec> for Limits {
    fn from(spec: &mediaq_protocol::spec::TranscodeSpec) -> Self {
        Self {
            max_width: spec.max_width,
            max_height: spec.max_height,
            max_pixels: spec.max_pixels,
            max_duration_s: spec.max_duration_s,
            max_streams: spec.max_streams,
            max_fps: spec.max_fps,
            max_output_bytes: spec.max_output_bytes,
            cpu_per_media_second: spec.cpu_per_media_second,
        }
    }
}

impl Default for Limits {
    /// The defaults of the `mediaq-transcode` command line (and of the worker's configuration).
    fn default() -> Self {
        Self {
            max_width: 4096,
            max_height: 4096,
            max_pixels: 3840 * 2160,
            max_duration_s: 7200,
            max_streams: 8,
            max_fps: 240,
            max_output_bytes: 4 << 30,
            cpu_per_media_second: 20.0,
        }
    }
}

impl Limits {
    /// libav's `max_pixels` option value (an int option: at most `i32::MAX`).
    pub fn libav_max_pixels(&self) -> String {
        self.max_pixels.min(i32::MAX as u64).to_string()
    }

    /// libav's `max_streams` option value: one over the limit, so that a file just over it still
    /// opens and is reported by [`Limits::check_streams`] with its real count.
    pub fn libav_max_streams(&self) -> String {
        (u64::from(self.max_streams) + 1).min(i32::MAX as u64).to_string()
    }

    /// `dimensions_exceeded` when a side is over its limit, `pixels_exceeded` when the area is.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<()> {
        if width > self.max_width || height > self.max_height {
            let sides = if self.max_width == self.max_height {
                format!("at most {} pixels per side are accepted", self.max_width)
            } else {
                format!("at most {} pixels wide and {} pixels high are accepted", self.max_width, self.max_height)
            };
            return Err(TranscodeError::new(
                TranscodeErrorCode::DimensionsExceeded,
                format!("the video is {width}x{height} pixels; {sides}"),
            ));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(TranscodeError::new(
                TranscodeErrorCode::PixelsExceeded,
                format!(
                    "the video is {width}x{height} = {pixels} pixels per frame; at most {} pixels per frame are accepted",
                    self.max_pixels
                ),
            ));
        }
        Ok(())
    }

    /// `duration_exceeded` when the declared duration (seconds) is over the limit.
    pub fn check_duration(&self, seconds: f64) -> Result<()> {
        if seconds > self.max_duration_s as f64 {
            return Err(self.duration_exceeded(format!("the media lasts {seconds:.3} s")));
        }
        Ok(())
    }

    /// `duration_exceeded` when a decoded timestamp (seconds from the start) lies beyond the limit.
    pub fn check_timestamp(&self, seconds: f64) -> Result<()> {
        if seconds > self.max_duration_s as f64 {
            return Err(self.duration_exceeded(format!("the media has a timestamp at {seconds:.3} s")));
        }
        Ok(())
    }

    fn duration_exceeded(&self, what: String) -> TranscodeError {
        TranscodeError::new(
            TranscodeErrorCode::DurationExceeded,
            format!("{what}; at most {} s are accepted", self.max_duration_s),
        )
    }

    /// `streams_exceeded` when the input holds more streams than the limit.
    pub fn check_streams(&self, count: u32) -> Result<()> {
        if count > self.max_streams {
            return Err(TranscodeError::new(
                TranscodeErrorCode::StreamsExceeded,
                format!("the file has {count} streams; at most {} are accepted", self.max_streams),
            ));
        }
        Ok(())
    }

    /// `frame_rate_exceeded` when a frame rate the container or the prober reports (`avg`:
    /// average, `r`: base) is over the limit. A rate equal to `tick_rate` (1/time_base) is no
    /// declaration: libav reports it as `r_frame_rate` when it knows nothing better, and old
    /// muxers wrote one tick as the default frame duration. Decoding measures the real rate.
    pub fn check_declared_frame_rate(&self, avg: Rational, r: Rational, tick_rate: Rational) -> Result<()> {
        let valid = |q: &Rational| q.numerator() > 0 && q.denominator() > 0;
        let is_tick = |q: &Rational| {
            i64::from(q.numerator()) * i64::from(tick_rate.denominator())
                == i64::from(tick_rate.numerator()) * i64::from(q.denominator())
        };
        let declared = [(avg, "average"), (r, "base")]
            .into_iter()
            .filter(|(q, _)| valid(q) && !is_tick(q))
            .find(|(q, _)| f64::from(*q) > f64::from(self.max_fps));
        if let Some((q, kind)) = declared {
            return Err(TranscodeError::new(
                TranscodeErrorCode::FrameRateExceeded,
                format!(
                    "the video's {kind} frame rate is {:.2} frames per second; at most {} are accepted",
                    f64::from(q),
                    self.max_fps
                ),
            ));
        }
        Ok(())
    }

    /// `output_size_exceeded` when `bytes` have been written to the output.
    pub fn check_output_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_output_bytes {
            return Err(TranscodeError::new(
                TranscodeErrorCode::OutputSizeExceeded,
                format!("the output has reached {bytes} bytes; at most {} bytes are accepted", self.max_output_bytes),
            ));
        }
        Ok(())
    }

    /// RLIMIT_CPU soft limit in seconds for this much media: 60 + `cpu_per_media_second` x the
    /// duration, or, with the duration unknown (live recordings), x an estimate from the file size
    /// (`file_size / 10_000`, at most `max_duration_s`). None when the result is not a number.
    pub fn cpu_seconds(&self, duration_s: Option<f64>, file_size: Option<i64>) -> Option<u64> {
        let max = self.max_duration_s as f64;
        let media_s = match duration_s.filter(|d| d.is_finite() && *d > 0.0) {
            Some(d) => d.min(max),
            None => (file_size.unwrap_or(0).max(0) as f64 / ESTIMATE_BYTES_PER_SECOND).min(max),
        };
        let seconds = CPU_BASE_S + self.cpu_per_media_second.max(0.0) * media_s;
        (seconds.is_finite() && seconds < u64::MAX as f64 / 2.0).then(|| seconds.ceil() as u64)
    }
}

/// Lowers this process's RLIMIT_CPU to `soft_s` seconds (hard: 5 s more), never raising either
/// limit. The kernel sends SIGXCPU at the soft limit and SIGKILL at the hard one; the worker
/// reports both as `resource_limit`. Failures are logged on stderr and otherwise ignored (the
/// worker's own ceiling stays in force).
pub fn lower_cpu_limit(soft_s: u64) {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed, which lives on this stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CPU, &mut current) != 0 {
            eprintln!("mediaq-transcode: cannot read RLIMIT_CPU: {}", std::io::Error::last_os_error());
            return;
        }
        let soft = (soft_s as libc::rlim_t).min(current.rlim_cur);
        let hard = soft.saturating_add(CPU_HARD_MARGIN_S as libc::rlim_t).min(current.rlim_max);
        let wanted = libc::rlimit { rlim_cur: soft.min(hard), rlim_max: hard };
        if libc::setrlimit(libc::RLIMIT_CPU, &wanted) != 0 {
            eprintln!("mediaq-transcode: cannot lower RLIMIT_CPU to {soft_s} s: {}", std::io::Error::last_os_error());
        }
    }
}

/// Decode-time counts of the video frames: the frame rate measured over a sliding window of media
/// time (`frame_rate_exceeded`), and the total against `max_fps * max_duration_s`
/// (`duration_exceeded`).
pub struct FrameCounter {
    max_fps: f64,
    max_frames: u64,
    frames: u64,
    /// Timestamps (seconds, increasing) of the frames within the last [`RATE_WINDOW_S`].
    window: VecDeque<f64>,
}

impl FrameCounter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_fps: f64::from(limits.max_fps),
            max_frames: u64::from(limits.max_fps).saturating_mul(limits.max_duration_s),
            frames: 0,
            window: VecDeque::new(),
        }
    }

    /// Counts a frame at `seconds` (the output timestamp: increasing). The rate is frames over the
    /// media time they span within the window, a span under 1 s counting as 1 s; it may reach
    /// 1.5 x `max_fps` before the job fails, so bursts in variable-frame-rate recordings pass.
    pub fn count(&mut self, seconds: f64) -> Result<()> {
        self.frames += 1;
        if self.frames > self.max_frames {
            return Err(TranscodeError::new(
                TranscodeErrorCode::DurationExceeded,
                format!(
                    "the video has more than {} frames ({} per second for the longest accepted duration)",
                    self.max_frames, self.max_fps
                ),
            ));
        }
        while self.window.front().is_some_and(|t| *t < seconds - RATE_WINDOW_S) {
            self.window.pop_front();
        }
        self.window.push_back(seconds);
        let first = *self.window.front().expect("just pushed");
        let span = (seconds - first).max(RATE_MIN_SPAN_S);
        let intervals = (self.window.len() - 1) as f64;
        if intervals / span > RATE_ALLOWANCE * self.max_fps {
            return Err(TranscodeError::new(
                TranscodeErrorCode::FrameRateExceeded,
                format!(
                    "the video has {} frames within {:.2} s of media ({:.1} frames per second); at most {} \
                     per second are accepted",
                    self.window.len(),
                    seconds - first,
                    intervals / span,
                    self.max_fps
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn code(r: Result<()>) -> &'static str {
        r.expect_err("fails").code.as_str()
    }

    #[test]
    fn each_limit_has_its_code() {
        let l = limits();
        assert!(l.check_dimensions(3840, 2160).is_ok());
        assert!(l.check_dimensions(2160, 3840).is_ok());
        assert_eq!(code(l.check_dimensions(12336, 240)), "dimensions_exceeded");
        assert_eq!(code(l.check_dimensions(240, 4097)), "dimensions_exceeded");
        assert_eq!(code(l.check_dimensions(4096, 2160)), "pixels_exceeded");
        assert_eq!(code(l.check_duration(7200.5)), "duration_exceeded");
        assert!(l.check_duration(7200.0).is_ok());
        assert_eq!(code(l.check_timestamp(9000.0)), "duration_exceeded");
        assert_eq!(code(l.check_streams(9)), "streams_exceeded");
        assert!(l.check_streams(8).is_ok());
        assert_eq!(code(l.check_output_size((4 << 30) + 1)), "output_size_exceeded");
        let err = l.check_dimensions(12336, 240).unwrap_err();
        assert_eq!(err.message, "the video is 12336x240 pixels; at most 4096 pixels per side are accepted");
    }

    #[test]
    fn declared_frame_rates() {
        let l = Limits { max_fps: 30, ..limits() };
        let none = Rational::new(0, 0);
        let ms = Rational::new(1000, 1);
        assert!(l.check_declared_frame_rate(Rational::new(30, 1), Rational::new(30, 1), ms).is_ok());
        assert!(l.check_declared_frame_rate(Rational::new(30000, 1001), none, ms).is_ok());
        assert_eq!(
            code(l.check_declared_frame_rate(Rational::new(60, 1), Rational::new(60, 1), ms)),
            "frame_rate_exceeded"
        );
        assert_eq!(code(l.check_declared_frame_rate(none, Rational::new(120, 1), ms)), "frame_rate_exceeded");
        // One frame per tick of the time base (libav's "unknown" r_frame_rate, old muxers'
        // DefaultDuration) is not a declaration.
        assert!(l.check_declared_frame_rate(none, ms, ms).is_ok());
        assert!(l.check_declared_frame_rate(Rational::new(25, 1), ms, ms).is_ok());
        assert!(l.check_declared_frame_rate(ms, ms, ms).is_ok());
        assert_eq!(code(l.check_declared_frame_rate(Rational::new(500, 1), ms, ms)), "frame_rate_exceeded");
    }

    #[test]
    fn measured_frame_rate_allows_vfr_bursts() {
        let l = Limits { max_fps: 30, ..limits() };
        // 30 fps for a minute, with 5 frames 1 ms apart every second.
        let mut c = FrameCounter::new(&l);
        for s in 0..60 {
            for i in 0..30 {
                let t = if i < 5 { s as f64 + i as f64 * 0.001 } else { s as f64 + i as f64 / 30.0 };
                c.count(t).unwrap();
            }
        }
        // 60 fps fails within the first seconds.
        let mut c = FrameCounter::new(&l);
        let at = (0..600).find(|n| c.count(*n as f64 / 60.0).is_err());
        assert!(at.is_some_and(|n| n <= 120), "{at:?}");
        // Identical timestamps made increasing by one tick fail too.
        let mut c = FrameCounter::new(&l);
        let at = (0..1000).find(|n| c.count(*n as f64 * 1e-9).is_err());
        assert_eq!(at, Some(46));
    }

    #[test]
    fn frame_count_is_bounded_by_rate_and_duration() {
        let l = Limits { max_fps: 10, max_duration_s: 2, ..limits() };
        let mut c = FrameCounter::new(&l);
        let err = (0..100).find_map(|n| c.count(n as f64 * 0.1).err()).expect("fails");
        assert_eq!(err.code.as_str(), "duration_exceeded");
    }

    #[test]
    fn cpu_limit_scales_with_the_duration() {
        let l = limits();
        assert_eq!(l.cpu_seconds(Some(10.0), None), Some(260));
        // Unknown duration: 1 MB -> 100 s estimated.
        assert_eq!(l.cpu_seconds(None, Some(1_000_000)), Some(2060));
        // The estimate is capped at the longest accepted duration.
        assert_eq!(l.cpu_seconds(None, Some(1 << 40)), Some(60 + 20 * 7200));
        assert_eq!(l.cpu_seconds(None, None), Some(60));
    }
}
