//! Feeding a resumable upload to the transcoder child while it arrives.
//!
//! A job whose input is an upload's segments (`Storage::is_segmented`) is converted from a pipe:
//! the child reads its stdin (`mediaq-transcode --input -`), and the attempt writes the stored
//! segments into the pipe in order, as they are acknowledged. When everything received is in the
//! pipe and the upload is not complete, the feeder waits for the upload's next NOTIFY (one
//! listener per worker process, [`crate::cancellations::UploadProgress`]) or a slow safety poll; the child meanwhile
//! blocks in `read(0)`, using no CPU. Once the upload is complete and its last byte fed, the
//! pipe is closed: the child sees the end of its input and finishes the tail.
//!
//! An upload that is already complete when its attempt starts (a picked file sent through tus, a
//! retry, a worker that claims the job late) is not fed: [`assemble`] puts its segments together
//! into the job directory and the child reads a file, as for `POST /v1/jobs` (so an H.264 input
//! can be remuxed: its check reads the video twice). One that completes while it is fed is fed to
//! the end. [`crate::child::run`] drives the feeding beside the child; the [`FeedClock`] tells it
//! when the child is merely waiting for bytes (an upload idle past the gap is parked: the
//! attempt ends, the job waits for bytes), and the upload's size for progress.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

use futures_util::StreamExt;
use mediaq_shared::{
    db::{jobs, uploads},
    JobId, JobStatus,
};
use tokio::{
    io::AsyncWriteExt,
    net::unix::pipe,
    sync::{broadcast, watch},
    time::Instant,
};

use crate::state::{AttemptError, WorkerState};

/// How often a waiting feeder looks at the upload even without a notification.
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// The pipe's capacity (Linux's default for unprivileged processes is at most 1 MiB).
const PIPE_SIZE: libc::c_int = 1 << 20;
/// While the upload's length is unknown (a recorder deferring it), progress stays below this:
/// what has arrived is converted, but how much is still to come is unknown.
const SHARE_WITHOUT_LENGTH: f64 = 0.1;
/// Highest fraction reported from bytes; the child reports 1.0 when the MP4 is complete.
const MAX_FROM_BYTES: f64 = 0.99;

/// What the supervisor needs to know about the feeding.
#[derive(Debug, Clone, Copy)]
pub struct FeedClock {
    /// Everything received so far is in the pipe and more is expected: the child is (or soon
    /// will be) waiting for bytes that have not arrived.
    pub waiting: bool,
    /// When bytes were last fed (or the upload completed, or feeding started).
    pub active_at: Instant,
    /// Bytes of the upload acknowledged so far.
    pub received: u64,
    /// Bytes written into the pipe so far.
    pub fed: u64,
    /// The upload's length, once known.
    pub length: Option<u64>,
}

impl FeedClock {
    pub fn new() -> Self {
        Self { waiting: false, active_at: Instant::now(), received: 0, fed: 0, length: None }
    }

    /// Progress from the bytes the child has read: over the upload's length when known, else
    /// at most [`SHARE_WITHOUT_LENGTH`]. Never above [`MAX_FROM_BYTES`].
    pub fn fraction(&self, bytes_read: u64) -> f64 {
        let fraction = match self.length {
            Some(length) if length > 0 => bytes_read as f64 / length as f64,
            _ => SHARE_WITHOUT_LENGTH * bytes_read as f64 / self.received.max(1) as f64,
        };
        if fraction.is_finite() {
            fraction.clamp(0.0, MAX_FROM_BYTES)
        } else {
            0.0
        }
    }
}

impl Default for FeedClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A pipe for the child's stdin: the read end (for the child) and the worker's write end. Both
/// are close-on-exec; the child gets its end as fd 0.
pub fn pipe() -> io::Result<(OwnedFd, pipe::Sender)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Fewer wake-ups for both sides; the default (64 KiB) is kept if the system refuses.
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((read_end, pipe::Sender::from_owned_fd(write_end)?))
}

/// How feeding ended.
#[derive(Debug)]
pub enum FeedEnd {
    /// The upload is complete and every byte is in the pipe, which is closed.
    Complete,
    /// The child closed its end (it ended, or failed on what it read).
    ChildGone,
    /// The upload is gone and its job ended (abandoned, or canceled): the attempt stops without
    /// recording anything more.
    Ended,
    /// The stored bytes or the upload's rows could not be read.
    Failed(String),
}

/// Puts the segments of a complete upload of job `id` (`size` bytes) together into `file` (the
/// job directory's input, created exclusively), in order, as the child's input file.
pub async fn assemble(
    state: &WorkerState,
    id: JobId,
    size: u64,
    file: std::fs::File,
) -> Result<std::fs::File, AttemptError> {
    let missing = |what: String| AttemptError::Storage(io::Error::new(io::ErrorKind::NotFound, what));
    let mut file = tokio::fs::File::from_std(file);
    let mut offset = 0u64;
    for segment in uploads::segments(&state.pool, id, 0).await? {
        if segment.start != offset {
            return Err(missing(format!("no stored bytes at offset {offset}")));
        }
        let mut body = state.storage.get(&segment.key, None).await?.body;
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk?).await?;
        }
        offset += segment.size;
    }
    if offset != size {
        return Err(missing(format!("the complete upload's segments end at {offset}, not {size}")));
    }
    file.flush().await?;
    Ok(file.into_std().await)
}

/// Feeds the upload of job `id` into `pipe` until it is complete (then closes the pipe), the
/// child is gone, or the upload ends another way.
pub async fn feed(state: &WorkerState, id: JobId, mut pipe: pipe::Sender, clock: watch::Sender<FeedClock>) -> FeedEnd {
    // Subscribed before the first look at the upload: no notification falls between the two.
    let mut notes = state.upload_progress.subscribe();
    let mut offset = 0u64;
    loop {
        let upload = match uploads::get(&state.pool, id).await {
            Ok(Some(upload)) => upload,
            Ok(None) => return gone(state, id).await,
            Err(e) => return FeedEnd::Failed(format!("reading the upload: {e}")),
        };
        let segments = match uploads::segments(&state.pool, id, offset).await {
            Ok(segments) => segments,
            Err(e) => return FeedEnd::Failed(format!("reading the upload's segments: {e}")),
        };
        clock.send_modify(|c| (c.received, c.length) = (upload.received.max(c.received), upload.length));
        for segment in segments {
            if segment.start != offset {
                return FeedEnd::Failed(format!("no stored bytes at offset {offset}"));
            }
            if let Some(end) = copy_segment(state, &segment.key, &mut pipe, &clock).await {
                return end;
            }
            offset += segment.size;
        }
        clock.send_if_modified(|c| {
            c.received = c.received.max(offset);
            false
        });
        if upload.is_complete() {
            if Some(offset) != upload.length {
                return FeedEnd::Failed(format!("the complete upload's segments end at {offset}"));
            }
            drop(pipe);
            clock.send_modify(|c| (c.waiting, c.active_at) = (false, Instant::now()));
            tracing::debug!(bytes = offset, "the whole upload is fed");
            return FeedEnd::Complete;
        }
        clock.send_if_modified(|c| !std::mem::replace(&mut c.waiting, true));
        wait_for_news(&mut notes, id).await;
    }
}

/// Writes one stored segment into the pipe; `Some` when feeding must end.
async fn copy_segment(
    state: &WorkerState,
    key: &str,
    pipe: &mut pipe::Sender,
    clock: &watch::Sender<FeedClock>,
) -> Option<FeedEnd> {
    let mut body = match state.storage.get(key, None).await {
        Ok(fetched) => fetched.body,
        Err(e) => return Some(FeedEnd::Failed(format!("reading {key}: {}", e.reason()))),
    };
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Some(FeedEnd::Failed(format!("reading {key}: {}", e.reason()))),
        };
        if pipe.write_all(&chunk).await.is_err() {
            return Some(FeedEnd::ChildGone);
        }
        // The child took bytes: that is activity; waiting (if it was) is over.
        clock.send_if_modified(|c| {
            c.active_at = Instant::now();
            c.fed += chunk.len() as u64;
            std::mem::replace(&mut c.waiting, false)
        });
    }
    None
}

/// The upload's row is gone: its job ended (abandoned by the janitor, or canceled), or, if the
/// job still runs, the bytes can no longer be found.
async fn gone(state: &WorkerState, id: JobId) -> FeedEnd {
    match jobs::status(&state.pool, id).await {
        Ok(Some(JobStatus::Processing)) => FeedEnd::Failed("the upload's record is gone".into()),
        Ok(_) => FeedEnd::Ended,
        Err(e) => FeedEnd::Failed(format!("reading the job: {e}")),
    }
}

/// Resolves on a notification for `id` (or missed ones), or after the safety poll.
async fn wait_for_news(notes: &mut broadcast::Receiver<JobId>, id: JobId) {
    let _ = tokio::time::timeout(SAFETY_POLL, async {
        loop {
            match notes.recv().await {
                Ok(heard) if heard == id => return,
                Ok(_) => continue,
                // Missed some: look now.
                Err(_) => return,
            }
        }
    })
    .await;
}
