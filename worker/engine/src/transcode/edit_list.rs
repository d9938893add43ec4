//! The one edit list FFmpeg 5.1's MP4 muxer cannot write: an AAC track that starts after the
//! others *and* hides its encoder priming.
//!
//! For a track whose first packet lies after 0 the muxer writes `[empty edit of `delay`]
//! [media from 0]`, so the encoder's priming (1024 samples of AAC, ~21 ms) plays as silence and
//! the track's first decoded frame comes ~21 ms before the audio the input had there. For a
//! track starting at 0 it writes `[media from priming]`, which is right. The fix-up below turns
//! the first form into `[empty edit until the first real sample][media from priming]` in place:
//! same box size, same entry count, so nothing else in the file moves.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::error::{Result, TranscodeError};

/// Largest `moov` box read into memory (2 h of audio and video index a few MB).
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// Where the audio track's real content starts, in its media time scale (mdhd), and how many
/// samples of encoder priming precede it in the track.
#[derive(Debug, Clone, Copy)]
pub struct DelayedStart {
    /// Presentation time of the first real (not priming) sample.
    pub start: i64,
    /// Encoder priming at the start of the track.
    pub priming: i64,
}

/// Rewrites the edit list of the file's sound track from `[empty][media from 0]` to
/// `[empty until start][media from priming]`. Does nothing (and says so on stderr) when the edit
/// list has another shape.
pub fn trim_delayed_audio_priming(path: &Path, delayed: DelayedStart) -> Result<()> {
    let io = |e: std::io::Error| TranscodeError::transcode(format!("fixing the audio edit list failed: {e}"));
    let mut file = File::options().read(true).write(true).open(path).map_err(io)?;
    let Some((moov_at, moov)) = read_moov(&mut file).map_err(io)? else {
        eprintln!("mediaq-transcode: no moov box; audio edit list left as written");
        return Ok(());
    };
    match patch_moov(&moov, delayed) {
        Some((offset, elst)) => {
            file.seek(SeekFrom::Start(moov_at + offset as u64)).map_err(io)?;
            file.write_all(&elst).map_err(io)?;
            file.sync_data().map_err(io)
        }
        None => {
            eprintln!("mediaq-transcode: unexpected audio edit list; left as written");
            Ok(())
        }
    }
}

/// The top-level `moov` box: its file offset and bytes (header included).
fn read_moov(file: &mut File) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    let len = file.metadata()?.len();
    let mut pos = 0u64;
    while pos + 8 <= len {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(pos))?;
        let n = (len - pos).min(16) as usize;
        file.read_exact(&mut header[..n])?;
        let size32 = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
        let size = match size32 {
            0 => len - pos,
            1 if n == 16 => u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")),
            s => u64::from(s),
        };
        if size < 8 || pos + size > len {
            return Ok(None);
        }
        if &header[4..8] == b"moov" {
            if size > MAX_MOOV_BYTES {
                return Ok(None);
            }
            let mut moov = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut moov)?;
            return Ok(Some((pos, moov)));
        }
        pos += size;
    }
    Ok(None)
}

/// A box inside `bytes`: type, payload range.
fn children(bytes: &[u8], range: std::ops::Range<usize>) -> Vec<([u8; 4], std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos + 8 <= range.end {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().expect("4 bytes");
        let (header, size) = match size {
            1 if pos + 16 <= range.end => {
                (16, u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().expect("8 bytes")) as usize)
            }
            0 => (8, range.end - pos),
            s => (8, s),
        };
        if size < header || pos + size > range.end {
            break;
        }
        out.push((kind, pos + header..pos + size));
        pos += size;
    }
    out
}

fn child(bytes: &[u8], range: std::ops::Range<usize>, kind: &[u8; 4]) -> Option<std::ops::Range<usize>> {
    children(bytes, range).into_iter().find(|(k, _)| k == kind).map(|(_, r)| r)
}

/// The time scale of an `mvhd` or `mdhd` payload.
fn time_scale(bytes: &[u8], payload: std::ops::Range<usize>) -> Option<u64> {
    let at = payload.start + if bytes.get(payload.start)? == &1 { 20 } else { 12 };
    (at + 4 <= payload.end).then(|| u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))))
}

fn read_int(bytes: &[u8], at: usize, wide: bool) -> i64 {
    if wide {
        i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    } else {
        i64::from(i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")))
    }
}

fn write_int(out: &mut Vec<u8>, value: i64, wide: bool) {
    if wide {
        out.extend_from_slice(&value.to_be_bytes());
    } else {
        out.extend_from_slice(&(value as i32).to_be_bytes());
    }
}

/// The new `elst` payload for the sound track and its offset in `moov`, or None when the track
/// or its edit list is not as the muxer writes it for a delayed start.
fn patch_moov(moov: &[u8], delayed: DelayedStart) -> Option<(usize, Vec<u8>)> {
    let top = child(moov, 0..moov.len(), b"moov")?;
    let movie_scale = time_scale(moov, child(moov, top.clone(), b"mvhd")?)?;
    for (kind, trak) in children(moov, top) {
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(moov, trak.clone(), b"mdia") else { continue };
        let Some(hdlr) = child(moov, mdia.clone(), b"hdlr") else { continue };
        if moov.get(hdlr.start + 8..hdlr.start + 12) != Some(b"soun".as_slice()) {
            continue;
        }
        let media_scale = time_scale(moov, child(moov, mdia, b"mdhd")?)?;
        let elst = child(moov, child(moov, trak, b"edts")?, b"elst")?;
        return new_elst(moov, elst, movie_scale, media_scale, delayed);
    }
    None
}

fn new_elst(
    moov: &[u8],
    elst: std::ops::Range<usize>,
    movie_scale: u64,
    media_scale: u64,
    delayed: DelayedStart,
) -> Option<(usize, Vec<u8>)> {
    let wide = *moov.get(elst.start)? == 1;
    let entry = if wide { 20 } else { 12 };
    let count = u32::from_be_bytes(moov.get(elst.start + 4..elst.start + 8)?.try_into().ok()?);
    if count != 2 || elst.start + 8 + 2 * entry > elst.end || movie_scale == 0 || media_scale == 0 {
        return None;
    }
    // entry: segment_duration (movie scale), media_time (media scale), rate (16.16 + 16.16)
    let half = if wide { 8 } else { 4 };
    let read = |index: usize, which: usize| read_int(moov, elst.start + 8 + index * entry + which * half, wide);
    let (empty, empty_time) = (read(0, 0), read(0, 1));
    let (segment, media_time) = (read(1, 0), read(1, 1));
    if empty_time != -1 || media_time != 0 || delayed.start <= 0 || delayed.priming <= 0 {
        return None;
    }
    let new_empty = (i128::from(delayed.start) * i128::from(movie_scale) / i128::from(media_scale)) as i64;
    let new_segment = (segment + empty - new_empty).max(0);
    let mut out = moov[elst.start..elst.start + 8].to_vec();
    for (duration, time) in [(new_empty, -1), (new_segment, delayed.priming)] {
        write_int(&mut out, duration, wide);
        write_int(&mut out, time, wide);
        out.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    }
    Some((elst.start, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    /// mvhd/mdhd version 0 with the given time scale.
    fn header(kind: &[u8; 4], scale: u32) -> Vec<u8> {
        let mut payload = vec![0u8; 12];
        payload.extend_from_slice(&scale.to_be_bytes());
        payload.extend_from_slice(&[0u8; 8]);
        boxed(kind, &payload)
    }

    fn elst(entries: &[(i32, i32)]) -> Vec<u8> {
        let mut payload = vec![0u8; 4];
        payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (duration, time) in entries {
            payload.extend_from_slice(&duration.to_be_bytes());
            payload.extend_from_slice(&time.to_be_bytes());
            payload.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        }
        boxed(b"elst", &payload)
    }

    fn trak(handler: &[u8; 4], edits: &[(i32, i32)]) -> Vec<u8> {
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mdia = [header(b"mdhd", 48_000), boxed(b"hdlr", &hdlr)].concat();
        boxed(b"trak", &[boxed(b"edts", &elst(edits)), boxed(b"mdia", &mdia)].concat())
    }

    fn moov(audio_edits: &[(i32, i32)]) -> Vec<u8> {
        let body = [header(b"mvhd", 1000), trak(b"vide", &[(3000, 1024)]), trak(b"soun", audio_edits)].concat();
        boxed(b"moov", &body)
    }

    #[test]
    fn delayed_audio_gets_its_priming_hidden() {
        // Audio content from 40 ms (1920 samples); the first packet (priming) at 896.
        let bytes = moov(&[(18, -1), (3022, 0)]);
        let (at, new) = patch_moov(&bytes, DelayedStart { start: 1920, priming: 1024 }).expect("patched");
        let mut patched = bytes.clone();
        patched[at..at + new.len()].copy_from_slice(&new);
        assert_eq!(patched.len(), bytes.len());
        let expected = moov(&[(40, -1), (3000, 1024)]);
        assert_eq!(patched, expected);
    }

    #[test]
    fn other_shapes_are_left_alone() {
        let start = DelayedStart { start: 1920, priming: 1024 };
        assert!(patch_moov(&moov(&[(3000, 1024)]), start).is_none());
        assert!(patch_moov(&moov(&[(18, -1), (3022, 512)]), start).is_none());
        assert!(patch_moov(&moov(&[(18, -1), (3022, 0)]), DelayedStart { start: 0, priming: 1024 }).is_none());
        assert!(patch_moov(&moov(&[(18, -1), (3022, 0)])[..40], start).is_none());
    }
}
