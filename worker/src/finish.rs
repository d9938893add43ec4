//! Phase 5 of an attempt: recording how it ended. [`decide`] is the pure rule (success, a
//! retry with backoff, failure, a hand-back, a park); [`record_durably`] writes it in one
//! transaction, retried through a database outage, so no job is left without its outcome.
//! Every write is fenced by the attempt number; the attempt's usage goes to `job_attempts`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mediaq_shared::{
    db::{attempts, attempts::AttemptEnd, audit, audit::AuditEvent, jobs, jobs::Started},
    queue::{self, Lane},
    ErrorInfo, FailureCode, JobId, OutputFacts,
};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{
    child::Report,
    retry::RetryPolicy,
    state::{AttemptError, WorkerState},
};

/// How long a finished attempt waits for the database to record its outcome.
const RECORD_PATIENCE: Duration = Duration::from_secs(600);

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
    /// The upload fed to the child sent nothing for the idle gap: the slot is handed back and the
    /// job waits for bytes (`fed`: how many the child had), without spending an attempt.
    Parked { fed: u64 },
}

/// What to write for an outcome: the pure part of recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Succeed,
    /// Transient, with attempts left: again after this delay.
    Retry(Duration),
    Fail,
    /// Canceled: the API already recorded it.
    Nothing,
    HandBack,
    Park {
        fed: u64,
    },
}

/// The rule: a failure is retried when its code is transient and the budget (`budget_used`
/// attempts of `policy.max_attempts`, this one included) is not spent; the worker's own stops
/// (shutdown, an idle upload) cost no attempt.
pub fn decide(outcome: &AttemptOutcome, budget_used: i32, policy: &RetryPolicy) -> Decision {
    match outcome {
        AttemptOutcome::Succeeded(_) => Decision::Succeed,
        AttemptOutcome::Canceled => Decision::Nothing,
        AttemptOutcome::Interrupted => Decision::HandBack,
        AttemptOutcome::Parked { fed } => Decision::Park { fed: *fed },
        AttemptOutcome::Failed(error) if policy.is_transient(error.code) && budget_used < policy.max_attempts => {
            Decision::Retry(policy.delay(budget_used))
        }
        AttemptOutcome::Failed(_) => Decision::Fail,
    }
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

/// Records how an attempt ended ([`record`]), trying again through a database outage for up to
/// [`RECORD_PATIENCE`]: the outcome is known (and an output may be stored), so the job must not
/// be left without it.
pub async fn record_durably(
    state: &Arc<WorkerState>,
    actor: &str,
    id: JobId,
    started: Started,
    ended: &Ended,
) -> Result<(), AttemptError> {
    let mut wait = Duration::from_secs(1);
    let deadline = Instant::now() + RECORD_PATIENCE;
    loop {
        match record(state, actor, id, started, ended).await {
            Err(AttemptError::Database(e)) if mediaq_shared::db::is_unavailable(&e) && Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "database unavailable; will record the outcome when it is back");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            result => return result,
        }
    }
}

/// Records how an attempt ended, in one transaction: the job row (fenced by the attempt), the
/// audit trail, the queue (retry, hand-back or park), the attempt's row and usage, then the metrics.
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
    let code = match &ended.outcome {
        AttemptOutcome::Failed(error) => Some(error.code.as_str()),
        _ => None,
    };
    let label = match (decide(&ended.outcome, started.budget_used, &state.config.retry), &ended.outcome) {
        (Decision::Succeed, AttemptOutcome::Succeeded(output)) => {
            succeed(&mut tx, state, actor, id, attempt, output).await?
        }
        (Decision::Retry(delay), AttemptOutcome::Failed(error)) => {
            retry(&mut tx, actor, id, attempt, error, delay).await?
        }
        (_, AttemptOutcome::Failed(error)) => fail(&mut tx, actor, id, attempt, error, &exit).await?,
        (Decision::HandBack, _) => hand_back(&mut tx, actor, id, attempt).await?,
        (Decision::Park { fed }, _) => park(&mut tx, actor, id, attempt, fed).await?,
        _ => {
            tracing::info!("job canceled; its transcoder was stopped");
            "canceled"
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
    let Some(status) = jobs::schedule_retry(&mut **tx, id, attempt, cause, at).await? else {
        return Ok("superseded");
    };
    let conn: &mut PgConnection = tx;
    queue::enqueue(conn, id, Lane::for_status(status), Some(at)).await?;
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
    let Some(status) = jobs::hand_back(&mut **tx, id, attempt).await? else {
        return Ok("superseded");
    };
    let conn: &mut PgConnection = tx;
    queue::enqueue(conn, id, Lane::for_status(status), None).await?;
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.handed_back").job(id).details(json!({ "attempt": attempt })))
        .await?;
    tracing::info!("shutting down: job handed back to the queue");
    Ok("interrupted")
}

/// An idle upload: the job waits for bytes without a slot (`receiving`, out of the queue); the
/// upload's next PATCH queues it again. When bytes arrived (or the upload completed) since the
/// child was fed, it is queued again at once instead.
async fn park(
    tx: &mut Transaction<'static, Postgres>,
    actor: &str,
    id: JobId,
    attempt: i32,
    fed: u64,
) -> Result<&'static str, AttemptError> {
    let Some(parked) = jobs::park(tx, id, attempt, fed).await? else {
        return Ok("superseded");
    };
    let conn: &mut PgConnection = tx;
    if let Some(status) = parked.requeue {
        queue::enqueue(conn, id, Lane::for_status(status), None).await?;
    }
    let details = json!({ "attempt": attempt, "fed_bytes": fed, "requeued": parked.requeue.is_some() });
    audit::record(&mut **tx, &AuditEvent::new(actor, "job.parked").job(id).details(details)).await?;
    tracing::info!(fed, requeued = parked.requeue.is_some(), "the upload went idle: slot handed back");
    Ok("parked")
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

#[cfg(test)]
mod tests {
    use mediaq_shared::{ErrorInfo, FailureCode};

    use super::*;

    fn failed(code: FailureCode) -> AttemptOutcome {
        AttemptOutcome::Failed(ErrorInfo { code, message: String::new() })
    }

    #[test]
    fn the_decision_table() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            retry_timeouts: false,
        };
        let max = policy.max_attempts;
        let table: Vec<(AttemptOutcome, i32, Decision)> = vec![
            (AttemptOutcome::Succeeded(sample()), 1, Decision::Succeed),
            (AttemptOutcome::Succeeded(sample()), max, Decision::Succeed),
            (AttemptOutcome::Canceled, 1, Decision::Nothing),
            (AttemptOutcome::Interrupted, max, Decision::HandBack),
            (AttemptOutcome::Parked { fed: 7 }, max, Decision::Park { fed: 7 }),
            // Transient with budget left: retried; the last attempt fails for good.
            (failed(FailureCode::StorageError), 1, Decision::Retry(policy.delay(1))),
            (failed(FailureCode::StorageError), max - 1, Decision::Retry(policy.delay(max - 1))),
            (failed(FailureCode::StorageError), max, Decision::Fail),
            (failed(FailureCode::WorkerCrashed), 1, Decision::Retry(policy.delay(1))),
            // The media's own failures are never retried.
            (failed(FailureCode::UnsupportedCodec), 1, Decision::Fail),
            (failed(FailureCode::InvalidMedia), 1, Decision::Fail),
            (failed(FailureCode::SandboxViolation), 1, Decision::Fail),
            // Timeouts only when the policy says so.
            (failed(FailureCode::Timeout), 1, Decision::Fail),
        ];
        for (outcome, used, want) in table {
            let got = decide(&outcome, used, &policy);
            match (got, want) {
                // The delay is jittered: the same bounds, not the same value.
                (Decision::Retry(a), Decision::Retry(b)) => assert!(
                    a.as_secs_f64() <= b.as_secs_f64() * 1.7 + 0.001
                        && a.as_secs_f64() * 1.7 + 0.001 >= b.as_secs_f64(),
                    "{outcome:?} after {used}: {a:?} vs {b:?}"
                ),
                _ => assert_eq!(got, want, "{outcome:?} after {used} attempts"),
            }
        }
        let lenient = RetryPolicy { retry_timeouts: true, ..policy };
        assert!(matches!(decide(&failed(FailureCode::Timeout), 1, &lenient), Decision::Retry(_)));
    }

    fn sample() -> OutputFacts {
        OutputFacts {
            key: String::new(),
            size_bytes: 0,
            sha256: String::new(),
            duration_s: None,
            width: None,
            height: None,
            video_codec: None,
            audio_codec: None,
            video_path: None,
            poster: None,
        }
    }
}
