//! Supervises one transcoder child: reads its JSON-lines events, enforces the wall-clock limit
//! and the stall watchdog, and classifies how it ended.
//!
//! The child is untrusted (its input may have taken it over), so what it says is held to the
//! protocol: its first line reports its sandbox, which must hold every layer the worker requires
//! ([`SandboxPolicy`]), on every attempt; lines are bounded ([`MAX_LINE`]); failure codes are a
//! closed set; anything else ends the child at once as `transcode_error`.

use std::{
    os::unix::process::ExitStatusExt,
    process::ExitStatus,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use mediaq_protocol::{Event, FailureCode, MediaFacts, MAX_LINE};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader},
    net::unix::pipe::Sender as Pipe,
    sync::watch,
};

use crate::{
    feed::{self, FeedClock, FeedEnd},
    selfcheck::SandboxPolicy,
    spawn::{self, ChildSpec, Usage},
};

/// How an attempt's child ended.
#[derive(Debug)]
pub enum Outcome {
    Done(MediaFacts),
    /// The child reported a failure with a stable code.
    Failed {
        code: FailureCode,
        message: String,
    },
    /// The child broke the protocol (an unreadable or overlong line, an event out of place).
    ProtocolViolation(String),
    /// The child reported a sandbox without a layer the worker requires.
    SandboxMissing(String),
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
    /// Killed by the worker: the job was canceled (or its upload abandoned: another outcome is
    /// already recorded).
    Canceled,
    /// Killed by the worker: it could not read the input it was feeding the child (a stored
    /// segment missing or unreadable), a transient `storage_error`.
    InputFailed(String),
    /// Killed by the worker: it is shutting down and hands the job back.
    Interrupted,
    /// Killed by the worker: its upload sent nothing for the idle gap. The slot is handed back
    /// and the job waits for bytes (`fed`: how many the child had been given).
    Parked {
        fed: u64,
    },
}

impl Outcome {
    /// The failure's stable code and a message a person can act on; None for success and for
    /// the worker's own stops (canceled, interrupted), which are not failures of the job.
    pub fn error(&self) -> Option<(FailureCode, String)> {
        Some(match self {
            Outcome::Done(_) | Outcome::Canceled | Outcome::Interrupted | Outcome::Parked { .. } => return None,
            Outcome::Failed { code, message } => (*code, message.clone()),
            Outcome::ProtocolViolation(what) => (
                FailureCode::TranscodeError,
                format!("the converter stopped following its protocol ({what}); the file was not converted"),
            ),
            Outcome::SandboxMissing(layers) => (
                FailureCode::SandboxUnavailable,
                format!(
                    "the converter's sandbox lacked required layers ({layers}); it was stopped before reading the file"
                ),
            ),
            Outcome::TimedOut => {
                (FailureCode::Timeout, "the conversion took longer than the time limit and was stopped".into())
            }
            Outcome::InputFailed(why) => {
                (FailureCode::StorageError, format!("the upload's stored bytes could not be read ({why})"))
            }
            Outcome::Stalled => (FailureCode::Stalled, "the converter stopped making progress and was stopped".into()),
            Outcome::SandboxViolation => (
                FailureCode::SandboxViolation,
                "the file made the converter attempt a forbidden operation; it was stopped".into(),
            ),
            Outcome::ResourceLimit(what) => {
                (FailureCode::ResourceLimit, format!("the conversion exceeded its {what} limit"))
            }
            Outcome::Crashed(how) => (
                FailureCode::TranscoderCrashed,
                format!("the converter stopped unexpectedly ({how}); the file may be damaged"),
            ),
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
    /// A fed child whose upload sent nothing for this long is stopped ([`Outcome::Parked`]).
    pub idle_gap: Duration,
    /// A fed child runs at most this long in all, whatever trickles in.
    pub live_max: Duration,
}

/// Longest stderr kept for diagnostics.
const STDERR_TAIL: usize = 4096;

/// How the child gets its input.
pub enum ChildInput<'a> {
    /// A file named on its command line.
    Named,
    /// Its stdin: the read end of a pipe that the feeder writes (see [`crate::feed`]) while the
    /// upload arrives; [`run`] drives it beside the child. The clock tells when the child is
    /// merely waiting for bytes that have not arrived: the wall-clock limit and the stall
    /// watchdog then pause (counting again from the last byte fed), the idle gap
    /// ([`Watch::idle_gap`]) runs, and the live cap ([`Watch::live_max`]) holds throughout.
    Fed(Feeder<'a>),
}

/// Writes an upload into the child's stdin pipe, keeping the clock, until it ends.
pub type Feeder<'a> = Box<dyn FnOnce(Pipe, watch::Sender<FeedClock>) -> BoxFuture<'a, FeedEnd> + Send + 'a>;

/// What the child reports while it runs, for the attempt to act on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tick {
    /// Fraction done, 0.0..=1.0.
    Progress(f64),
    /// A segment of the stream is complete (see [`Event::Segment`]); not yet checked.
    Segment { index: u32, duration_s: f64, bytes: u64 },
}

/// Runs the child with `input` (see [`ChildInput`]) until it ends, `stop` resolves (canceled,
/// shutting down), a limit is hit, or a fed upload stays idle past the gap (the child is then
/// stopped as [`Outcome::Parked`]).
pub async fn run(
    spec: &ChildSpec,
    policy: &SandboxPolicy,
    watch: Watch,
    input: ChildInput<'_>,
    mut on_progress: impl FnMut(Tick) -> BoxFuture<'static, ()>,
    stop: impl std::future::Future<Output = Outcome>,
) -> std::io::Result<Report> {
    let mut stop = std::pin::pin!(stop);
    let started = Instant::now();
    let (stdin, mut clock, mut feeding) = match input {
        ChildInput::Named => (None, None, None),
        ChildInput::Fed(feeder) => {
            let (read_end, pipe) = feed::pipe()?;
            let (clock, clock_rx) = watch::channel(FeedClock::new());
            (Some(read_end), Some(clock_rx), Some(feeder(pipe, clock)))
        }
    };
    let mut spawned = spawn::spawn(spec, stdin)?;
    let stdout = tokio::process::ChildStdout::from_std(spawned.stdout.take().expect("piped stdout"))?;
    let stderr = tokio::process::ChildStderr::from_std(spawned.stderr.take().expect("piped stderr"))?;
    let stderr_task = tokio::spawn(read_tail(stderr));

    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut sandboxed = false;
    let mut last: Option<Event> = None;
    // The wall-clock limit, counted from `started` (or, for a fed pipe, from the last byte fed).
    let mut limit = watch.timeout;
    let mut last_line = tokio::time::Instant::now();
    let mut killed: Option<Outcome> = None;
    loop {
        let (waiting, fed_at) = match &clock {
            Some(clock) => {
                let c = clock.borrow();
                (c.waiting, Some(c.active_at))
            }
            None => (false, None),
        };
        let started_at = tokio::time::Instant::from_std(started);
        let base = fed_at.map_or(started_at, |f| f.max(started_at));
        let deadline = base + limit;
        let stall_at = last_line.max(fed_at.unwrap_or(last_line)) + watch.stall;
        // A fed child: whatever trickles in, at most `live_max` in all, and an idle upload
        // hands the slot back after the gap.
        let cap_at = fed_at.map(|_| started_at + watch.live_max);
        let idle_at = fed_at.filter(|_| waiting).map(|f| f + watch.idle_gap);
        let wake_at = match (waiting, idle_at) {
            (true, Some(idle_at)) => idle_at,
            _ => deadline.min(stall_at),
        };
        let wake_at = cap_at.map_or(wake_at, |cap| wake_at.min(cap));
        let next = tokio::select! {
            next = next_line(&mut stdout, &mut line) => next,
            why = &mut stop => {
                killed = Some(why);
                break;
            }
            () = tokio::time::sleep_until(wake_at) => {
                let now = tokio::time::Instant::now();
                killed = Some(if cap_at.is_some_and(|cap| now >= cap) {
                    Outcome::TimedOut
                } else if waiting {
                    let fed = clock.as_ref().map_or(0, |c| c.borrow().fed);
                    Outcome::Parked { fed }
                } else if now >= deadline {
                    Outcome::TimedOut
                } else {
                    Outcome::Stalled
                });
                break;
            }
            end = async { feeding.as_mut().expect("a feeder").await }, if feeding.is_some() => {
                feeding = None;
                match end {
                    // The child reads to the end, or has ended: its own outcome tells.
                    FeedEnd::Complete | FeedEnd::ChildGone => continue,
                    // Abandoned or canceled: that outcome is already recorded.
                    FeedEnd::Ended => {
                        killed = Some(Outcome::Canceled);
                        break;
                    }
                    FeedEnd::Failed(why) => {
                        tracing::warn!(%why, "could not feed the upload to the transcoder");
                        killed = Some(Outcome::InputFailed(why));
                        break;
                    }
                }
            }
            // Waiting starts or ends, or bytes were fed: recompute the timers.
            Ok(()) = async { clock.as_mut().expect("a clock").changed().await }, if clock.is_some() => continue,
        };
        let text = match next {
            Ok(None) | Err(_) => break,
            Ok(Some(Line::TooLong)) => {
                killed = Some(Outcome::ProtocolViolation(format!("a line longer than {MAX_LINE} bytes")));
                break;
            }
            Ok(Some(Line::Text(text))) => text,
        };
        last_line = tokio::time::Instant::now();
        let event = match serde_json::from_str::<Event>(&text) {
            Ok(event) => event,
            Err(e) => {
                let shown: String = text.chars().take(200).collect();
                tracing::warn!(error = %e, line = %shown, "unreadable line from the transcoder");
                killed = Some(Outcome::ProtocolViolation("an unreadable line".into()));
                break;
            }
        };
        if last.is_some() {
            killed = Some(Outcome::ProtocolViolation("a line after its final event".into()));
            break;
        }
        match event {
            Event::Sandbox { layers } if !sandboxed => {
                sandboxed = true;
                let missing = policy.missing(&layers);
                if !missing.is_empty() {
                    tracing::warn!(missing = %missing.join(", "), ?layers, "the transcoder's sandbox lacks layers");
                    if policy.strict {
                        killed = Some(Outcome::SandboxMissing(missing.join(", ")));
                        break;
                    }
                }
            }
            _ if !sandboxed => {
                killed = Some(Outcome::ProtocolViolation("no sandbox report first".into()));
                break;
            }
            Event::Sandbox { .. } => {
                killed = Some(Outcome::ProtocolViolation("a second sandbox report".into()));
                break;
            }
            Event::Progress { progress } => on_progress(Tick::Progress(progress.clamp(0.0, 1.0))).await,
            Event::Segment { index, duration_s, bytes } => {
                on_progress(Tick::Segment { index, duration_s, bytes }).await
            }
            // Only a fed pipe has a total to relate the bytes to; the child cannot lie past it.
            Event::Read { bytes } => match &clock {
                Some(clock) => {
                    let fraction = clock.borrow().fraction(bytes);
                    on_progress(Tick::Progress(fraction)).await
                }
                None => {
                    killed = Some(Outcome::ProtocolViolation("a read event without a fed input".into()));
                    break;
                }
            },
            event @ (Event::Done { .. } | Event::Error { .. }) => last = Some(event),
            Event::Probe { input } => {
                if let Some(d) = input.duration_s.filter(|d| d.is_finite() && *d >= 0.0) {
                    limit = limit.min(Duration::from_secs_f64(60.0 + watch.per_media_second * d.min(1e9)));
                }
                tracing::debug!(?input, "input probed");
            }
        }
    }
    if killed.is_some() {
        spawned.kill();
    }
    let (status, usage) = spawned.wait().await?;
    let wall = started.elapsed();
    let stderr_tail = stderr_task.await.unwrap_or_default();
    let outcome = killed.unwrap_or_else(|| classify(status, last, &stderr_tail));
    if !matches!(
        outcome,
        Outcome::Done(_) | Outcome::Failed { .. } | Outcome::Canceled | Outcome::Interrupted | Outcome::Parked { .. }
    ) {
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
            if stderr.contains("memory allocation of") {
                Outcome::ResourceLimit("memory".into())
            } else {
                Outcome::Failed { code: code.code(), message }
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

/// One line of the child's stdout, or the news that it went past [`MAX_LINE`].
enum Line {
    Text(String),
    TooLong,
}

/// Reads up to the next newline without holding more than [`MAX_LINE`] bytes. Cancel-safe: a
/// line cut short by a cancelled call stays in `buf` and the next call completes it.
async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    let line = read_line(reader, buf).await;
    if !matches!(line, Ok(Some(Line::TooLong))) {
        buf.clear();
    }
    line
}

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((!buf.is_empty()).then(|| Line::Text(String::from_utf8_lossy(buf).into_owned())));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        // Keeps at most MAX_LINE bytes, the newline and one byte more (to tell "too long").
        let room = (MAX_LINE + 2).saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        if done && buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.len() > MAX_LINE {
            return Ok(Some(Line::TooLong));
        }
        if done {
            return Ok(Some(Line::Text(String::from_utf8_lossy(buf).into_owned())));
        }
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
