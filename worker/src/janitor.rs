//! The janitor: deletes what nobody needs any more, and writes an audit row for each deletion.
//!
//! - stale temp files (uploads abandoned mid-way, local backend) and job directories of dead
//!   attempts (always local; the directory of a job's current attempt while it is `processing`
//!   stays however old: a live upload's attempt lasts as long as the recording);
//! - stored objects no job references (listed from the store, local or S3) (an upload that died between its rename and its commit,
//!   an output written by an attempt that was superseded);
//! - after MEDIAQ_RETENTION, a finished job's input and output (the job then reads `expired`);
//! - resumable uploads left unfinished past their expiry: the job fails `upload_abandoned` (a
//!   worker converting it stops) and the received segments are deleted;
//! - finished queue rows and dead worker rows of apalis, which never prunes them.
//!
//! Every worker runs it every MEDIAQ_JANITOR_INTERVAL; a PostgreSQL advisory lock makes sure
//! only one at a time does. Files are only touched when older than MEDIAQ_TEMP_MAX_AGE, so
//! nothing in flight (an upload being written, an output about to be recorded) is removed.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, SystemTime},
};

use mediaq_shared::{
    config::duration,
    db::{audit, audit::AuditEvent, jobs, retention, uploads},
    storage::Storage,
    JobId, JobStatus,
};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const ACTOR: &str = "janitor";

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JanitorConfig {
    /// How often a worker runs the janitor.
    #[arg(long = "janitor-interval", env = "MEDIAQ_JANITOR_INTERVAL", default_value = "5m", value_parser = duration)]
    pub interval: Duration,
    /// A finished job's files are deleted after this.
    #[arg(long, env = "MEDIAQ_RETENTION", default_value = "7d", value_parser = duration)]
    pub retention: Duration,
    /// Temp files and unreferenced stored objects older than this are removed.
    #[arg(long, env = "MEDIAQ_TEMP_MAX_AGE", default_value = "1h", value_parser = duration)]
    pub temp_max_age: Duration,
    /// Finished queue rows and dead workers older than this are pruned.
    #[arg(long = "queue-prune-after", env = "MEDIAQ_QUEUE_PRUNE_AFTER", default_value = "1d", value_parser = duration)]
    pub prune_after: Duration,
}

/// What one run deleted.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Sweep {
    pub ran: bool,
    pub expired_jobs: u64,
    pub abandoned_uploads: u64,
    pub temp_files: u64,
    pub work_dirs: u64,
    pub orphans: u64,
    pub queue_rows: u64,
    pub dead_workers: u64,
}

/// Runs the janitor every `interval` until the process ends.
/// `work_max_age`: job directories older than this belong to dead attempts.
pub async fn run_forever(pool: PgPool, storage: Storage, config: JanitorConfig, work_max_age: Duration) {
    loop {
        tokio::time::sleep(config.interval).await;
        match sweep(&pool, &storage, &config, work_max_age).await {
            Ok(s) if s.ran => tracing::info!(sweep = ?s, "janitor ran"),
            Ok(_) => tracing::debug!("janitor: another worker holds the lock"),
            Err(e) => tracing::warn!(error = %e, "janitor run failed; will try again"),
        }
    }
}

pub async fn sweep(
    pool: &PgPool,
    storage: &Storage,
    config: &JanitorConfig,
    work_max_age: Duration,
) -> Result<Sweep, sqlx::Error> {
    let mut lock = pool.acquire().await?;
    let locked = retention::try_lock_sweep(&mut lock).await?;
    if !locked {
        return Ok(Sweep::default());
    }
    let result = sweep_locked(pool, storage, config, work_max_age).await;
    retention::unlock_sweep(&mut lock).await?;
    result
}

async fn sweep_locked(
    pool: &PgPool,
    storage: &Storage,
    config: &JanitorConfig,
    work_max_age: Duration,
) -> Result<Sweep, sqlx::Error> {
    let mut s = Sweep { ran: true, ..Sweep::default() };
    s.expired_jobs = expire(pool, storage, config.retention).await?;
    s.abandoned_uploads = abandon_uploads(pool, storage).await?;
    if let Some(tmp) = storage.tmp_dir() {
        s.temp_files = remove_old_entries(pool, &tmp, config.temp_max_age, "storage.temp_removed").await?;
    }
    s.work_dirs = remove_dead_work_dirs(pool, storage.work_dir(), work_max_age).await?;
    s.orphans = remove_orphans(pool, storage, config.temp_max_age).await?;
    (s.queue_rows, s.dead_workers) = prune_queue(pool, config.prune_after).await?;
    Ok(s)
}

async fn expire(pool: &PgPool, storage: &Storage, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for retention::Expiring { id, input_key: input, output_key: output, poster_key: poster } in
        retention::expiring(pool, retention).await?
    {
        let mut tx = pool.begin().await?;
        if !retention::mark_expired(&mut *tx, id).await? {
            continue;
        }
        let deleted: Vec<&String> = std::iter::once(&input).chain(output.as_ref()).chain(poster.as_ref()).collect();
        let event = AuditEvent::new(ACTOR, "job.expired").job(id).details(json!({ "deleted": deleted }));
        audit::record(&mut *tx, &event).await?;
        tx.commit().await?;
        for key in deleted {
            if let Err(e) = storage.delete_input(key).await {
                tracing::warn!(error = %e, %key, "could not delete an expired file");
            }
        }
        n += 1;
    }
    Ok(n)
}

/// Unfinished uploads ended per run (the rest wait for the next run).
const ABANDON_BATCH: i64 = 500;

/// Ends unfinished uploads past their expiry: the job fails `upload_abandoned` (an attempt
/// converting it hears it and stops), its segments are deleted, and an audit row says so.
async fn abandon_uploads(pool: &PgPool, storage: &Storage) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for id in uploads::expired(pool, ABANDON_BATCH).await? {
        let mut tx = pool.begin().await?;
        let Some(job) = jobs::get(&mut *tx, id).await? else { continue };
        if !uploads::abandon(&mut tx, id).await? {
            continue;
        }
        let details = json!({ "received_bytes": job.input.size, "deleted": [&job.input.key] });
        audit::record(&mut *tx, &AuditEvent::new(ACTOR, "upload.abandoned").job(id).details(details)).await?;
        tx.commit().await?;
        if let Err(e) = storage.delete_input(&job.input.key).await {
            // Left for the orphan sweep (the job no longer needs them).
            tracing::warn!(error = %e, key = %job.input.key, "could not delete an abandoned upload's segments");
        }
        n += 1;
    }
    Ok(n)
}

fn older_than(path: &Path, age: Duration) -> bool {
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified());
    modified.is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > age)
}

/// Removes the entries of `dir` older than `age` (files or directories), one audit row each.
async fn remove_old_entries(
    pool: &PgPool,
    dir: &Path,
    age: Duration,
    action: &'static str,
) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for entry in old_entries(dir, age) {
        n += u64::from(remove_entry(pool, &entry, action).await?);
    }
    Ok(n)
}

/// Removes job directories older than `age`, except those of a job's current attempt while it is
/// `processing`: a live upload's attempt lasts as long as the recording, and its directory's
/// mtime does not change while the output inside grows. (An attempt whose worker died gets a new
/// number when the job is retried, which frees the old directory.)
async fn remove_dead_work_dirs(pool: &PgPool, dir: &Path, age: Duration) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for entry in old_entries(dir, age) {
        if let Some((id, attempt)) = attempt_of(&entry.file_name().to_string_lossy()) {
            let job = jobs::get(pool, id).await?;
            if job.is_some_and(|j| j.status == JobStatus::Processing && j.attempts == attempt) {
                tracing::debug!(job_id = %id, attempt, "an old job directory of a running attempt is kept");
                continue;
            }
        }
        n += u64::from(remove_entry(pool, &entry, "storage.workdir_removed").await?);
    }
    Ok(n)
}

/// The job and attempt of a job directory's name (`<job id>-a<attempt>-<random>`).
fn attempt_of(name: &str) -> Option<(JobId, i32)> {
    let (id, rest) = name.split_at_checked(36)?;
    let attempt = rest.strip_prefix("-a")?.split('-').next()?.parse().ok()?;
    Some((id.parse().ok()?, attempt))
}

/// The entries of `dir` last modified more than `age` ago (none when it cannot be read).
fn old_entries(dir: &Path, age: Duration) -> Vec<std::fs::DirEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries.flatten().filter(|entry| older_than(&entry.path(), age)).collect()
}

/// Removes one entry (a directory with its contents) and audits it; whether it was removed (a
/// failure is logged, and the next sweep tries again).
async fn remove_entry(pool: &PgPool, entry: &std::fs::DirEntry, action: &'static str) -> Result<bool, sqlx::Error> {
    let path = entry.path();
    let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    match removed {
        Ok(()) => {
            let name = entry.file_name().to_string_lossy().into_owned();
            audit::record(pool, &AuditEvent::new(ACTOR, action).details(json!({ "name": name }))).await?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "could not remove a stale entry");
            Ok(false)
        }
    }
}

/// Removes stored inputs and outputs no job references (older than `age`).
async fn remove_orphans(pool: &PgPool, storage: &Storage, age: Duration) -> Result<u64, sqlx::Error> {
    // key -> job id parsed from its name (`inputs/{id}.webm`, `outputs/{id}-a{n}.mp4` and `.jpg`,
    // `uploads/{id}.{offset}.{nonce}`)
    let mut candidates: HashMap<String, Option<Uuid>> = HashMap::new();
    for folder in ["inputs", "outputs", "uploads"] {
        let listed = match storage.list(folder).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, folder, "could not list stored objects");
                continue;
            }
        };
        for object in listed {
            let name = object.key.strip_prefix(folder).unwrap_or(&object.key).trim_start_matches('/');
            if SystemTime::now().duration_since(object.modified).unwrap_or_default() > age {
                let id = name.get(..36).and_then(|s| Uuid::try_parse(s).ok());
                candidates.insert(object.key.clone(), id);
            }
        }
    }
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = candidates.values().flatten().copied().collect();
    let referenced: std::collections::HashSet<String> =
        retention::referenced_keys(pool, &ids).await?.into_iter().collect();
    let mut n = 0;
    for (key, id) in candidates {
        // A segment is referenced through its upload's prefix (the job's input key).
        let upload_prefix =
            key.strip_prefix("uploads/").and_then(|name| name.get(..37)).map(|p| format!("uploads/{p}"));
        if referenced.contains(&key) || upload_prefix.is_some_and(|p| referenced.contains(&p)) {
            continue;
        }
        if let Err(e) = storage.delete(&key).await {
            tracing::warn!(error = %e, %key, "could not remove an orphaned object");
            continue;
        }
        let mut event = AuditEvent::new(ACTOR, "storage.orphan_removed").details(json!({ "key": key }));
        event.job_id = id.map(JobId::from_uuid);
        // The job may not exist (an upload that died before its commit): no foreign key here.
        audit::record(pool, &event).await?;
        n += 1;
    }
    Ok(n)
}

/// Deletes finished queue rows and dead workers, which apalis keeps forever.
async fn prune_queue(pool: &PgPool, after: Duration) -> Result<(u64, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (rows, workers) = retention::prune_queue(&mut tx, after).await?;
    if rows + workers > 0 {
        let details = json!({ "queue_rows": rows, "dead_workers": workers });
        audit::record(&mut *tx, &AuditEvent::new(ACTOR, "queue.pruned").details(details)).await?;
    }
    tx.commit().await?;
    Ok((rows, workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_directory_names_its_job_and_attempt() {
        let id = JobId::generate();
        assert_eq!(attempt_of(&format!("{id}-a3-Xy12ab")), Some((id, 3)));
        assert_eq!(attempt_of(&format!("{id}-a12-")), Some((id, 12)));
        for other in ["selftest-abc", &format!("{id}-b3-x"), &format!("{id}-a-x"), "short", &format!("{id}")] {
            assert_eq!(attempt_of(other), None, "{other}");
        }
    }
}
