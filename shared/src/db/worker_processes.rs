//! The `worker_processes` table: each worker process announces itself at start (name, host,
//! version, the sandbox layers its self-check found), beats while it runs, and says when it stops.
//! The dashboard reads it (`db::dashboard::workers`).

use sqlx::PgPool;

/// What a worker process tells about itself at start.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub concurrency: i32,
    pub sandbox: serde_json::Value,
    pub sandbox_missing: Vec<String>,
    pub heartbeat_s: f64,
}

/// Records the process (and forgets processes not seen for a day).
pub async fn announce(pool: &PgPool, a: &Announcement) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM worker_processes WHERE last_seen < now() - interval '1 day'").execute(pool).await?;
    sqlx::query!(
        "INSERT INTO worker_processes (name, host, pid, version, concurrency, sandbox, sandbox_missing, heartbeat_s)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (name) DO UPDATE SET last_seen = now(), stopped_at = NULL",
        a.name,
        a.host,
        a.pid,
        a.version,
        a.concurrency,
        a.sandbox,
        &a.sandbox_missing,
        a.heartbeat_s,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The process is still there.
pub async fn beat(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE worker_processes SET last_seen = now() WHERE name = $1", name).execute(pool).await?;
    Ok(())
}

/// The process stopped (a clean shutdown; a crash is noticed by its missing beats).
pub async fn stopped(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE worker_processes SET stopped_at = now(), last_seen = now() WHERE name = $1", name)
        .execute(pool)
        .await?;
    Ok(())
}
