//! The worker's side of the poster the child leaves beside the MP4 (`poster.jpg` in the job
//! directory): checked through one descriptor as the MP4 is ([`file::open_poster`]),
//! hashed, and stored under the attempt's poster key. A poster that is missing or not a JPEG
//! costs the job its poster, not its output; one that is not a plain file of the child's own
//! (a link, a FIFO...) fails the job as a sandbox violation, as for the MP4.

use std::path::Path;

use mediaq_shared::{storage::Storage, JobId, PosterFacts};

use super::file::{self, Refused, VerifiedOutput};
use crate::state::AttemptError;

/// Largest poster accepted (a 4096x4096 JPEG at the child's quality is a few MB).
pub const MAX_POSTER_BYTES: u64 = 32 << 20;

/// A checked poster, open for reading, with its hash.
#[derive(Debug)]
pub struct CheckedPoster {
    file: VerifiedOutput,
    sha256: String,
}

/// Checks the poster at `path` (blocking). `Ok(None)`: none, or one not worth keeping (logged);
/// `Err` only for what fails the job.
pub fn check(path: &Path, owner: u32, max_output_bytes: u64) -> Result<Option<CheckedPoster>, Refused> {
    let checked = file::open_poster(path, owner, MAX_POSTER_BYTES.min(max_output_bytes)).and_then(|found| {
        found
            .map(|mut file| {
                let sha256 = file::sha256(&mut file).map_err(|e| Refused::Unreadable(e.to_string()))?;
                Ok(CheckedPoster { file, sha256 })
            })
            .transpose()
    });
    match checked {
        Err(refused @ Refused::NotPlain(_)) => Err(refused),
        Err(refused) => {
            tracing::warn!(error = %refused, "the converter's poster was refused; the job has none");
            Ok(None)
        }
        Ok(poster) => Ok(poster),
    }
}

/// Stores a checked poster under the attempt's poster key.
pub async fn store(
    storage: &Storage,
    id: JobId,
    attempt: i32,
    poster: CheckedPoster,
) -> Result<PosterFacts, AttemptError> {
    let key = Storage::poster_key(id, attempt);
    let size_bytes = poster.file.size;
    storage.put_file(poster.file.file, &key).await?;
    Ok(PosterFacts { key, size_bytes, sha256: poster.sha256 })
}
