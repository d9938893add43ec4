//! One attempt at one job: claim it, run the transcoder child, record the outcome.
//!
//! Every write is fenced by the attempt number (see `mediaq_shared::db::jobs`), and the output of
//! attempt N is stored under its own key, so a late result can never overwrite a newer attempt's.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use mediaq_shared::{
    db::{audit, audit::AuditEvent, jobs},
    storage::Storage,
    ErrorInfo, JobId, OutputFacts,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{
    child::{self, Outcome},
    config::WorkerConfig,
};

/// Progress is written at most this often (plus at 0 and 1).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

pub struct WorkerState {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: WorkerConfig,
}

/// A failure that is the worker's (database, storage), not the media's: the task is retried.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

#[tracing::instrument(name = "attempt", skip_all, fields(job_id = %id, worker = %worker, attempt))]
pub async fn run(state: &Arc<WorkerState>, id: JobId, worker: &str) -> Result<(), AttemptError> {
    let actor = format!("worker:{worker}");
    let mut tx = state.pool.begin().await?;
    let Some(attempt) = jobs::start_attempt(&mut *tx, id).await? else {
        tracing::info!("job is already finished or gone; nothing to do");
        return Ok(());
    };
    tracing::Span::current().record("attempt", attempt);
    audit::record(
        &mut *tx,
        &AuditEvent::new(&actor, "job.started")
            .job(id)
            .details(json!({ "attempt": attempt })),
    )
    .await?;
    tx.commit().await?;
    let job = jobs::get(&state.pool, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    tracing::info!(input_bytes = job.input.size, "attempt started");

    let work = tempfile::Builder::new()
        .prefix(&format!("{id}-a{attempt}-"))
        .tempdir_in(state.storage.work_dir())?;
    let output_path = work.path().join("output.mp4");
    let started = Instant::now();
    let outcome = child::run(
        &state.config.transcode_bin,
        &state.storage.path(&job.input.key),
        &output_path,
        &state.config.encode,
        state.config.transcode_timeout,
        progress_writer(state.pool.clone(), id, attempt),
    )
    .await?;
    let elapsed = started.elapsed();

    match outcome {
        Outcome::Done(facts) => {
            let key = format!("outputs/{id}-a{attempt}.mp4");
            let (size, sha256) = hash_file(&output_path).await?;
            state.storage.commit_file(&output_path, &key)?;
            let output = OutputFacts {
                key: key.clone(),
                size_bytes: size,
                sha256,
                duration_s: facts.duration_s,
                width: facts.width,
                height: facts.height,
                video_codec: facts.video_codec,
                audio_codec: facts.audio_codec,
            };
            let mut tx = state.pool.begin().await?;
            if jobs::succeed(&mut *tx, id, attempt, &output).await? {
                let details = json!({ "attempt": attempt, "output_bytes": size, "elapsed_s": elapsed.as_secs_f64() });
                audit::record(
                    &mut *tx,
                    &AuditEvent::new(&actor, "job.succeeded")
                        .job(id)
                        .details(details),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(
                    output_bytes = size,
                    elapsed_s = elapsed.as_secs_f64(),
                    "job succeeded"
                );
            } else {
                drop(tx);
                tracing::warn!("attempt was superseded; discarding its output");
                state.storage.remove(&key)?;
            }
        }
        failure => {
            let error = describe_failure(failure);
            let mut tx = state.pool.begin().await?;
            if jobs::fail(&mut *tx, id, attempt, &error).await? {
                let details =
                    json!({ "attempt": attempt, "code": error.code, "message": error.message });
                audit::record(
                    &mut *tx,
                    &AuditEvent::new(&actor, "job.failed")
                        .job(id)
                        .details(details),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(code = %error.code, message = %error.message, "job failed");
            } else {
                tracing::warn!("attempt was superseded; its failure is not recorded");
            }
        }
    }
    Ok(())
}

fn describe_failure(outcome: Outcome) -> ErrorInfo {
    let (code, message) = match outcome {
        Outcome::Failed { code, message } => (code, message),
        Outcome::TimedOut => (
            "timeout".into(),
            "the conversion took longer than the time limit and was stopped".into(),
        ),
        Outcome::Crashed {
            status,
            stderr_tail,
        } => {
            tracing::warn!(?status, stderr = %stderr_tail, "transcoder crashed");
            let how = status
                .and_then(|s| {
                    std::os::unix::process::ExitStatusExt::signal(&s)
                        .map(|sig| format!("signal {sig}"))
                })
                .or_else(|| {
                    status
                        .and_then(|s| s.code())
                        .map(|c| format!("exit code {c}"))
                })
                .unwrap_or_else(|| "unknown cause".into());
            (
                "transcoder_crashed".into(),
                format!("the converter stopped unexpectedly ({how}); the file may be damaged"),
            )
        }
        Outcome::Done(_) => unreachable!("not a failure"),
    };
    ErrorInfo { code, message }
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
        file.sync_all()?;
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}
