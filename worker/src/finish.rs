//! Recording how an attempt ended: success, a retry scheduled with backoff, or failure.
//! Every write is fenced by the attempt number; the attempt's usage goes to `job_attempts`.

use std::sync::Arc;

use mediaq_shared::{
    db::{attempts, attempts::AttemptEnd, audit, audit::AuditEvent, jobs, jobs::Started},
    queue::{self, TranscodeTask},
    ErrorInfo, JobId,
};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::attempt::{AttemptError, Ended, WorkerState};

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
    let (outcome, code) = if let Some(output) = &ended.output {
        if jobs::succeed(&mut *tx, id, attempt, output).await? {
            let details = json!({ "attempt": attempt, "output_bytes": output.size_bytes });
            audit::record(&mut *tx, &AuditEvent::new(actor, "job.succeeded").job(id).details(details)).await?;
            tracing::info!(output_bytes = output.size_bytes, "job succeeded");
            ("succeeded", None)
        } else {
            tracing::warn!("attempt was superseded; discarding its output");
            if let Err(e) = state.storage.delete(&output.key).await {
                // The janitor removes it later (an unreferenced object).
                tracing::warn!(error = %e, key = %output.key, "could not delete a superseded output");
            }
            ("superseded", None)
        }
    } else {
        let error = ended.error.clone().expect("an attempt without output has an error");
        let policy = &state.config.retry;
        let label = if error.code == "canceled" {
            tracing::info!("job canceled; its transcoder was stopped");
            "canceled"
        } else if error.code == "interrupted" {
            hand_back(&mut tx, actor, id, attempt).await?
        } else if policy.is_transient(&error.code) && started.budget_used < policy.max_attempts {
            retry(&mut tx, actor, id, attempt, &error, policy.delay(started.budget_used)).await?
        } else {
            fail(&mut tx, actor, id, attempt, &error, &exit).await?
        };
        (label, Some(error.code))
    };
    let media_s = ended.output.as_ref().and_then(|o| o.duration_s);
    let wall = ended.report.as_ref().map(|r| r.wall);
    if let Some(report) = &ended.report {
        let end = AttemptEnd {
            outcome,
            error_code: code.as_deref(),
            exit_status: &report.exit,
            wall_s: report.wall.as_secs_f64(),
            user_cpu_s: report.usage.user_cpu.as_secs_f64(),
            system_cpu_s: report.usage.system_cpu.as_secs_f64(),
            peak_rss_bytes: report.usage.peak_rss_bytes,
        };
        attempts::finish(&mut *tx, id, attempt, &end).await?;
    } else {
        attempts::finish(&mut *tx, id, attempt, &AttemptEnd::unmeasured(outcome, code.as_deref(), &exit)).await?;
    }
    tx.commit().await?;
    state.metrics.attempt_ended(outcome, code.as_deref(), wall, media_s);
    Ok(())
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
    queue::enqueue(conn, TranscodeTask { job_id: id }, Some(std::time::SystemTime::from(at))).await.map_err(
        |e| match e {
            apalis_postgres::Error::Database(e) => AttemptError::Database(e),
            other => AttemptError::Database(sqlx::Error::Protocol(other.to_string())),
        },
    )?;
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
    queue::enqueue(conn, TranscodeTask { job_id: id }, None).await.map_err(queue_error)?;
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.handed_back").job(id).details(json!({ "attempt": attempt })))
        .await?;
    tracing::info!("shutting down: job handed back to the queue");
    Ok("interrupted")
}

fn queue_error(e: apalis_postgres::Error) -> AttemptError {
    match e {
        apalis_postgres::Error::Database(e) => AttemptError::Database(e),
        other => AttemptError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

pub async fn fail(
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
    if error.code == "sandbox_violation" {
        audit::record(&mut **tx, &AuditEvent::new(actor, "sandbox.violation").job(id).details(details.clone())).await?;
    }
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.failed").job(id).details(details)).await?;
    tracing::info!(code = %error.code, message = %error.message, "job failed");
    Ok("failed")
}
