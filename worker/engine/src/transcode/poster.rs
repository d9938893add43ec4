//! The poster: one JPEG (libav's mjpeg encoder) of a representative frame near the start of the
//! video, written beside the MP4 in the same sandboxed run.
//!
//! Which frame: the first one at or after [`TARGET_S`] (or 10 % of the duration, whichever is
//! earlier) whose mean luma is above [`NEAR_BLACK_LUMA`] (a fade-in or a camera still opening
//! starts black). When no such frame comes within [`LOOK_AHEAD_S`] of the target, or the video
//! ends first (short clips, dark recordings), the brightest frame seen so far is taken.
//!
//! Size: the video's display size (sample aspect ratio applied to the even-rounded size the MP4
//! has), fitted within the limits (width, height, pixels), square pixels.
//!
//! A poster never fails the job: when one cannot be made, stderr says why and the job simply
//! has none (the worker serves 404 `poster_not_available`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, color, encoder, ffi, frame, Packet, Rational, Stream};
use ffmpeg_next as ffmpeg;

use super::error::{LibavContext, Result, TranscodeError};
use super::limits::Limits;

/// Where the search for a poster frame starts, at most (seconds into the video).
const TARGET_S: f64 = 1.0;
/// How far past the target a bright enough frame is looked for (seconds).
const LOOK_AHEAD_S: f64 = 10.0;
/// Mean luma (0-255 samples, limited range black is 16) at or below which a frame counts as black.
const NEAR_BLACK_LUMA: f64 = 32.0;
/// Size frames are reduced to for measuring their luma.
const PROBE_SIZE: (u32, u32) = (64, 36);
/// JPEG quality as libav's qscale (2 best .. 31 worst), as `ffmpeg -q:v 3`.
const QSCALE: i32 = 3;

pub struct PosterPicker {
    path: PathBuf,
    target_s: f64,
    /// The stream's sample aspect ratio, for frames that carry none.
    stream_sar: Rational,
    limits: Limits,
    /// The brightest frame seen while searching, with its mean luma.
    best: Option<(f64, frame::Video)>,
    probe: Option<scaling::Context>,
    written: bool,
    gave_up: bool,
}

impl PosterPicker {
    /// A picker for `stream`, writing to `path`; `duration_s` is the input's, when known.
    pub fn new(path: &Path, stream: &Stream, duration_s: Option<f64>, limits: &Limits) -> Self {
        let target_s = duration_s.filter(|d| d.is_finite() && *d > 0.0).map_or(TARGET_S, |d| (d * 0.1).min(TARGET_S));
        // SAFETY: ffmpeg-next exposes no getter for AVStream.sample_aspect_ratio; a plain read of
        // a field of a stream the caller borrows.
        let stream_sar = Rational::from(unsafe { (*stream.as_ptr()).sample_aspect_ratio });
        Self {
            path: path.to_path_buf(),
            target_s,
            stream_sar,
            limits: *limits,
            best: None,
            probe: None,
            written: false,
            gave_up: false,
        }
    }

    /// Looks at one decoded frame presented at `seconds` (from the start of the output).
    pub fn offer(&mut self, frame: &frame::Video, seconds: f64) {
        if self.written || self.gave_up {
            return;
        }
        let luma = match self.mean_luma(frame) {
            Ok(luma) => luma,
            Err(err) => {
                eprintln!("mediaq-transcode: no poster: {err}");
                self.gave_up = true;
                return;
            }
        };
        if seconds >= self.target_s && luma > NEAR_BLACK_LUMA {
            self.write(frame);
            return;
        }
        if self.best.as_ref().is_none_or(|(l, _)| luma > *l) {
            self.best = Some((luma, frame.clone()));
        }
        if seconds > self.target_s + LOOK_AHEAD_S {
            self.write_best();
        }
    }

    /// Whether the picker is done (written, or given up).
    pub fn done(&self) -> bool {
        self.written || self.gave_up
    }

    /// At the end of the video: writes the brightest frame seen if none was chosen yet.
    pub fn finish(&mut self) {
        if !self.written && !self.gave_up {
            self.write_best();
        }
    }

    fn write_best(&mut self) {
        if let Some((_, frame)) = self.best.take() {
            self.write(&frame);
        }
    }

    fn write(&mut self, frame: &frame::Video) {
        self.best = None;
        match encode(frame, self.stream_sar, &self.limits).and_then(|jpeg| save(&self.path, &jpeg)) {
            Ok(()) => self.written = true,
            Err(err) => {
                eprintln!("mediaq-transcode: no poster: {err}");
                self.gave_up = true;
            }
        }
    }

    /// Mean of the luma of `frame` reduced to [`PROBE_SIZE`] (8-bit samples).
    fn mean_luma(&mut self, frame: &frame::Video) -> Result<f64> {
        let fits = self.probe.as_ref().is_some_and(|s| {
            let i = s.input();
            i.format == frame.format() && i.width == frame.width() && i.height == frame.height()
        });
        if !fits {
            let (w, h) = PROBE_SIZE;
            let probe = scaling::Context::get(
                frame.format(),
                frame.width(),
                frame.height(),
                Pixel::GRAY8,
                w,
                h,
                scaling::Flags::AREA,
            )
            .during("setting up the poster's luma probe")?;
            self.probe = Some(probe);
        }
        let mut small = frame::Video::new(Pixel::GRAY8, PROBE_SIZE.0, PROBE_SIZE.1);
        self.probe.as_mut().expect("set").run(frame, &mut small).during("measuring a frame's luma")?;
        let (stride, data) = (small.stride(0), small.data(0));
        let (w, h) = (PROBE_SIZE.0 as usize, PROBE_SIZE.1 as usize);
        let sum: u64 = (0..h).flat_map(|y| &data[y * stride..y * stride + w]).map(|&v| u64::from(v)).sum();
        Ok(sum as f64 / (w * h) as f64)
    }
}

/// The size the poster gets: the frame's even-rounded size with its sample aspect ratio applied
/// to the width, fitted within the limits (aspect kept), at least 2x2.
pub fn display_size(width: u32, height: u32, sar: Rational, limits: &Limits) -> (u32, u32) {
    let (w, h) = (f64::from(width & !1), f64::from(height & !1));
    let sar = if sar.numerator() > 0 && sar.denominator() > 0 { f64::from(sar) } else { 1.0 };
    let mut w = w * sar;
    let mut h = h;
    let fit = [
        f64::from(limits.max_width) / w,
        f64::from(limits.max_height) / h,
        (limits.max_pixels as f64 / (w * h)).sqrt(),
        1.0,
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    w *= fit;
    h *= fit;
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    (even(w), even(h))
}

/// Scales `frame` to its display size and encodes it as one baseline JPEG (full-range 4:2:0).
fn encode(frame: &frame::Video, stream_sar: Rational, limits: &Limits) -> Result<Vec<u8>> {
    let sar = if frame.aspect_ratio().numerator() > 0 { frame.aspect_ratio() } else { stream_sar };
    let (width, height) = display_size(frame.width(), frame.height(), sar, limits);
    let mut scaler = scaling::Context::get(
        frame.format(),
        frame.width() & !1,
        frame.height() & !1,
        Pixel::YUV420P,
        width,
        height,
        scaling::Flags::BICUBIC,
    )
    .during("setting up the poster's scaler")?;
    full_range_output(&mut scaler, frame.color_range() == color::Range::JPEG);
    let mut picture = frame::Video::new(Pixel::YUV420P, width, height);
    picture.set_color_range(color::Range::JPEG);
    // The scaler reads the top-left even-sized part, as the MP4 does.
    let mut source = frame.clone();
    // SAFETY: narrowing the frame's own width/height by at most one pixel each; the buffers stay.
    unsafe {
        (*source.as_mut_ptr()).width = (frame.width() & !1) as i32;
        (*source.as_mut_ptr()).height = (frame.height() & !1) as i32;
    }
    scaler.run(&source, &mut picture).during("scaling the poster")?;

    let codec = encoder::find(codec::Id::MJPEG)
        .ok_or_else(|| TranscodeError::transcode("this libavcodec has no mjpeg encoder"))?;
    let mut enc = codec::Context::new_with_codec(codec).encoder().video().during("setting up the JPEG encoder")?;
    enc.set_width(width);
    enc.set_height(height);
    // Full-range 4:2:0 (what JPEG means); libav's deprecated "yuvj" formats are not needed.
    enc.set_format(Pixel::YUV420P);
    enc.set_color_range(color::Range::JPEG);
    enc.set_time_base(Rational::new(1, 25));
    // SAFETY: ffmpeg-next has no setter for the fixed-quality flag and global_quality; plain field
    // writes on a context we own, before it is opened (what `ffmpeg -q:v` does).
    unsafe {
        let ctx = enc.as_mut_ptr();
        (*ctx).flags |= ffi::AV_CODEC_FLAG_QSCALE as i32;
        (*ctx).global_quality = QSCALE * ffi::FF_QP2LAMBDA;
        (*picture.as_mut_ptr()).quality = QSCALE * ffi::FF_QP2LAMBDA;
    }
    let mut enc = enc.open_as(codec).during("opening the JPEG encoder")?;
    picture.set_pts(Some(0));
    enc.send_frame(&picture).during("encoding the poster")?;
    enc.send_eof().during("encoding the poster")?;
    let mut packet = Packet::empty();
    enc.receive_packet(&mut packet).during("encoding the poster")?;
    let data = packet.data().ok_or_else(|| TranscodeError::transcode("the JPEG encoder returned nothing"))?;
    Ok(data.to_vec())
}

/// Makes the scaler write full-range samples (JPEG), reading limited or full range as the frame says.
fn full_range_output(scaler: &mut scaling::Context, full_range_input: bool) {
    // SAFETY: ffmpeg-next exposes neither sws_getColorspaceDetails nor sws_setColorspaceDetails;
    // the context is valid and owned here, the out-pointers point at locals, and the tables
    // passed back are the context's own.
    unsafe {
        let ctx = scaler.as_mut_ptr();
        let (mut inv_table, mut table) = (std::ptr::null_mut(), std::ptr::null_mut());
        let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) = (0, 0, 0, 0, 0);
        let got = ffi::sws_getColorspaceDetails(
            ctx,
            &mut inv_table,
            &mut src_range,
            &mut table,
            &mut dst_range,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        );
        if got >= 0 {
            ffi::sws_setColorspaceDetails(
                ctx,
                inv_table,
                i32::from(full_range_input),
                table,
                1,
                brightness,
                contrast,
                saturation,
            );
        }
    }
}

/// Writes the JPEG to a new file (never through an existing one).
fn save(path: &Path, jpeg: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| TranscodeError::transcode(format!("cannot create the poster file: {e}")))?;
    file.write_all(jpeg).map_err(|e| TranscodeError::transcode(format!("cannot write the poster file: {e}")))
}

/// Removes a poster written by a pass whose output is discarded.
pub fn remove(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            eprintln!("mediaq-transcode: could not remove the poster: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_size_applies_the_aspect_ratio_and_the_limits() {
        let limits = Limits::default();
        assert_eq!(display_size(1280, 720, Rational::new(0, 1), &limits), (1280, 720));
        assert_eq!(display_size(1281, 721, Rational::new(1, 1), &limits), (1280, 720));
        assert_eq!(display_size(480, 360, Rational::new(4, 3), &limits), (640, 360));
        assert_eq!(display_size(720, 576, Rational::new(16, 15), &limits), (768, 576));
        let small = Limits { max_width: 640, max_height: 640, max_pixels: 640 * 640, ..Limits::default() };
        assert_eq!(display_size(1280, 720, Rational::new(1, 1), &small), (640, 360));
        let few = Limits { max_pixels: 320 * 180, ..Limits::default() };
        assert_eq!(display_size(1280, 720, Rational::new(1, 1), &few), (320, 180));
        assert_eq!(display_size(2, 2, Rational::new(1, 4), &limits), (2, 2));
    }
}
