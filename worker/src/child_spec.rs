//! The transcoder child's command line, process limits and supervision limits, from the
//! worker's configuration (shared by attempts and the start-up self-check).

use std::{ffi::OsString, path::Path};

use crate::{
    child::Watch,
    config::WorkerConfig,
    spawn::{ChildSpec, Namespaces, Rlimits},
};

/// Open files the child may hold (libav needs a handful; threads do not count).
const CHILD_OPEN_FILES: u64 = 64;
/// RLIMIT_NPROC of the child's user: threads count (every child of this uid on the host together).
const CHILD_TASKS: u64 = 4096;

/// The child's command line and process limits.
pub fn child_spec(config: &WorkerConfig, namespaces: Namespaces, input: &Path, output: &Path) -> ChildSpec {
    let limits = &config.limits;
    let sandbox = &config.sandbox;
    let mut args: Vec<OsString> = vec!["--input".into(), input.into(), "--output".into(), output.into()];
    for (flag, value) in [
        ("--preset", config.encode.preset.clone()),
        ("--crf", config.encode.crf.to_string()),
        ("--threads", config.encode.threads.clone()),
        ("--max-width", limits.max_width.to_string()),
        ("--max-height", limits.max_height.to_string()),
        ("--max-pixels", limits.max_pixels.to_string()),
        ("--max-duration", limits.max_duration_s.to_string()),
        ("--max-streams", limits.max_streams.to_string()),
        ("--max-fps", limits.max_fps.to_string()),
        ("--max-output-bytes", sandbox.max_output_bytes.to_string()),
        ("--cpu-per-media-second", sandbox.cpu_per_media_second.to_string()),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    ChildSpec {
        bin: config.transcode_bin.clone(),
        args,
        limits: Rlimits {
            address_space: sandbox.memory_bytes,
            // A ceiling for the longest accepted media; the child lowers it once it knows the duration.
            cpu_seconds: 60 + (sandbox.cpu_per_media_second * limits.max_duration_s as f64) as u64,
            // Headroom over the output cap so that the child's own check reports it first.
            file_size: sandbox.max_output_bytes + (1 << 20),
            open_files: CHILD_OPEN_FILES,
            processes: CHILD_TASKS,
        },
        user: sandbox.user,
        namespaces,
    }
}

pub fn watch(config: &WorkerConfig) -> Watch {
    Watch {
        timeout: config.transcode_timeout,
        per_media_second: config.sandbox.wall_per_media_second,
        stall: config.sandbox.stall_timeout,
    }
}
