//! Runs one `mediaq-transcode` child and reads its JSON-lines events.
//!
//! The child gets a cleared environment, /dev/null for stdin, its own process group, and dies
//! with the worker (PR_SET_PDEATHSIG); it is killed when the attempt is dropped (cancel, shutdown).

use std::{
    path::Path,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::Command,
};

use crate::protocol::{EncodeSettings, Event, MediaFacts};

/// How an attempt's child ended.
#[derive(Debug)]
pub enum Outcome {
    Done(MediaFacts),
    /// The child reported a failure with a stable code.
    Failed {
        code: String,
        message: String,
    },
    /// The child ran past the attempt's time limit and was killed.
    TimedOut,
    /// The child died without reporting (signal, crash, protocol violation).
    Crashed {
        status: Option<ExitStatus>,
        stderr_tail: String,
    },
}

/// Longest stderr kept for diagnostics.
const STDERR_TAIL: usize = 4096;

pub async fn run(
    bin: &Path,
    input: &Path,
    output: &Path,
    settings: &EncodeSettings,
    timeout: Duration,
    mut on_progress: impl FnMut(f64) -> futures_util::future::BoxFuture<'static, ()>,
) -> std::io::Result<Outcome> {
    let mut cmd = Command::new(bin);
    cmd.arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args([
            "--preset",
            &settings.preset,
            "--crf",
            &settings.crf.to_string(),
            "--threads",
            &settings.threads,
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut buf).await;
        // Keep reading (and discarding) so the child never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        let start = buf.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&buf[start..]).into_owned()
    });

    let mut lines = BufReader::new(stdout).lines();
    let mut last: Option<Event> = None;
    let read = tokio::time::timeout(timeout, async {
        while let Some(line) = lines.next_line().await? {
            match serde_json::from_str::<Event>(&line) {
                Ok(Event::Progress { progress }) => on_progress(progress).await,
                Ok(event @ (Event::Done { .. } | Event::Error { .. })) => last = Some(event),
                Ok(Event::Probe { input }) => tracing::debug!(?input, "input probed"),
                Err(e) => tracing::warn!(error = %e, line = %line.chars().take(200).collect::<String>(), "unreadable line from the transcoder"),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if read.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Ok(Outcome::TimedOut);
    }
    read.unwrap_or(Ok(()))?;
    let status = child.wait().await?;
    let stderr_tail = stderr_task.await.unwrap_or_default();
    Ok(match (last, status.success()) {
        (Some(Event::Done { output }), true) => Outcome::Done(output),
        (Some(Event::Error { code, message }), false) => Outcome::Failed { code, message },
        _ => Outcome::Crashed {
            status: Some(status),
            stderr_tail,
        },
    })
}
