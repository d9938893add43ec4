//! Cancellation reaches running attempts through LISTEN/NOTIFY: one listener per worker process
//! (on `jobs::CANCELED_CHANNEL`, announced by `jobs::cancel` when it cancels a processing job)
//! fans the ids out to the attempts. A slow poll of the job's status stays as the safety net for
//! notifications missed while the listener reconnects, and for a job row that is gone.

use std::time::Duration;

use mediaq_shared::{
    db::jobs::{self, CANCELED_CHANNEL},
    JobId, JobStatus,
};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::broadcast;

/// How often an attempt also checks its job's status (notifications are the fast path).
const SAFETY_POLL: Duration = Duration::from_secs(10);

/// The ids of jobs canceled while processing, as the listener hears them.
#[derive(Clone)]
pub struct Cancellations {
    heard: broadcast::Sender<JobId>,
}

impl Cancellations {
    /// Starts the process's listener (reconnecting after errors) and returns its fan-out.
    pub fn listen(pool: PgPool) -> Self {
        Self { heard: listen_ids(pool, CANCELED_CHANNEL) }
    }

    /// Resolves when job `id` is canceled (or its row is gone).
    pub async fn wait_for(&self, pool: &PgPool, id: JobId) {
        let mut heard = self.heard.subscribe();
        let mut poll = tokio::time::interval(SAFETY_POLL);
        loop {
            tokio::select! {
                note = heard.recv() => match note {
                    Ok(canceled) if canceled == id => return,
                    Ok(_) => continue,
                    // Missed some (`Lagged`; `Closed` cannot happen while `self` holds the
                    // sender): look at the row now.
                    Err(_) => {}
                },
                _ = poll.tick() => {}
            }
            match jobs::status(pool, id).await {
                Ok(Some(JobStatus::Canceled)) | Ok(None) => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not check for cancellation"),
            }
        }
    }
}

/// Starts a task that LISTENs on `channel` (reconnecting after errors) and fans the job ids it
/// hears out to every subscriber. Subscribers keep a safety poll for notifications missed while
/// it reconnects.
pub(crate) fn listen_ids(pool: PgPool, channel: &'static str) -> broadcast::Sender<JobId> {
    let (heard, _) = broadcast::channel(256);
    let sender = heard.clone();
    tokio::spawn(async move {
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen(channel).await {
                    Ok(()) => {
                        // Ends when the connection is lost; the safety poll covers the gap.
                        while let Ok(Some(note)) = listener.try_recv().await {
                            if let Ok(id) = note.payload().parse::<JobId>() {
                                let _ = sender.send(id);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, channel, "cannot LISTEN; polling only"),
                },
                Err(e) => tracing::debug!(error = %e, channel, "cannot connect the listener; polling only"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    heard
}

/// Notifications of upload progress (`uploads::PROGRESS_CHANNEL`: bytes received, completion, an
/// upload's end), one listener per process; [`crate::feed`] waits on them.
#[derive(Clone)]
pub struct UploadProgress {
    heard: tokio::sync::broadcast::Sender<JobId>,
}

impl UploadProgress {
    pub fn listen(pool: sqlx::PgPool) -> Self {
        Self { heard: listen_ids(pool, mediaq_shared::db::uploads::PROGRESS_CHANNEL) }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<JobId> {
        self.heard.subscribe()
    }
}
