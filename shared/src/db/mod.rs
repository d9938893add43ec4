//! Database access: connection pool, migrations (mediaq's and apalis'), jobs and the audit trail.

pub mod attempts;
pub mod audit;
pub mod dashboard;
pub mod deliveries;
pub mod fair;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod line;
pub mod retention;
pub mod retry;
pub mod segments;
pub mod stats;
pub mod tokens;
pub mod uploads;
pub mod webhooks;
pub mod worker_processes;

use std::time::Duration;

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

use crate::config::CommonConfig;

pub use mediaq_migrate::{migrate, MigrateError, MIGRATOR};

/// Builds the pool lazily: the process starts (and reports not-ready) while PostgreSQL is down,
/// and every query waits at most `db_timeout` for a connection.
pub fn pool(config: &CommonConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose().parse()?;
    let options = options.application_name("mediaq");
    Ok(PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(config.db_timeout)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Whether every migration this build knows is applied (readiness).
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied = sqlx::query_scalar!("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?;
    Ok(MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).all(|m| applied.contains(&m.version)))
}

/// Whether an error means "the database cannot be reached right now" (as opposed to a bug).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // 08xxx connection exceptions, 57P0x admin/crash shutdown, 53xxx insufficient resources.
            db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53"))
        }
        _ => false,
    }
}
