//! Recognises an ISO base media file (MP4, fragmented MP4, QuickTime MOV) from its first boxes:
//! what Safari's and Chrome's `MediaRecorder` write for `video/mp4`, and what phones keep in
//! their camera rolls.
//!
//! Only the leading boxes' headers are read: decoding is the sandboxed transcoder's job.

/// Brands of the `ftyp` box accepted (major or compatible): ISO base media, MP4, QuickTime,
/// Apple's M4V/M4A, fragmented-MP4 and DASH profiles, and the 3GPP ones Android cameras write.
const BRANDS: [&[u8; 4]; 24] = [
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9", b"mp41", b"mp42", b"avc1", b"M4V ",
    b"M4VP", b"M4A ", b"qt  ", b"dash", b"msdh", b"msix", b"cmfc", b"cmf2", b"3gp4", b"3gp5", b"3gp6", b"mmp4",
];
/// Boxes a file may start with instead of `ftyp`: a QuickTime file without one begins with its
/// movie box or with padding before it (`wide`, `free`, `skip`).
const LEADING_BOXES: [&[u8; 4]; 4] = [b"moov", b"wide", b"free", b"skip"];
/// Boxes that may follow leading padding in such a file.
const AFTER_PADDING: [&[u8; 4]; 3] = [b"moov", b"mdat", b"ftyp"];
/// A real `ftyp` lists a handful of brands; a larger one is not believed.
const MAX_FTYP_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmffError {
    #[error("the file is not an ISO base media file")]
    NotBmff,
    #[error("the file's first box is cut short")]
    Truncated,
    #[error("the file's ftyp box is malformed")]
    Malformed,
    #[error("the file's brands ({0}) are not an MP4 or QuickTime recording")]
    UnknownBrand(String),
}

/// One box header: its type and whole size (None: "to the end of the file").
fn box_at(bytes: &[u8], pos: usize) -> Result<(&[u8], Option<u64>, usize), BmffError> {
    let header = bytes.get(pos..pos + 8).ok_or(BmffError::Truncated)?;
    let size32 = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let kind = &header[4..8];
    match size32 {
        0 => Ok((kind, None, 8)),
        1 => {
            let large = bytes.get(pos + 8..pos + 16).ok_or(BmffError::Truncated)?;
            let size = u64::from_be_bytes(large.try_into().expect("8 bytes"));
            if size < 16 {
                return Err(BmffError::Malformed);
            }
            Ok((kind, Some(size), 16))
        }
        n if n < 8 => Err(BmffError::Malformed),
        n => Ok((kind, Some(u64::from(n)), 8)),
    }
}

/// Whether `head` (the file's first bytes) starts like an MP4/MOV recording: an `ftyp` box
/// naming a known brand, or a QuickTime file's leading boxes.
pub fn check(head: &[u8]) -> Result<(), BmffError> {
    let (kind, size, header_len) = box_at(head, 0)?;
    if kind == b"ftyp" {
        let size = usize::try_from(size.ok_or(BmffError::Malformed)?).map_err(|_| BmffError::Malformed)?;
        if !(header_len + 8..=MAX_FTYP_LEN).contains(&size) || (size - header_len) % 4 != 0 {
            return Err(BmffError::Malformed);
        }
        let body = head.get(header_len..size).ok_or(BmffError::Truncated)?;
        // major brand, minor version, compatible brands
        let brands = std::iter::once(&body[..4]).chain(body[8..].chunks_exact(4));
        let brands: Vec<&[u8]> = brands.collect();
        if brands.iter().any(|b| BRANDS.iter().any(|known| known.as_slice() == *b)) {
            return Ok(());
        }
        let named = brands.iter().map(|b| format!("{:?}", String::from_utf8_lossy(b))).collect::<Vec<_>>();
        return Err(BmffError::UnknownBrand(named.join(", ")));
    }
    if !LEADING_BOXES.iter().any(|b| b.as_slice() == kind) {
        return Err(BmffError::NotBmff);
    }
    if kind == b"moov" {
        return Ok(());
    }
    // Padding: the next box must be one a QuickTime file holds.
    let size = usize::try_from(size.ok_or(BmffError::NotBmff)?).map_err(|_| BmffError::NotBmff)?;
    match box_at(head, size) {
        Ok((next, _, _)) if AFTER_PADDING.iter().any(|b| b.as_slice() == next) => Ok(()),
        Ok(_) => Err(BmffError::NotBmff),
        // Padding past the sniffing window (or a file that ends in it) is not a recording.
        Err(_) => Err(BmffError::NotBmff),
    }
}

/// Whether `head` starts with a box header that names an ISO base media box this module knows.
pub fn looks_like_bmff(head: &[u8]) -> bool {
    head.get(4..8).is_some_and(|kind| kind == b"ftyp" || LEADING_BOXES.iter().any(|b| b.as_slice() == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut v = (size as u32).to_be_bytes().to_vec();
        v.extend(b"ftyp");
        v.extend(major);
        v.extend([0, 0, 2, 0]);
        for b in compatible {
            v.extend(*b);
        }
        v.extend([0, 0, 0, 8]);
        v.extend(b"moov");
        v
    }

    #[test]
    fn accepts_mp4_fragmented_mp4_mov_and_m4a_brands() {
        check(&ftyp(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"])).unwrap(); // ffmpeg, Chrome
        check(&ftyp(b"iso5", &[b"iso5", b"iso6", b"mp41"])).unwrap(); // fragmented
        check(&ftyp(b"mp42", &[b"mp41", b"isom"])).unwrap(); // Safari, Android
        check(&ftyp(b"qt  ", &[b"qt  "])).unwrap(); // iPhone MOV
        check(&ftyp(b"M4A ", &[b"M4A ", b"mp42", b"isom"])).unwrap();
        check(&ftyp(b"XXXX", &[b"3gp4"])).unwrap(); // a known compatible brand suffices
    }

    #[test]
    fn accepts_quicktime_without_ftyp() {
        let mut v = vec![0, 0, 0, 8];
        v.extend(b"wide");
        v.extend([0, 0, 0, 16]);
        v.extend(b"mdat");
        check(&v).unwrap();
        let mut moov = vec![0, 0, 0x10, 0];
        moov.extend(b"moovxxxx");
        check(&moov).unwrap();
    }

    #[test]
    fn refuses_other_brands_and_malformed_boxes() {
        assert!(matches!(check(&ftyp(b"heic", &[b"mif1", b"heic"])), Err(BmffError::UnknownBrand(_))));
        assert!(matches!(check(&ftyp(b"avif", &[b"avif", b"mif1"])), Err(BmffError::UnknownBrand(_))));
        let mut bad = ftyp(b"isom", &[]);
        bad[3] = 200; // over MAX_FTYP_LEN... and past the data
        assert_eq!(check(&bad), Err(BmffError::Truncated));
        bad[3] = 255;
        bad[2] = 1;
        assert_eq!(check(&bad), Err(BmffError::Malformed));
        assert_eq!(check(&[0, 0, 0, 4, b'f', b't', b'y', b'p']), Err(BmffError::Malformed));
        assert_eq!(check(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Err(BmffError::NotBmff));
        assert_eq!(check(b"\0\0\0"), Err(BmffError::Truncated));
        let mut free_then_junk = vec![0, 0, 0, 8];
        free_then_junk.extend(b"freejunkjunk");
        assert_eq!(check(&free_then_junk), Err(BmffError::NotBmff));
    }
}
