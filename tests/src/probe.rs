//! ffprobe, the independent oracle for every output check.

use std::path::Path;

use serde_json::Value;

pub fn ffprobe(path: &Path) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind && s["disposition"]["attached_pic"] != 1)
}

pub fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(f64::NAN)
}

/// Duration of the input as the sum of its best stream's packets (live files have no header duration).
pub fn decoded_duration(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut end: f64 = 0.0;
    for line in text.lines() {
        let mut it = line.split(',');
        let pts: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let dur: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        end = end.max(pts + dur);
    }
    end
}

/// Top-level MP4 box types in order (to check `moov` precedes `mdat`: faststart).
pub fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let size32 = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&bytes[pos + 4..pos + 8]).into_owned();
        let size = match size32 {
            1 if pos + 16 <= bytes.len() => u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap()),
            0 => (bytes.len() - pos) as u64,
            s => s,
        };
        out.push(kind);
        if size < 8 {
            break;
        }
        pos += size as usize;
    }
    out
}
