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

/// The poster's file name in the job directory, beside the output.
pub const POSTER_FILE: &str = "poster.jpg";

/// The child's command line and process limits.
pub fn child_spec(config: &WorkerConfig, namespaces: Namespaces, input: &Path, output: &Path) -> ChildSpec {
    let (spec, sandbox) = (&config.transcode, &config.sandbox);
    let poster = output.with_file_name(POSTER_FILE);
    let mut args: Vec<OsString> =
        vec!["--input".into(), input.into(), "--output".into(), output.into(), "--poster".into(), poster.into()];
    args.extend(spec.to_args());
    ChildSpec {
        bin: config.transcode_bin.clone(),
        args,
        limits: Rlimits {
            address_space: sandbox.memory_bytes,
            // A ceiling for the longest accepted media; the child lowers it once it knows the duration.
            cpu_seconds: 60 + (spec.cpu_per_media_second * spec.max_duration_s as f64) as u64,
            // Headroom over the output cap so that the child's own check reports it first.
            file_size: spec.max_output_bytes + (1 << 20),
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
        idle_gap: config.live_idle_gap,
        live_max: config.live_attempt_max,
    }
}
