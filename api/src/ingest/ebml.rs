//! Reads the DocType from an EBML header (the first element of every Matroska/WebM file).
//!
//! Only the header is parsed: the API never looks further into media (decoding is the sandboxed
//! transcoder's job).

/// ID of the EBML header element.
const EBML_HEADER: u32 = 0x1A45_DFA3;
/// ID of the DocType element inside it.
const DOC_TYPE: u32 = 0x4282;
/// Longest DocType accepted (real ones are "webm" and "matroska").
const MAX_DOC_TYPE_LEN: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EbmlError {
    #[error("the file does not start with an EBML header")]
    NotEbml,
    #[error("the EBML header is cut short")]
    Truncated,
    #[error("the EBML header is malformed")]
    Malformed,
    #[error("the EBML header has no DocType")]
    NoDocType,
}

/// Returns the header's DocType with trailing NULs removed (GStreamer writes `webm\0`).
pub fn doc_type(bytes: &[u8]) -> Result<String, EbmlError> {
    let mut cursor = Cursor { bytes, pos: 0 };
    let id = cursor.element_id().map_err(|e| if e == EbmlError::Truncated { e } else { EbmlError::NotEbml })?;
    if id != EBML_HEADER {
        return Err(EbmlError::NotEbml);
    }
    let size = cursor.size()?.ok_or(EbmlError::Malformed)?;
    let end =
        cursor.pos.checked_add(usize::try_from(size).map_err(|_| EbmlError::Malformed)?).ok_or(EbmlError::Malformed)?;
    while cursor.pos < end {
        let id = cursor.element_id()?;
        let size = cursor.size()?.ok_or(EbmlError::Malformed)?;
        let len = usize::try_from(size).map_err(|_| EbmlError::Malformed)?;
        let body_end = cursor.pos.checked_add(len).ok_or(EbmlError::Malformed)?;
        if body_end > end {
            return Err(EbmlError::Malformed);
        }
        if id == DOC_TYPE {
            if size > MAX_DOC_TYPE_LEN {
                return Err(EbmlError::Malformed);
            }
            let raw = cursor.take(len)?;
            let trimmed = raw.iter().rposition(|&b| b != 0).map_or(&raw[..0], |last| &raw[..=last]);
            return std::str::from_utf8(trimmed)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned)
                .ok_or(EbmlError::Malformed);
        }
        cursor.take(len)?;
    }
    Err(EbmlError::NoDocType)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, EbmlError> {
        let b = *self.bytes.get(self.pos).ok_or(EbmlError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], EbmlError> {
        let end = self.pos.checked_add(len).ok_or(EbmlError::Malformed)?;
        let slice = self.bytes.get(self.pos..end).ok_or(EbmlError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    /// Reads a variable-length integer: returns (value without the length marker, length, all ones).
    fn vint(&mut self, max_len: u32) -> Result<(u64, u32, bool), EbmlError> {
        let first = self.byte()?;
        let len = first.leading_zeros() + 1;
        if len > max_len {
            return Err(EbmlError::Malformed);
        }
        let mut value = u64::from(first) & (0xFF >> len);
        for _ in 1..len {
            value = (value << 8) | u64::from(self.byte()?);
        }
        let all_ones = value == (1u64 << (7 * len)) - 1;
        Ok((value, len, all_ones))
    }

    /// Element IDs keep their marker bit (as in the Matroska spec: 0x1A45DFA3).
    fn element_id(&mut self) -> Result<u32, EbmlError> {
        let (value, len, _) = self.vint(4)?;
        Ok((value | (1u64 << (7 * len))) as u32)
    }

    /// Element sizes; `None` for the reserved "unknown size" value.
    fn size(&mut self) -> Result<Option<u64>, EbmlError> {
        let (value, _, all_ones) = self.vint(8)?;
        Ok((!all_ones).then_some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EBML header holding `children`.
    fn header(children: &[u8]) -> Vec<u8> {
        let mut v = vec![0x1A, 0x45, 0xDF, 0xA3, 0x80 | children.len() as u8];
        v.extend_from_slice(children);
        v
    }

    fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.push(0x80 | body.len() as u8);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_webm_doc_type() {
        let mut children = element(&[0x42, 0x86], &[1]);
        children.extend(element(&[0x42, 0x82], b"webm"));
        children.extend(element(&[0x42, 0x87], &[4]));
        assert_eq!(doc_type(&header(&children)).unwrap(), "webm");
    }

    #[test]
    fn reads_matroska_and_strips_trailing_nul() {
        assert_eq!(doc_type(&header(&element(&[0x42, 0x82], b"matroska"))).unwrap(), "matroska");
        assert_eq!(doc_type(&header(&element(&[0x42, 0x82], b"webm\0"))).unwrap(), "webm");
    }

    #[test]
    fn accepts_multi_byte_sizes() {
        // Size 0x4004 = 4 as a two-byte vint, as some muxers write.
        let mut v = vec![0x1A, 0x45, 0xDF, 0xA3, 0x40, 0x07];
        v.extend([0x42, 0x82, 0x40, 0x04]);
        v.extend(b"webm");
        v.truncate(6 + 8);
        // Header says 7 bytes of children but the DocType element is 8 bytes: malformed.
        assert_eq!(doc_type(&v), Err(EbmlError::Malformed));
        v[5] = 0x08;
        assert_eq!(doc_type(&v).unwrap(), "webm");
    }

    #[test]
    fn rejects_other_files() {
        assert_eq!(doc_type(b"\x89PNG\r\n\x1a\n"), Err(EbmlError::NotEbml));
        assert_eq!(doc_type(b"\0\0\0\x18ftypmp42"), Err(EbmlError::NotEbml));
        assert_eq!(doc_type(b""), Err(EbmlError::Truncated));
        assert_eq!(doc_type(&[0x1A, 0x45]), Err(EbmlError::Truncated));
    }

    #[test]
    fn missing_doc_type_and_truncation() {
        assert_eq!(doc_type(&header(&element(&[0x42, 0x86], &[1]))), Err(EbmlError::NoDocType));
        let full = header(&element(&[0x42, 0x82], b"webm"));
        assert_eq!(doc_type(&full[..full.len() - 2]), Err(EbmlError::Truncated));
    }

    #[test]
    fn rejects_garbage_doc_types_and_sizes() {
        assert_eq!(doc_type(&header(&element(&[0x42, 0x82], b"\x01\x02"))), Err(EbmlError::Malformed));
        // Unknown-size header.
        assert_eq!(doc_type(&[0x1A, 0x45, 0xDF, 0xA3, 0xFF]), Err(EbmlError::Malformed));
        // An ID byte with no length marker.
        assert_eq!(doc_type(&[0x00, 0x00, 0x00, 0x00]), Err(EbmlError::NotEbml));
    }
}
