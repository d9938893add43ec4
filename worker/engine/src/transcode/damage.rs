//! Telling a damaged file from a recording cut short: both decode to less than the container
//! declares, but a cut-short recording (a browser closed mid-recording) is readable up to where it
//! ends, while a damaged one is mostly bytes that the demuxer skipped or the decoders refused.
//!
//! The rule, from real files (the shared corpus and generated noise): the bytes of the selected
//! streams' packets that the decoders accepted are the readable part. In the corpus's files that
//! convert, that is 50-99 % of the file (container overhead, cover art, alpha side data, other
//! tracks); truncated recordings keep their share (87 % and 97 %). A recording's first 3-4 KiB
//! followed by 100-200 KB of noise keeps under 20 %. The file fails `damaged_input` when the
//! readable part is under [`MIN_READABLE_SHARE`] and the rest is at least [`MIN_UNREADABLE_BYTES`]
//! (in tiny files headers alone can outweigh the media).

use ffmpeg::Packet;
use ffmpeg_next as ffmpeg;

use super::error::{Result, TranscodeError};
use crate::protocol::TranscodeErrorCode;

/// Under this share of the file readable, the file is damaged.
const MIN_READABLE_SHARE: f64 = 0.5;
/// ... when at least this much of it is not.
const MIN_UNREADABLE_BYTES: u64 = 64 * 1024;

/// Counts the bytes of the packets given to the decoders, and of those they refused.
#[derive(Debug, Default)]
pub struct Readable {
    sent: u64,
    refused: u64,
}

impl Readable {
    /// A packet of a selected stream; `errors_before`/`errors_after`: its decoder's error count
    /// before and after it (a rise means the packet, or one just before, was refused).
    pub fn packet(&mut self, packet: &Packet, errors_before: u64, errors_after: u64) {
        let size = packet.size() as u64;
        self.sent += size;
        if errors_after > errors_before {
            self.refused += size;
        }
    }

    /// The readable bytes.
    pub fn bytes(&self) -> u64 {
        self.sent.saturating_sub(self.refused)
    }

    /// `damaged_input` when most of a file of `total` bytes (None: unknown) was unreadable.
    pub fn check(&self, total: Option<i64>) -> Result<()> {
        let Some(total) = total.and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0) else {
            return Ok(());
        };
        let readable = self.bytes().min(total);
        let share = readable as f64 / total as f64;
        if share < MIN_READABLE_SHARE && total - readable >= MIN_UNREADABLE_BYTES {
            return Err(TranscodeError::new(
                TranscodeErrorCode::DamagedInput,
                format!(
                    "the file is damaged: only {:.0} % of it could be read ({} of {} bytes); the rest is not audio or video the decoders accept",
                    share * 100.0,
                    readable,
                    total
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(sent: u64, refused: u64) -> Readable {
        Readable { sent, refused }
    }

    #[test]
    fn mostly_unreadable_large_files_are_damaged() {
        let err = readable(20_000, 2_000).check(Some(210_000)).unwrap_err();
        assert_eq!(err.code, TranscodeErrorCode::DamagedInput);
        assert!(err.message.contains("9 %"), "{}", err.message);
        assert!(readable(120_000, 110_000).check(Some(210_000)).is_err(), "refused packets do not count");
    }

    #[test]
    fn readable_or_tiny_files_are_not() {
        readable(950_000, 0).check(Some(1_000_000)).unwrap(); // cut short: what is there reads
        readable(600_000, 0).check(Some(1_000_000)).unwrap(); // half and more
        readable(900, 0).check(Some(1_900)).unwrap(); // tiny: headers outweigh the media
        readable(0, 0).check(Some(60_000)).unwrap(); // under the byte floor
        readable(0, 0).check(None).unwrap(); // size unknown
    }
}
