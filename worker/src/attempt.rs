//! One attempt at one job: claim it, fetch the input into a fresh local job directory (unless
//! it is already a local file), run the transcoder child there, store the output under the
//! attempt's own key, then let [`crate::finish`] record the outcome. A storage failure is the
//! transient `storage_error`.
//!
//! Every write is fenced by the attempt number (see `mediaq_shared::db::jobs`), so a late result
//! can never overwrite a newer attempt's.

use std::{
    ffi::OsString,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use mediaq_shared::{
    db::{attempts, audit, audit::AuditEvent, jobs},
    storage::{Storage, StorageError},
    ErrorInfo, JobId, JobStatus, OutputFacts,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{
    child::{self, Outcome, Report, Watch},
    config::WorkerConfig,
    finish,
    jobdir::JobDir,
    spawn::{self, ChildSpec, Rlimits},
};

/// Progress is written at most this often (plus at 0 and 1).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a finished attempt waits for the database to record its outcome.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);
/// Open files the child may hold (libav needs a handful; threads do not count).
const CHILD_OPEN_FILES: u64 = 64;

pub struct WorkerState {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: WorkerConfig,
    /// Whether the kernel lets the child have its own namespaces (found at start-up).
    pub namespaces: bool,
    /// Becomes true when the shutdown grace period is over: running attempts hand their jobs back.
    pub abandon: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
}

/// A failure that is the worker's (database, storage), not the media's.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] StorageError),
}

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
    if started.budget_used > state.config.retry.max_attempts {
        // Earlier attempts died with their workers and used up the budget: give up.
        let cause = ErrorInfo {
            code: "worker_crashed".into(),
            message: format!("the worker running this job stopped {} times; giving up", started.budget_used - 1),
        };
        finish::fail(&mut tx, &actor, id, attempt, &cause, "not run").await?;
        let end = attempts::AttemptEnd::unmeasured("failed", Some("worker_crashed"), "not run");
        attempts::finish(&mut *tx, id, attempt, &end).await?;
        tx.commit().await?;
        state.metrics.attempt_ended("failed", Some("worker_crashed"), None, None);
        return Ok(());
    }
    audit::record(&mut *tx, &AuditEvent::new(&actor, "job.started").job(id).details(json!({ "attempt": attempt })))
        .await?;
    tx.commit().await?;

    let _running = state.metrics.attempt_running();
    let ended = match execute(state, id, attempt).await {
        Ok(ended) => ended,
        Err(e @ (AttemptError::Storage(_) | AttemptError::Store(_))) => {
            tracing::warn!(error = %e, "storage error during the attempt");
            Ended::failure(ErrorInfo {
                code: "storage_error".into(),
                message: "a storage error interrupted the conversion".into(),
            })
        }
        Err(e) => return Err(e),
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

/// What an attempt produced, before it is recorded.
pub struct Ended {
    /// The stored output, on success.
    pub output: Option<OutputFacts>,
    pub error: Option<ErrorInfo>,
    /// The child's exit and usage, when it ran.
    pub report: Option<Report>,
}

impl Ended {
    fn failure(error: ErrorInfo) -> Self {
        Self { output: None, error: Some(error), report: None }
    }
}

/// Runs the child in a fresh job directory and, on success, stores the output under the
/// attempt's own key.
async fn execute(state: &WorkerState, id: JobId, attempt: i32) -> Result<Ended, AttemptError> {
    let job = jobs::get(&state.pool, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    tracing::info!(input_bytes = job.input.size, "attempt started");
    // Attempt N holds the job now: directories of earlier attempts belong to dead workers.
    let stale = JobDir::remove_stale(state.storage.work_dir(), &format!("{id}-a"))?;
    if stale > 0 {
        tracing::info!(stale, "removed the job directories of earlier attempts");
    }
    let owner = if spawn::is_root() { state.config.sandbox.user } else { None };
    let work = JobDir::create(state.storage.work_dir(), &format!("{id}-a{attempt}-"), owner)?;
    let input = match state.storage.local_path(&job.input.key) {
        Some(stored) => work.input(&stored)?,
        None => {
            let fetched = work.fetched_input_path();
            state.storage.fetch_to(&job.input.key, &fetched).await?;
            work.hand_over(&fetched)?;
            fetched
        }
    };
    let output_path = work.path().join("output.mp4");
    let spec = child_spec(&state.config, state.namespaces, &input, &output_path);
    let progress = progress_writer(state.pool.clone(), id, attempt);
    let stop = stop_signal(state.pool.clone(), id, state.abandon.clone());
    let report = child::run(&spec, watch(&state.config), progress, stop).await?;
    let Outcome::Done(facts) = &report.outcome else {
        let error = describe_failure(&report.outcome);
        return Ok(Ended { output: None, error: Some(error), report: Some(report) });
    };
    let key = Storage::output_key(id, attempt);
    let (size, sha256) = hash_file(&output_path).await?;
    state.storage.put_file(&output_path, &key).await?;
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
    };
    Ok(Ended { output: Some(output), error: None, report: Some(report) })
}

fn describe_failure(outcome: &Outcome) -> ErrorInfo {
    match outcome {
        Outcome::Failed { code, message } => ErrorInfo { code: code.clone(), message: message.clone() },
        other => {
            let (code, message) = other.error().expect("a failure");
            ErrorInfo { code: code.into(), message }
        }
    }
}

/// The child's command line and process limits.
pub fn child_spec(config: &WorkerConfig, namespaces: bool, input: &Path, output: &Path) -> ChildSpec {
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

/// Resolves when the child must stop: the job was canceled (polled twice a second, so the
/// child dies within 2 s), or the worker's shutdown grace period is over.
async fn stop_signal(pool: PgPool, id: JobId, mut abandon: tokio::sync::watch::Receiver<bool>) -> Outcome {
    let canceled = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match jobs::status(&pool, id).await {
                Ok(Some(JobStatus::Canceled)) | Ok(None) => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not check for cancellation"),
            }
        }
    };
    tokio::select! {
        () = canceled => Outcome::Canceled,
        _ = abandon.wait_for(|a| *a) => Outcome::Interrupted,
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

async fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}
