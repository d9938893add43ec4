//! Phase 2 of an attempt: a fresh job directory and the job's input, decided once.
//!
//! - a stored file on local disk: the child reads it (or, when it runs as the sandbox user, a
//!   private read-only copy in the job directory);
//! - a stored object on S3: fetched into the job directory;
//! - a resumable upload that is complete (its SHA-256 is recorded): its segments put together
//!   into the job directory ([`feed::assemble`]), read as a file like any other, so an H.264
//!   input can be remuxed (its check reads the video twice);
//! - a resumable upload still arriving: fed to the child's stdin as it arrives ([`feed::feed`],
//!   driven by [`crate::child`]).

use std::path::PathBuf;

use mediaq_shared::{storage::Storage, Job};

use crate::{
    child::ChildInput,
    feed,
    jobdir::JobDir,
    spawn,
    state::{AttemptError, WorkerState},
};

/// The attempt's directory and where its child reads the input.
pub struct Prepared<'a> {
    pub work: JobDir,
    /// The child's `--input`: a file, or `-` for its stdin.
    pub path: PathBuf,
    pub child_input: ChildInput<'a>,
}

impl Prepared<'_> {
    /// Whether the input is fed while it arrives.
    pub fn is_live(&self) -> bool {
        matches!(self.child_input, ChildInput::Fed(_))
    }
}

/// Makes attempt `attempt`'s directory (removing those of earlier attempts: they belong to dead
/// workers) and puts the job's input where its child will read it.
pub async fn prepare<'a>(state: &'a WorkerState, job: &Job, attempt: i32) -> Result<Prepared<'a>, AttemptError> {
    let id = job.id;
    let (work_dir, owner) =
        (state.storage.work_dir().to_owned(), state.config.sandbox.user.filter(|_| spawn::is_root()));
    let segmented = Storage::is_segmented(&job.input.key);
    let live = segmented && job.input.sha256.is_none();
    let stored = if segmented { None } else { state.storage.local_path(&job.input.key) };
    // File work (removing stale directories, copying the input) runs on the blocking pool.
    let (work, copied) = blocking(move || {
        let stale = JobDir::remove_stale(&work_dir, &format!("{id}-a"))?;
        if stale > 0 {
            tracing::info!(stale, "removed the job directories of earlier attempts");
        }
        let work = JobDir::create(&work_dir, &format!("{id}-a{attempt}-"), owner)?;
        let input = stored.map(|stored| work.input(&stored)).transpose()?;
        Ok((work, input))
    })
    .await?;
    if live {
        let feeder: crate::child::Feeder<'a> =
            Box::new(move |pipe, clock| Box::pin(feed::feed(state, id, pipe, clock)));
        let path = PathBuf::from(mediaq_protocol::STDIN_INPUT);
        return Ok(Prepared { work, path, child_input: ChildInput::Fed(feeder) });
    }
    if let Some(path) = copied {
        return Ok(Prepared { work, path, child_input: ChildInput::Named });
    }
    let fetched = work.fetched_input_path();
    if segmented {
        // Created exclusively relative to the directory, handed over through its descriptor.
        let file = feed::assemble(state, id, job.input.size, work.create_input()?).await?;
        work.hand_over_file(&file)?;
    } else {
        // (S3: the fetch creates its file exclusively; the hand-over opens it without following links.)
        state.storage.fetch_to(&job.input.key, &fetched).await?;
        work.hand_over(&fetched)?;
    }
    Ok(Prepared { work, path: fetched, child_input: ChildInput::Named })
}

/// Removes the attempt's directory (remove_dir_all is file work: the blocking pool).
pub async fn clean_up(work: JobDir) {
    let _ = blocking(move || {
        drop(work);
        Ok(())
    })
    .await;
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}
