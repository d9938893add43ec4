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

/// The index of the file's main stream of `kind` (no cover art), as ffprobe numbers them.
pub fn stream_index(path: &Path, kind: &str) -> Option<u64> {
    stream(&ffprobe(path), kind).and_then(|s| s["index"].as_u64())
}

/// ffprobe's decoded frames of one stream: (presentation time, duration) in seconds, in order.
/// ffprobe applies what a player applies: edit lists, AAC priming, Opus pre-skip. `seconds`
/// limits the reading to the file's start when set.
pub fn frame_times(path: &Path, index: u64, seconds: Option<f64>) -> Vec<(f64, f64)> {
    let mut cmd = std::process::Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", &index.to_string()]);
    if let Some(s) = seconds {
        cmd.args(["-read_intervals", &format!("%+{s}")]);
    }
    let out = cmd
        .args(["-show_entries", "stream=sample_rate:frame=best_effort_timestamp_time,pkt_duration_time,nb_samples"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let number = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64());
    let rate = json["streams"][0]["sample_rate"].as_str().and_then(|r| r.parse::<f64>().ok()).filter(|r| *r > 0.0);
    json["frames"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| {
                    let pts = number(&f["best_effort_timestamp_time"])?;
                    // Video: the packet's duration. Audio: samples / rate, or the packet's
                    // duration when shorter (an MP4's last AAC frame decodes whole, but its
                    // sample duration says how much of it is real).
                    let packet = number(&f["pkt_duration_time"]);
                    let duration = match (f["nb_samples"].as_f64(), rate) {
                        (Some(samples), Some(rate)) => packet.map_or(samples / rate, |p| p.min(samples / rate)),
                        _ => packet.unwrap_or(0.0),
                    };
                    Some((pts, duration))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// When the first decoded frame of the file's main video and audio streams is presented.
pub fn first_frames(path: &Path) -> (Option<f64>, Option<f64>) {
    let first = |kind| {
        let index = stream_index(path, kind)?;
        frame_times(path, index, Some(3.0)).first().map(|f| f.0)
    };
    (first("video"), first("audio"))
}

/// Where sound starts after at least 0.2 s of silence (seconds, as played: edit lists applied),
/// by ffprobe's `silencedetect` on the file's audio.
pub fn sound_onsets(path: &Path) -> Vec<f64> {
    let name = path.to_str().expect("UTF-8 path");
    assert!(!name.contains([':', ',', '\'', '\\', '[', ']', ';']), "a path lavfi can take: {name}");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("amovie={name},silencedetect=n=-30dB:d=0.2")])
        .args(["-show_entries", "frame_tags=lavfi.silence_end", "-of", "csv=p=0"])
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}
