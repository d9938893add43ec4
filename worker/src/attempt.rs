//! One attempt at one job, read top to bottom as five phases:
//!
//! 1. **claim** ([`claim`]): one transaction, fenced by the attempt number;
//! 2. **prepare the input** ([`crate::input::prepare`]): a fresh job directory and the input,
//!    decided once (a file, assembled segments, or a live feed);
//! 3. **run the child** ([`crate::child::run`]): the sandboxed transcoder, which also drives a
//!    live feed and parks an idle one;
//! 4. **collect the output** ([`crate::output::collect`]): checked, hashed, stored;
//! 5. **record** ([`crate::finish::record_durably`]): success, retry, failure, hand-back or park,
//!    through a database outage if need be.
//!
//! A storage failure is the transient `storage_error`. Every write is fenced by the attempt
//! number (see `mediaq_shared::db::jobs`), so a late result can never overwrite a newer
//! attempt's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use mediaq_shared::{
    db::{attempts, audit, audit::AuditEvent, fair, jobs, jobs::Started},
    ErrorInfo, FailureCode, JobId,
};
use serde_json::json;
use sqlx::PgPool;

use crate::{
    child::{self, Outcome},
    child_spec::{child_spec, watch},
    finish::{self, Ended},
    input,
    output::{self, OUTPUT_FILE},
    state::{AttemptError, WorkerState},
};

/// Progress is written at most this often (plus at 0 and 1).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

#[tracing::instrument(name = "attempt", skip_all, fields(job_id = %id, worker = %worker, attempt))]
pub async fn run(state: &Arc<WorkerState>, id: JobId, worker: &str) -> Result<(), AttemptError> {
    let actor = format!("worker:{worker}");
    let Some(started) = claim(state, id, worker, &actor).await? else {
        tracing::info!("job is already finished or gone; nothing to do");
        return Ok(());
    };
    tracing::Span::current().record("attempt", started.attempt);
    let ended = if started.budget_used > state.config.retry.max_attempts {
        // Earlier attempts died with their workers and used up the budget: give up.
        let message = format!("the worker running this job stopped {} times; giving up", started.budget_used - 1);
        Ended::failure(ErrorInfo { code: FailureCode::WorkerCrashed, message })
    } else {
        let _running = state.metrics.attempt_running();
        match convert(state, id, started.attempt).await {
            Ok(ended) => ended,
            Err(e @ (AttemptError::Storage(_) | AttemptError::Store(_))) => {
                tracing::warn!(error = %e, "storage error during the attempt");
                let message = "a storage error interrupted the conversion".into();
                Ended::failure(ErrorInfo { code: FailureCode::StorageError, message })
            }
            Err(e) => return Err(e),
        }
    };
    finish::record_durably(state, &actor, id, started, &ended).await
}

/// Phase 1: attempt N+1 holds the job (`processing`; earlier unfinished attempts become
/// `worker_crashed`), the queue's fair clock moves to it, and `job.started` is audited unless
/// the budget is spent. `None`: the job is finished or gone.
async fn claim(state: &WorkerState, id: JobId, worker: &str, actor: &str) -> Result<Option<Started>, AttemptError> {
    let mut tx = state.pool.begin().await?;
    let Some(started) = jobs::start_attempt(&mut *tx, id).await? else {
        return Ok(None);
    };
    attempts::start(&mut tx, id, started.attempt, worker).await?;
    fair::advance(&mut tx, id).await?;
    if started.budget_used <= state.config.retry.max_attempts {
        let details = json!({ "attempt": started.attempt });
        audit::record(&mut *tx, &AuditEvent::new(actor, "job.started").job(id).details(details)).await?;
    }
    tx.commit().await?;
    Ok(Some(started))
}

/// Phases 2-4: the input, the child, the output.
async fn convert(state: &WorkerState, id: JobId, attempt: i32) -> Result<Ended, AttemptError> {
    let job = jobs::get(&state.pool, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let prepared = input::prepare(state, &job, attempt).await?;
    tracing::info!(input_bytes = job.input.size, live = prepared.is_live(), "attempt started");
    let input::Prepared { work, path, child_input } = prepared;
    let spec = child_spec(&state.config, state.sandbox.namespaces, &path, &work.path().join(OUTPUT_FILE));
    let progress = crate::segments::with_segments(
        progress_writer(state.pool.clone(), id, attempt),
        segment_store(state, id, attempt, work.path(), output::child_uid(spec.user)),
    );
    let ran =
        child::run(&spec, &state.sandbox, watch(&state.config), child_input, progress, stop_signal(state, id)).await;
    let ended = match ran {
        Ok(report) => output::collect(state, id, attempt, work.path(), output::child_uid(spec.user), report).await,
        Err(e) => Err(e.into()),
    };
    input::clean_up(work).await;
    ended
}

/// Where the attempt's stream segments go, when the child writes any (`MEDIAQ_STREAM_SEGMENT_SECONDS`).
fn segment_store(
    state: &WorkerState,
    id: JobId,
    attempt: i32,
    dir: &std::path::Path,
    child_uid: u32,
) -> Option<crate::segments::SegmentStore> {
    let spec = &state.config.transcode;
    (spec.segment_seconds > 0).then(|| {
        let (pool, storage) = (state.pool.clone(), state.storage.clone());
        crate::segments::SegmentStore::new(
            pool,
            storage,
            id,
            attempt,
            dir.to_path_buf(),
            child_uid,
            spec.max_output_bytes,
        )
    })
}

/// Resolves when the child must stop: the job was canceled (heard through LISTEN/NOTIFY), or
/// the worker's shutdown grace period is over.
async fn stop_signal(state: &WorkerState, id: JobId) -> Outcome {
    let mut abandon = state.abandon.clone();
    tokio::select! {
        () = state.cancellations.wait_for(&state.pool, id) => Outcome::Canceled,
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
