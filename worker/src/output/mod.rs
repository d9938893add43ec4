//! Phase 4 of an attempt: what the child left behind. The child is untrusted, so its MP4 and
//! poster are opened without following links and checked through one descriptor ([`file`],
//! [`poster`]), hashed, and stored under the attempt's own keys; what it says of the media is
//! kept only where it is plausible. The child's own outcome (a failure, a cancel, a park) maps
//! to the attempt's outcome here too, so [`collect`] turns any [`Report`] into an [`Ended`].

pub mod file;
pub mod poster;

use std::path::Path;

use mediaq_protocol::MediaFacts;
use mediaq_shared::{storage::Storage, ErrorInfo, JobId, OutputFacts};

use crate::{
    child::{Outcome, Report},
    child_spec::POSTER_FILE,
    config::WorkerConfig,
    finish::{AttemptOutcome, Ended},
    spawn,
    state::{AttemptError, WorkerState},
};

/// The output's file name in the job directory.
pub const OUTPUT_FILE: &str = "output.mp4";

/// Turns the child's report into the attempt's outcome: on success, the checked output (and
/// poster) stored under the attempt's keys. `child_uid`: the user the child ran as (its files
/// must be that user's).
pub async fn collect(
    state: &WorkerState,
    id: JobId,
    attempt: i32,
    work_dir: &Path,
    child_uid: u32,
    report: Report,
) -> Result<Ended, AttemptError> {
    let claimed = match &report.outcome {
        Outcome::Done(claimed) => claimed.clone(),
        Outcome::Canceled => return Ok(Ended { outcome: AttemptOutcome::Canceled, report: Some(report) }),
        Outcome::Interrupted => return Ok(Ended { outcome: AttemptOutcome::Interrupted, report: Some(report) }),
        Outcome::Parked { fed } => {
            let outcome = AttemptOutcome::Parked { fed: *fed };
            return Ok(Ended { outcome, report: Some(report) });
        }
        failed => {
            let (code, message) = failed.error().expect("a failure");
            let outcome = AttemptOutcome::Failed(ErrorInfo { code, message });
            return Ok(Ended { outcome, report: Some(report) });
        }
    };
    let (path, max) = (work_dir.join(OUTPUT_FILE), state.config.transcode.max_output_bytes);
    let poster_path = work_dir.join(POSTER_FILE);
    let checked = tokio::task::spawn_blocking(move || {
        let mut output = file::open(&path, child_uid, max)?;
        let sha256 = file::sha256(&mut output).map_err(|e| file::Refused::Unreadable(e.to_string()))?;
        let poster = poster::check(&poster_path, child_uid, max)?;
        Ok::<_, file::Refused>((output, sha256, poster))
    })
    .await
    .map_err(std::io::Error::other)?;
    let (output, sha256, poster) = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            tracing::warn!(error = %refused, "the transcoder's output was refused");
            let outcome = AttemptOutcome::Failed(ErrorInfo { code: refused.code(), message: refused.to_string() });
            return Ok(Ended { outcome, report: Some(report) });
        }
    };
    let facts = plausible(&claimed, &state.config);
    let key = Storage::output_key(id, attempt);
    let size = output.size;
    state.storage.put_file(output.file, &key).await?;
    let poster = match poster.filter(|_| facts.video_codec.is_some()) {
        Some(poster) => Some(poster::store(&state.storage, id, attempt, poster).await?),
        None => None,
    };
    let output = OutputFacts {
        key,
        size_bytes: size,
        sha256,
        duration_s: facts.duration_s,
        width: facts.width,
        height: facts.height,
        video_codec: facts.video_codec,
        audio_codec: facts.audio_codec,
        video_path: facts.video_path,
        poster,
    };
    Ok(Ended { outcome: AttemptOutcome::Succeeded(output), report: Some(report) })
}

/// The uid the child runs as under `user` (the sandbox user when the worker is root, else the
/// worker's own).
pub fn child_uid(user: Option<(u32, u32)>) -> u32 {
    match user.filter(|_| spawn::is_root()) {
        Some((uid, _)) => uid,
        // SAFETY: geteuid has no preconditions.
        None => unsafe { libc::geteuid() },
    }
}

/// What the child says of its output, kept only where it is plausible (within the limits, from
/// the codecs it can write); the rest is dropped rather than shown to clients.
fn plausible(claimed: &MediaFacts, config: &WorkerConfig) -> MediaFacts {
    let limits = &config.transcode;
    let codec = |c: &Option<String>, allowed: &[&str]| c.clone().filter(|c| allowed.contains(&c.as_str()));
    MediaFacts {
        duration_s: claimed
            .duration_s
            .filter(|d| d.is_finite() && *d >= 0.0 && *d <= limits.max_duration_s as f64 + 1.0),
        width: claimed.width.filter(|w| *w <= limits.max_width),
        height: claimed.height.filter(|h| *h <= limits.max_height),
        video_codec: codec(&claimed.video_codec, &["h264"]),
        audio_codec: codec(&claimed.audio_codec, &["aac"]),
        video_path: codec(&claimed.video_path, &["transcoded", "remuxed"]),
        ..MediaFacts::default()
    }
}
