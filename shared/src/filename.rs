//! The client's filename, made safe. It never reaches a storage path (those are server-generated);
//! it is kept for the job record and for the download's Content-Disposition.

use std::fmt;

/// Longest filename kept, in characters (before the extension is re-added for downloads).
const MAX_CHARS: usize = 200;
const FALLBACK: &str = "upload.webm";

/// A sanitized original filename: no path separators, no control characters (NUL, CR, LF...),
/// no reserved names, at most 200 characters, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalFilename(String);

impl OriginalFilename {
    /// Sanitizes whatever the client sent. Never fails: an unusable name becomes `upload.webm`.
    pub fn sanitize(raw: &str) -> Self {
        // Only the last path component counts: "../../etc/passwd" -> "passwd", "C:\\x\\y.webm" -> "y.webm".
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let without_controls: String = last.chars().filter(|c| !c.is_control()).collect();
        // Truncation is ours (it keeps the extension), after sanitizing.
        let options = sanitize_filename::Options { truncate: false, windows: true, replacement: "_" };
        let cleaned = sanitize_filename::sanitize_with_options(without_controls.trim(), options);
        let cleaned = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
        if cleaned.is_empty() || cleaned.chars().all(|c| c == '_') {
            return Self(FALLBACK.to_owned());
        }
        Self(truncate_keeping_extension(cleaned, MAX_CHARS))
    }

    /// Restores a value read back from the database (it was sanitized on the way in).
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The extension, lower-cased, if the name has one (`clip.WebM` -> `webm`).
    pub fn extension(&self) -> Option<String> {
        let (stem, ext) = self.0.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }

    /// The name without its extension (`clip.webm` -> `clip`).
    pub fn stem(&self) -> &str {
        match self.0.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => &self.0,
        }
    }

    /// The download name for the converted file: `clip.webm` -> `clip.mp4`.
    pub fn with_mp4_extension(&self) -> String {
        format!("{}.mp4", self.stem())
    }
}

impl fmt::Display for OriginalFilename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if ext.chars().count() <= 10 && !stem.is_empty() => {
            let keep = max - ext.chars().count() - 1;
            let stem: String = stem.chars().take(keep).collect();
            format!("{stem}.{ext}")
        }
        _ => name.chars().take(max).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_names() {
        assert_eq!(OriginalFilename::sanitize("holiday clip.webm").as_str(), "holiday clip.webm");
    }

    #[test]
    fn strips_directories_and_traversal() {
        assert_eq!(OriginalFilename::sanitize("../../etc/passwd").as_str(), "passwd");
        assert_eq!(OriginalFilename::sanitize("..\\..\\win.webm").as_str(), "win.webm");
        assert_eq!(OriginalFilename::sanitize("../").as_str(), FALLBACK);
        assert_eq!(OriginalFilename::sanitize("..").as_str(), FALLBACK);
    }

    #[test]
    fn removes_nul_and_line_breaks() {
        let name = OriginalFilename::sanitize("a\0b\r\nSet-Cookie: x.webm");
        assert!(!name.as_str().contains(['\0', '\r', '\n']), "{name}");
        assert_eq!(name.as_str(), "abSet-Cookie_ x.webm");
    }

    #[test]
    fn truncates_long_names_keeping_the_extension() {
        let long = format!("{}.webm", "a".repeat(1000));
        let name = OriginalFilename::sanitize(&long);
        assert_eq!(name.as_str().chars().count(), MAX_CHARS);
        assert_eq!(name.extension().as_deref(), Some("webm"));
    }

    #[test]
    fn keeps_unicode() {
        let name = OriginalFilename::sanitize("видео 🎬 café.webm");
        assert_eq!(name.as_str(), "видео 🎬 café.webm");
        assert_eq!(name.with_mp4_extension(), "видео 🎬 café.mp4");
    }

    #[test]
    fn empty_and_reserved_names_fall_back() {
        assert_eq!(OriginalFilename::sanitize("").as_str(), FALLBACK);
        assert_eq!(OriginalFilename::sanitize("   ").as_str(), FALLBACK);
        assert_eq!(OriginalFilename::sanitize("///").as_str(), FALLBACK);
        assert_ne!(OriginalFilename::sanitize("CON").as_str(), "CON");
    }

    #[test]
    fn extension_and_stem() {
        let name = OriginalFilename::sanitize("Clip.WebM");
        assert_eq!(name.extension().as_deref(), Some("webm"));
        assert_eq!(name.stem(), "Clip");
        assert_eq!(OriginalFilename::sanitize("noext").extension(), None);
        assert_eq!(OriginalFilename::sanitize(".hidden").extension(), None);
    }
}
