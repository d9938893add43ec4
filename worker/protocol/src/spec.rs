//! What the worker decides about a conversion, defined once: the encoder settings and the probe
//! gate's limits. The child parses it from its command line, the worker from `MEDIAQ_*`
//! environment variables (the same clap definitions: the same parsers, ranges and defaults), and
//! [`TranscodeSpec::to_args`] writes it back as the child's flags. No libav here.

use std::ffi::OsString;

use clap::{builder::PossibleValuesParser, Args};
use mediaq_shared::config::{bytes_from_str, duration_from_str};

use crate::EncodeSettings;

/// libx264 presets, fastest first.
pub const PRESETS: [&str; 10] =
    ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];

/// Encoder settings and limits of one conversion.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct TranscodeSpec {
    /// libx264 preset.
    #[arg(long, env = "MEDIAQ_X264_PRESET", default_value = "veryfast", value_parser = PossibleValuesParser::new(PRESETS))]
    pub preset: String,
    /// libx264 constant rate factor.
    #[arg(long, env = "MEDIAQ_X264_CRF", default_value_t = 23, value_parser = clap::value_parser!(u8).range(0..=51))]
    pub crf: u8,
    /// Codec threads: "auto" or a number from 1 to 64.
    #[arg(long, env = "MEDIAQ_TRANSCODE_THREADS", default_value = "auto", value_parser = parse_threads)]
    pub threads: String,
    /// libx264's largest keyframe interval, in frames (0: libx264's own, 250).
    #[arg(long, env = "MEDIAQ_X264_KEYINT", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub keyint: u32,
    /// Seconds per fragmented-MP4 segment written while converting, for playback before the job
    /// is done (HLS); 0 writes none.
    #[arg(long, env = "MEDIAQ_STREAM_SEGMENT_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub segment_seconds: u32,
    /// Largest frame width.
    #[arg(long, env = "MEDIAQ_MAX_WIDTH", default_value_t = 4096)]
    pub max_width: u32,
    /// Largest frame height.
    #[arg(long, env = "MEDIAQ_MAX_HEIGHT", default_value_t = 4096)]
    pub max_height: u32,
    /// Largest frame area in pixels.
    #[arg(long, env = "MEDIAQ_MAX_PIXELS", default_value_t = 3840 * 2160)]
    pub max_pixels: u64,
    /// Longest media duration, in seconds (the environment also takes units: 2h).
    #[arg(long = "max-duration", env = "MEDIAQ_MAX_DURATION", default_value = "7200", value_parser = parse_seconds)]
    pub max_duration_s: u64,
    /// Most streams in the input.
    #[arg(long, env = "MEDIAQ_MAX_STREAMS", default_value_t = 8)]
    pub max_streams: u32,
    /// Highest frame rate.
    #[arg(long, env = "MEDIAQ_MAX_FPS", default_value_t = 240)]
    pub max_fps: u32,
    /// Largest output file, in bytes (the environment also takes units: 4GiB).
    #[arg(long, env = "MEDIAQ_MAX_OUTPUT_BYTES", default_value = "4294967296", value_parser = bytes_from_str)]
    pub max_output_bytes: u64,
    /// CPU seconds allowed per second of media (plus 60 s), set as RLIMIT_CPU once the duration is known.
    #[arg(long, env = "MEDIAQ_CPU_PER_MEDIA_SECOND", default_value_t = 20.0, value_parser = parse_cpu_per_media_second)]
    pub cpu_per_media_second: f64,
}

impl TranscodeSpec {
    /// The child's flags for this spec.
    pub fn to_args(&self) -> Vec<OsString> {
        [
            ("--preset", self.preset.clone()),
            ("--crf", self.crf.to_string()),
            ("--threads", self.threads.clone()),
            ("--keyint", self.keyint.to_string()),
            ("--segment-seconds", self.segment_seconds.to_string()),
            ("--max-width", self.max_width.to_string()),
            ("--max-height", self.max_height.to_string()),
            ("--max-pixels", self.max_pixels.to_string()),
            ("--max-duration", self.max_duration_s.to_string()),
            ("--max-streams", self.max_streams.to_string()),
            ("--max-fps", self.max_fps.to_string()),
            ("--max-output-bytes", self.max_output_bytes.to_string()),
            ("--cpu-per-media-second", self.cpu_per_media_second.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [OsString::from(flag), OsString::from(value)])
        .collect()
    }

    pub fn settings(&self) -> EncodeSettings {
        EncodeSettings {
            preset: self.preset.clone(),
            crf: self.crf,
            threads: self.threads.clone(),
            keyint: self.keyint,
            segment_seconds: self.segment_seconds,
        }
    }
}

fn parse_threads(value: &str) -> Result<String, String> {
    match value.parse::<u32>() {
        _ if value == "auto" => Ok(value.to_string()),
        Ok(n) if (1..=64).contains(&n) => Ok(n.to_string()),
        _ => Err("expected \"auto\" or a number from 1 to 64".to_string()),
    }
}

fn parse_seconds(value: &str) -> Result<u64, String> {
    duration_from_str(value).map(|d| d.as_secs())
}

fn parse_cpu_per_media_second(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err("expected a number of seconds, 0 or more".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Child {
        #[command(flatten)]
        spec: TranscodeSpec,
    }

    fn parse(args: &[OsString]) -> Result<TranscodeSpec, clap::Error> {
        let mut full = vec![OsString::from("mediaq-transcode")];
        full.extend_from_slice(args);
        let mut command = Child::command();
        for arg in TranscodeSpec::augment_args(clap::Command::new("x")).get_arguments() {
            command = command.mut_arg(arg.get_id(), |a| a.env(None::<&str>));
        }
        let matches = command.try_get_matches_from(full)?;
        <TranscodeSpec as clap::FromArgMatches>::from_arg_matches(&matches)
    }

    #[test]
    fn what_the_worker_writes_the_child_reads_back() {
        let spec = TranscodeSpec {
            preset: "slow".into(),
            crf: 30,
            threads: "3".into(),
            keyint: 60,
            segment_seconds: 2,
            max_width: 1280,
            max_height: 720,
            max_pixels: 1280 * 720,
            max_duration_s: 90,
            max_streams: 3,
            max_fps: 60,
            max_output_bytes: 5 << 20,
            cpu_per_media_second: 2.5,
        };
        assert_eq!(parse(&spec.to_args()).unwrap(), spec);
        let defaults = parse(&[]).unwrap();
        assert_eq!(parse(&defaults.to_args()).unwrap(), defaults);
    }

    #[test]
    fn both_sides_refuse_the_same_values() {
        for (flag, bad) in [("--threads", "0"), ("--threads", "65"), ("--crf", "52"), ("--preset", "warp")] {
            assert!(parse(&[flag.into(), bad.into()]).is_err(), "{flag} {bad}");
        }
    }
}
