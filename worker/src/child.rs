//! Supervises one transcoder child: reads its JSON-lines events, enforces the wall-clock limit
//! and the stall watchdog, and classifies how it ended.

use std::{
    os::unix::process::ExitStatusExt,
    process::ExitStatus,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::{
    protocol::{Event, MediaFacts},
    spawn::{self, ChildSpec, Usage},
};

/// How an attempt's child ended.
#[derive(Debug)]
pub enum Outcome {
    Done(MediaFacts),
    /// The child reported a failure with a stable code.
    Failed {
        code: String,
        message: String,
    },
    /// Killed by the worker: past the wall-clock limit.
    TimedOut,
    /// Killed by the worker: no progress line for the stall timeout.
    Stalled,
    /// Killed by seccomp (SIGSYS): it tried a forbidden system call.
    SandboxViolation,
    /// Hit a memory, CPU-time or file-size limit.
    ResourceLimit(String),
    /// Died another way (signal, crash, protocol violation).
    Crashed(String),
    /// Killed by the worker: the job was canceled.
    Canceled,
    /// Killed by the worker: it is shutting down and hands the job back.
    Interrupted,
}

impl Outcome {
    /// The stable error code and a message a person can act on (None for success).
    pub fn error(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Outcome::Done(_) => return None,
            Outcome::Failed { .. } => return None,
            Outcome::TimedOut => ("timeout", "the conversion took longer than the time limit and was stopped".into()),
            Outcome::Stalled => ("stalled", "the converter stopped making progress and was stopped".into()),
            Outcome::SandboxViolation => (
                "sandbox_violation",
                "the file made the converter attempt a forbidden operation; it was stopped".into(),
            ),
            Outcome::ResourceLimit(what) => ("resource_limit", format!("the conversion exceeded its {what} limit")),
            Outcome::Canceled => ("canceled", "the job was canceled".into()),
            Outcome::Interrupted => ("interrupted", "the worker shut down; the job was handed back".into()),
            Outcome::Crashed(how) => {
                ("transcoder_crashed", format!("the converter stopped unexpectedly ({how}); the file may be damaged"))
            }
        })
    }
}

/// What one run of the child produced.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub usage: Usage,
    pub wall: Duration,
    pub exit: String,
}

/// Supervision limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Hard cap on the run's wall time.
    pub timeout: Duration,
    /// Tighter cap once the input's duration is known: 60 s + this many seconds per media second.
    pub per_media_second: f64,
    /// No event for this long and the child is killed.
    pub stall: Duration,
}

/// Longest stderr kept for diagnostics.
const STDERR_TAIL: usize = 4096;

pub async fn run(
    spec: &ChildSpec,
    watch: Watch,
    mut on_progress: impl FnMut(f64) -> BoxFuture<'static, ()>,
    stop: impl std::future::Future<Output = Outcome>,
) -> std::io::Result<Report> {
    let mut stop = std::pin::pin!(stop);
    let started = Instant::now();
    let mut spawned = spawn::spawn(spec)?;
    let stdout = tokio::process::ChildStdout::from_std(spawned.stdout.take().expect("piped stdout"))?;
    let stderr = tokio::process::ChildStderr::from_std(spawned.stderr.take().expect("piped stderr"))?;
    let stderr_task = tokio::spawn(read_tail(stderr));

    let mut lines = BufReader::new(stdout).lines();
    let mut last: Option<Event> = None;
    let mut deadline = tokio::time::Instant::now() + watch.timeout;
    let mut killed: Option<Outcome> = None;
    loop {
        let wait = watch.stall.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let next = tokio::select! {
            next = tokio::time::timeout(wait, lines.next_line()) => next,
            why = &mut stop => {
                killed = Some(why);
                spawned.kill();
                break;
            }
        };
        match next {
            Err(_) => {
                killed =
                    Some(if tokio::time::Instant::now() >= deadline { Outcome::TimedOut } else { Outcome::Stalled });
                spawned.kill();
                break;
            }
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Ok(Ok(Some(line))) => match serde_json::from_str::<Event>(&line) {
                Ok(Event::Progress { progress }) => on_progress(progress).await,
                Ok(event @ (Event::Done { .. } | Event::Error { .. })) => last = Some(event),
                Ok(Event::Probe { input }) => {
                    if let Some(d) = input.duration_s.filter(|d| d.is_finite() && *d >= 0.0) {
                        let scaled = Duration::from_secs_f64(60.0 + watch.per_media_second * d);
                        deadline = deadline.min(tokio::time::Instant::from_std(started + scaled));
                    }
                    tracing::debug!(?input, "input probed");
                }
                Ok(event) => tracing::debug!(?event, "transcoder event"),
                Err(e) => {
                    tracing::warn!(error = %e, line = %line.chars().take(200).collect::<String>(), "unreadable line from the transcoder")
                }
            },
        }
    }
    let (status, usage) = spawned.wait().await?;
    let wall = started.elapsed();
    let stderr_tail = stderr_task.await.unwrap_or_default();
    let outcome = killed.unwrap_or_else(|| classify(status, last, &stderr_tail));
    if !matches!(outcome, Outcome::Done(_) | Outcome::Failed { .. }) {
        tracing::warn!(?outcome, %status, stderr = %stderr_tail, "transcoder did not finish cleanly");
    }
    Ok(Report { outcome, usage, wall, exit: describe_status(status) })
}

fn classify(status: ExitStatus, last: Option<Event>, stderr: &str) -> Outcome {
    match (last, status.success(), status.signal()) {
        (Some(Event::Done { output }), true, _) => Outcome::Done(output),
        (_, _, Some(libc::SIGSYS)) => Outcome::SandboxViolation,
        (_, _, Some(libc::SIGXCPU)) => Outcome::ResourceLimit("CPU time".into()),
        (_, _, Some(libc::SIGKILL)) => Outcome::ResourceLimit("CPU time or memory".into()),
        (_, _, Some(libc::SIGXFSZ)) => Outcome::ResourceLimit("output size".into()),
        (Some(Event::Error { code, message }), false, None) => {
            if code == "resource_limit" || stderr.contains("memory allocation of") {
                Outcome::ResourceLimit("memory".into())
            } else {
                Outcome::Failed { code, message }
            }
        }
        (_, _, _) if stderr.contains("memory allocation of") => Outcome::ResourceLimit("memory".into()),
        (_, _, Some(sig)) => Outcome::Crashed(format!("signal {sig}")),
        (_, _, None) => Outcome::Crashed(format!("exit code {}", status.code().unwrap_or(-1))),
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

async fn read_tail(mut stderr: tokio::process::ChildStderr) -> String {
    let mut buf = Vec::new();
    let _ = (&mut stderr).take(1 << 20).read_to_end(&mut buf).await;
    // Keep reading (and discarding) so the child never blocks on a full pipe.
    let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
    let start = buf.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}
