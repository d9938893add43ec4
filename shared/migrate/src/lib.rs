//! mediaq's schema. Applied by `mediaq-api migrate` (through `mediaq_shared::db::migrate`) and by
//! `scripts/sqlx-prepare.sh` (through the `mediaq-migrate` binary). This crate holds no query, so
//! it builds before the compile-checked queries of `mediaq-shared` have their offline data.

use sqlx::{migrate::Migrator, PgPool};

/// mediaq's own migrations (`migrations/`), tracked in `public._sqlx_migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Applies the apalis-postgres schema, then mediaq's migrations. Idempotent.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    apalis_postgres::PostgresStorage::setup(pool).await.map_err(|e| MigrateError(e.to_string()))?;
    MIGRATOR.run(pool).await.map_err(|e| MigrateError(e.to_string()))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("database migration failed: {0}")]
pub struct MigrateError(String);
