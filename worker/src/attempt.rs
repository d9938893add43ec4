//! One attempt at one job: claim it, fetch the input into a fresh local job directory (unless
//! it is already a local file; a resumable upload is instead fed to the child through a pipe as
//! it arrives, see [`crate::feed`]), run the transcoder child there, store the output under the
//! attempt's own key, then let [`crate::finish`] record the outcome (every outcome, the
//! "attempts used up" one included, goes through that one path). A storage failure is the
//! transient `storage_error`.
//!
//! Every write is fenced by the attempt number (see `mediaq_shared::db::jobs`), so a late result
//! can never overwrite a newer attempt's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use mediaq_protocol::MediaFacts;
use mediaq_shared::{
    db::{attempts, audit, audit::AuditEvent, jobs},
    storage::Storage,
    ErrorInfo, FailureCode, JobId, OutputFacts,
};
use serde_json::json;
use sqlx::PgPool;
use tokio::{net::unix::pipe::Sender as Pipe, sync::watch::Sender as WatchSender};

use crate::{
    child::{self, ChildInput, Outcome},
    child_spec::{child_spec, watch, POSTER_FILE},
    config::WorkerConfig,
    feed::{self, FeedClock, FeedEnd},
    finish::{self, AttemptOutcome, Ended},
    jobdir::JobDir,
    output_file, poster, spawn,
    state::{AttemptError, WorkerState},
};

/// Progress is written at most this often (plus at 0 and 1).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a finished attempt waits for the database to record its outcome.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);

#[tracing::instrument(name = "attempt", skip_all, fields(job_id = %id, worker = %worker, attempt))]
pub async fn run(state: &Arc<WorkerState>, id: JobId, worker: &str) -> Result<(), AttemptError> {
    let actor = format!("worker:{worker}");
    let mut tx = state.pool.begin().await?;
    let Some(started) = jobs::start_attempt(&mut *tx, id).await? else {
        tracing::info!("job is already finished or gone; nothing to do");
        return Ok(());
    };
    let attempt = started.attempt;
    tracing::Span::current().record("attempt", attempt);
    attempts::start(&mut tx, id, attempt, worker).await?;
    let exhausted = started.budget_used > state.config.retry.max_attempts;
    if !exhausted {
        let details = json!({ "attempt": attempt });
        audit::record(&mut *tx, &AuditEvent::new(&actor, "job.started").job(id).details(details)).await?;
    }
    tx.commit().await?;

    let ended = if exhausted {
        // Earlier attempts died with their workers and used up the budget: give up.
        let message = format!("the worker running this job stopped {} times; giving up", started.budget_used - 1);
        Ended::failure(ErrorInfo { code: FailureCode::WorkerCrashed, message })
    } else {
        let _running = state.metrics.attempt_running();
        match execute(state, id, attempt).await {
            Ok(ended) => ended,
            Err(e @ (AttemptError::Storage(_) | AttemptError::Store(_))) => {
                tracing::warn!(error = %e, "storage error during the attempt");
                let message = "a storage error interrupted the conversion".into();
                Ended::failure(ErrorInfo { code: FailureCode::StorageError, message })
            }
            Err(e) => return Err(e),
        }
    };
    // The outcome is known (and an output may be stored): keep trying to record it through a
    // database outage rather than leave the job without a terminal state.
    let mut wait = Duration::from_secs(1);
    let deadline = Instant::now() + RECORD_PATIENCE;
    loop {
        match finish::record(state, &actor, id, started, &ended).await {
            Err(AttemptError::Database(e)) if mediaq_shared::db::is_unavailable(&e) && Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "database unavailable; will record the outcome when it is back");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            result => return result,
        }
    }
}

/// Runs the child in a fresh job directory and, on success, stores the output under the
/// attempt's own key.
async fn execute(state: &WorkerState, id: JobId, attempt: i32) -> Result<Ended, AttemptError> {
    let job = jobs::get(&state.pool, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    tracing::info!(input_bytes = job.input.size, "attempt started");
    // File work (removing stale directories, copying the input) runs on the blocking pool.
    let (work_dir, owner) =
        (state.storage.work_dir().to_owned(), state.config.sandbox.user.filter(|_| spawn::is_root()));
    // A resumable upload's segments are fed to the child through a pipe as they arrive; one that
    // is complete already (its SHA-256 is recorded) is put together into a file, so the child can
    // read it twice (the H.264 copy's check does) as it reads any other input.
    let segmented = Storage::is_segmented(&job.input.key);
    let live = segmented && job.input.sha256.is_none();
    let stored = if segmented { None } else { state.storage.local_path(&job.input.key) };
    let (work, input) = blocking(move || {
        // Attempt N holds the job now: directories of earlier attempts belong to dead workers.
        let stale = JobDir::remove_stale(&work_dir, &format!("{id}-a"))?;
        if stale > 0 {
            tracing::info!(stale, "removed the job directories of earlier attempts");
        }
        let work = JobDir::create(&work_dir, &format!("{id}-a{attempt}-"), owner)?;
        let input = stored.map(|stored| work.input(&stored)).transpose()?;
        Ok((work, input))
    })
    .await?;
    let ended = match input {
        _ if live => run_child(state, id, attempt, &work, Source::Upload).await,
        Some(input) => run_child(state, id, attempt, &work, Source::File(input)).await,
        None => {
            let fetched = work.fetched_input_path();
            // (S3: the fetch writes through tokio's file API; the ownership change is two calls.)
            let fetch = async {
                if segmented {
                    feed::assemble(state, id, job.input.size, &fetched).await
                } else {
                    state.storage.fetch_to(&job.input.key, &fetched).await.map_err(AttemptError::from)
                }
            };
            match fetch.await {
                Ok(()) => match work.hand_over(&fetched) {
                    Ok(()) => run_child(state, id, attempt, &work, Source::File(fetched)).await,
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e),
            }
        }
    };
    // Removing the directory (remove_dir_all) is file work too.
    let _ = blocking(move || {
        drop(work);
        Ok(())
    })
    .await;
    ended
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

/// Where the child reads the job's input.
enum Source {
    /// A local file (the stored input, or a copy).
    File(std::path::PathBuf),
    /// Its stdin, fed from the upload's segments as they arrive ([`crate::feed`]).
    Upload,
}

/// Runs the child on `source` in `work` and, on success, stores its output.
async fn run_child(
    state: &WorkerState,
    id: JobId,
    attempt: i32,
    work: &JobDir,
    source: Source,
) -> Result<Ended, AttemptError> {
    let output_path = work.path().join("output.mp4");
    let (input, child_input, feeder) = match source {
        Source::File(path) => (path, ChildInput::Named, None),
        Source::Upload => {
            let (read_end, pipe) = feed::pipe()?;
            let (clock, clock_rx) = tokio::sync::watch::channel(FeedClock::new());
            let input = ChildInput::Pipe { read_end, clock: clock_rx };
            (std::path::PathBuf::from(mediaq_protocol::STDIN_INPUT), input, Some((pipe, clock)))
        }
    };
    let spec = child_spec(&state.config, state.sandbox.namespaces, &input, &output_path);
    let progress = progress_writer(state.pool.clone(), id, attempt);
    let stop = stop_signal(state, id, feeder);
    let report =
        child::run_with_input(&spec, &state.sandbox, watch(&state.config), child_input, progress, stop).await?;
    let claimed = match &report.outcome {
        Outcome::Done(claimed) => claimed.clone(),
        Outcome::Canceled => return Ok(Ended { outcome: AttemptOutcome::Canceled, report: Some(report) }),
        Outcome::Interrupted => return Ok(Ended { outcome: AttemptOutcome::Interrupted, report: Some(report) }),
        failed => {
            let (code, message) = failed.error().expect("a failure");
            let outcome = AttemptOutcome::Failed(ErrorInfo { code, message });
            return Ok(Ended { outcome, report: Some(report) });
        }
    };
    // The child is gone; what it left is checked, hashed and stored through one descriptor.
    let owner = match spec.user.filter(|_| spawn::is_root()) {
        Some((uid, _)) => uid,
        // SAFETY: geteuid has no preconditions.
        None => unsafe { libc::geteuid() },
    };
    let (path, max) = (output_path.clone(), state.config.transcode.max_output_bytes);
    let poster_path = work.path().join(POSTER_FILE);
    let checked = tokio::task::spawn_blocking(move || {
        let mut output = output_file::open(&path, owner, max)?;
        let sha256 = output_file::sha256(&mut output).map_err(|e| output_file::Refused::Unreadable(e.to_string()))?;
        let poster = poster::check(&poster_path, owner, max)?;
        Ok::<_, output_file::Refused>((output, sha256, poster))
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
        video_codec: facts.video_codec.clone(),
        audio_codec: facts.audio_codec.clone(),
        video_path: facts.video_path.clone(),
        poster,
    };
    Ok(Ended { outcome: AttemptOutcome::Succeeded(output), report: Some(report) })
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

/// Resolves when the child must stop: the job was canceled (heard through LISTEN/NOTIFY), the
/// worker's shutdown grace period is over, or feeding an upload failed or found it ended. While
/// it is pending, it also feeds the upload (if any) into the child's pipe.
async fn stop_signal(state: &WorkerState, id: JobId, feeder: Option<(Pipe, WatchSender<FeedClock>)>) -> Outcome {
    let mut abandon = state.abandon.clone();
    let fed = async {
        let Some((pipe, clock)) = feeder else { return std::future::pending().await };
        match feed::feed(state, id, pipe, clock).await {
            // The child reads to the end, or has ended: its own outcome tells.
            FeedEnd::Complete | FeedEnd::ChildGone => std::future::pending().await,
            // Abandoned or canceled: that outcome is already recorded.
            FeedEnd::Ended => Outcome::Canceled,
            FeedEnd::Failed(why) => {
                tracing::warn!(%why, "could not feed the upload to the transcoder");
                Outcome::InputFailed(why)
            }
        }
    };
    tokio::select! {
        () = state.cancellations.wait_for(&state.pool, id) => Outcome::Canceled,
        _ = abandon.wait_for(|a| *a) => Outcome::Interrupted,
        outcome = fed => outcome,
    }
}

/// A progress callback that writes at most once per second, and always the final 1.0.
fn progress_writer(
    pool: PgPool,
    id: JobId,
    attempt: i32,
) -> impl FnMut(f64) -> futures_util::future::BoxFuture<'static, ()> {
    let mut last_write: Option<Instant> = None;
    move |progress| {
        let due = progress >= 1.0 || last_write.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL);
        if !due {
            return futures_util::future::ready(()).boxed();
        }
        last_write = Some(Instant::now());
        let pool = pool.clone();
        async move {
            if let Err(e) = jobs::set_progress(&pool, id, attempt, progress as f32).await {
                tracing::warn!(error = %e, "could not record progress");
            }
        }
        .boxed()
    }
}
