//! Recording how an attempt ended: success, a retry scheduled with backoff, or failure.
//! Every write is fenced by the attempt number; the attempt's usage goes to `job_attempts`.

use std::sync::Arc;

use mediaq_shared::{
    db::{attempts, attempts::AttemptEnd, audit, audit::AuditEvent, jobs, jobs::Started},
    queue::{self, TranscodeTask},
    ErrorInfo, FailureCode, JobId, OutputFacts,
};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{
    child::Report,
    state::{AttemptError, WorkerState},
};

/// How an attempt ended.
#[derive(Debug)]
pub enum AttemptOutcome {
    /// The output is stored under the attempt's own key.
    Succeeded(OutputFacts),
    /// The job failed this attempt: retried when the cause is transient and attempts remain.
    Failed(ErrorInfo),
    /// The job was canceled while the child ran; the child was stopped.
    Canceled,
    /// The worker is shutting down: the job goes back to the queue without spending an attempt.
    Interrupted,
}

/// What an attempt produced, before it is recorded.
#[derive(Debug)]
pub struct Ended {
    pub outcome: AttemptOutcome,
    /// The child's exit and usage, when it ran.
    pub report: Option<Report>,
}

impl Ended {
    /// A failure without a child run to report.
    pub fn failure(error: ErrorInfo) -> Self {
        Self { outcome: AttemptOutcome::Failed(error), report: None }
    }
}

/// Records how an attempt ended, in one transaction: the job row (fenced by the attempt), the
/// audit trail, the queue (retry or hand-back), the attempt's row and usage, then the metrics.
pub async fn record(
    state: &Arc<WorkerState>,
    actor: &str,
    id: JobId,
    started: Started,
    ended: &Ended,
) -> Result<(), AttemptError> {
    let attempt = started.attempt;
    let exit = ended.report.as_ref().map_or("not run".to_owned(), |r| r.exit.clone());
    let mut tx = state.pool.begin().await?;
    let (label, code) = match &ended.outcome {
        AttemptOutcome::Succeeded(output) => (succeed(&mut tx, state, actor, id, attempt, output).await?, None),
        AttemptOutcome::Canceled => {
            tracing::info!("job canceled; its transcoder was stopped");
            ("canceled", None)
        }
        AttemptOutcome::Interrupted => (hand_back(&mut tx, actor, id, attempt).await?, None),
        AttemptOutcome::Failed(error) => {
            let policy = &state.config.retry;
            let label = if policy.is_transient(error.code) && started.budget_used < policy.max_attempts {
                retry(&mut tx, actor, id, attempt, error, policy.delay(started.budget_used)).await?
            } else {
                fail(&mut tx, actor, id, attempt, error, &exit).await?
            };
            (label, Some(error.code.as_str()))
        }
    };
    let end = match &ended.report {
        Some(report) => AttemptEnd {
            outcome: label,
            error_code: code,
            exit_status: &report.exit,
            wall_s: report.wall.as_secs_f64(),
            user_cpu_s: report.usage.user_cpu.as_secs_f64(),
            system_cpu_s: report.usage.system_cpu.as_secs_f64(),
            peak_rss_bytes: report.usage.peak_rss_bytes,
        },
        None => AttemptEnd::unmeasured(label, code, &exit),
    };
    attempts::finish(&mut *tx, id, attempt, &end).await?;
    tx.commit().await?;
    let media_s = match &ended.outcome {
        AttemptOutcome::Succeeded(output) => output.duration_s,
        _ => None,
    };
    state.metrics.attempt_ended(label, code, ended.report.as_ref().map(|r| r.wall), media_s);
    Ok(())
}

async fn succeed(
    tx: &mut Transaction<'static, Postgres>,
    state: &WorkerState,
    actor: &str,
    id: JobId,
    attempt: i32,
    output: &OutputFacts,
) -> Result<&'static str, AttemptError> {
    if !jobs::succeed(&mut **tx, id, attempt, output).await? {
        tracing::warn!("attempt was superseded; discarding its output");
        if let Err(e) = state.storage.delete(&output.key).await {
            // The janitor removes it later (an unreferenced object).
            tracing::warn!(error = %e, key = %output.key, "could not delete a superseded output");
        }
        return Ok("superseded");
    }
    let details = json!({ "attempt": attempt, "output_bytes": output.size_bytes });
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.succeeded").job(id).details(details)).await?;
    tracing::info!(output_bytes = output.size_bytes, "job succeeded");
    Ok("succeeded")
}

async fn retry(
    tx: &mut Transaction<'static, Postgres>,
    actor: &str,
    id: JobId,
    attempt: i32,
    cause: &ErrorInfo,
    delay: std::time::Duration,
) -> Result<&'static str, AttemptError> {
    let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    if !jobs::schedule_retry(&mut **tx, id, attempt, cause, at).await? {
        return Ok("superseded");
    }
    let conn: &mut PgConnection = tx;
    queue::enqueue(conn, TranscodeTask { job_id: id }, Some(std::time::SystemTime::from(at))).await?;
    let details = json!({ "attempt": attempt, "code": cause.code, "message": cause.message, "retry_at": at });
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.retry_scheduled").job(id).details(details)).await?;
    tracing::info!(code = %cause.code, retry_in_s = delay.as_secs_f64(), "transient failure; retry scheduled");
    Ok("failed")
}

/// Shutdown: the job goes back to the queue for immediate re-claim by another worker, and the
/// interrupted attempt does not count against its retry budget.
async fn hand_back(
    tx: &mut Transaction<'static, Postgres>,
    actor: &str,
    id: JobId,
    attempt: i32,
) -> Result<&'static str, AttemptError> {
    if !jobs::hand_back(&mut **tx, id, attempt).await? {
        return Ok("superseded");
    }
    let conn: &mut PgConnection = tx;
    queue::enqueue(conn, TranscodeTask { job_id: id }, None).await?;
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.handed_back").job(id).details(json!({ "attempt": attempt })))
        .await?;
    tracing::info!("shutting down: job handed back to the queue");
    Ok("interrupted")
}

async fn fail(
    tx: &mut Transaction<'static, Postgres>,
    actor: &str,
    id: JobId,
    attempt: i32,
    error: &ErrorInfo,
    exit: &str,
) -> Result<&'static str, AttemptError> {
    if !jobs::fail(&mut **tx, id, attempt, error).await? {
        tracing::warn!("attempt was superseded; its failure is not recorded");
        return Ok("superseded");
    }
    let details = json!({ "attempt": attempt, "code": error.code, "message": error.message, "exit": exit });
    if error.code == FailureCode::SandboxViolation {
        audit::record(&mut **tx, &AuditEvent::new(actor, "sandbox.violation").job(id).details(details.clone())).await?;
    }
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.failed").job(id).details(details)).await?;
    tracing::info!(code = %error.code, message = %error.message, "job failed");
    Ok("failed")
}
