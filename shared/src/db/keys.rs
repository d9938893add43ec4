//! The `api_keys` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use crate::apikey::{Credential, Scope};

/// A key as listed (never with its secret).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A verified key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub id: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
}

pub async fn create<'e>(
    db: impl PgExecutor<'e>,
    credential: &Credential,
    name: &str,
    owner: &str,
    scopes: &[Scope],
) -> Result<(), sqlx::Error> {
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    sqlx::query!(
        "INSERT INTO api_keys (id, name, owner, scopes, secret_sha256) VALUES ($1, $2, $3, $4, $5)",
        credential.id,
        name,
        owner,
        scopes.as_slice() as &[&str],
        credential.secret_hash(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Looks a key up and checks its secret in constant time. `None`: unknown, revoked or wrong.
/// Returns the stored hash too, for the API's cache of verified keys.
pub async fn lookup(pool: &PgPool, credential: &Credential) -> Result<Option<(Authenticated, Vec<u8>)>, sqlx::Error> {
    let found = find_active(pool, &credential.id).await?;
    Ok(found.filter(|(_, hash)| credential.matches(hash)))
}

/// The key `id` if it exists and is not revoked, with its stored hash (for the API's cache): a
/// signed playback link names the key that issued it and opens only while that key is active.
pub async fn find_active(pool: &PgPool, id: &str) -> Result<Option<(Authenticated, Vec<u8>)>, sqlx::Error> {
    let row =
        sqlx::query!("SELECT owner, scopes, secret_sha256 FROM api_keys WHERE id = $1 AND revoked_at IS NULL", id,)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| {
        let scopes = r.scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect();
        (Authenticated { id: id.to_owned(), owner: r.owner, scopes }, r.secret_sha256)
    }))
}

/// Records that a key was used: at most one write a minute per key, so polling stays read-only.
pub async fn touch(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        id,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The channel on which revocations are announced (API processes drop cached keys on it).
pub const REVOKED_CHANNEL: &str = "mediaq_api_key_revoked";

pub async fn list(pool: &PgPool) -> Result<Vec<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        "SELECT id, name, owner, scopes, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at",
    )
    .fetch_all(pool)
    .await
}

pub async fn revoke<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<bool, sqlx::Error> {
    // One statement: the revocation and its announcement commit together.
    let done = sqlx::query_scalar!(
        r#"WITH revoked AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id)
         SELECT id AS "id!" FROM revoked, pg_notify('mediaq_api_key_revoked', id) AS n"#,
        id,
    )
    .fetch_optional(db)
    .await?;
    Ok(done.is_some())
}
