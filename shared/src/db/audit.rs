//! The append-only audit trail (`audit_events`; the database refuses UPDATE and DELETE).

use std::net::IpAddr;

use sqlx::PgExecutor;

use crate::JobId;

/// One audit row. `actor` is who acted (`api`, `worker:<name>`, later an API key id).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor: String,
    pub action: &'static str,
    pub job_id: Option<JobId>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(actor: impl Into<String>, action: &'static str) -> Self {
        Self {
            actor: actor.into(),
            action,
            job_id: None,
            request_id: None,
            client_ip: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn job(mut self, id: JobId) -> Self {
        self.job_id = Some(id);
        self
    }

    pub fn request(mut self, request_id: Option<String>, client_ip: Option<IpAddr>) -> Self {
        self.request_id = request_id;
        self.client_ip = client_ip;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub async fn record<'e>(db: impl PgExecutor<'e>, event: &AuditEvent) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_events (actor, action, job_id, request_id, client_ip, details)
         VALUES ($1, $2, $3, $4, $5::text::inet, $6)",
        event.actor,
        event.action,
        event.job_id.map(|id| id.as_uuid()),
        event.request_id,
        event.client_ip.map(|ip| ip.to_string()),
        event.details,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records `event` unless the same actor has a row of the same action for the same job in the
/// last `within_secs` seconds (so a player's range requests make one row, not hundreds). True
/// when a row was written. Two concurrent requests may both write one: never none.
pub async fn record_unless_recent<'e>(
    db: impl PgExecutor<'e>,
    event: &AuditEvent,
    within_secs: i32,
) -> Result<bool, sqlx::Error> {
    // The casts give the parameters of the SELECT list their types (the macro describes the
    // statement without Rust's types; a runtime query sent them along).
    let done = sqlx::query!(
        "INSERT INTO audit_events (actor, action, job_id, request_id, client_ip, details)
         SELECT $1::text, $2::text, $3::uuid, $4::text, $5::text::inet, $6::jsonb
         WHERE NOT EXISTS (
             SELECT 1 FROM audit_events
             WHERE job_id = $3 AND action = $2 AND actor = $1 AND at > now() - make_interval(secs => $7))",
        event.actor,
        event.action,
        event.job_id.map(|id| id.as_uuid()),
        event.request_id,
        event.client_ip.map(|ip| ip.to_string()),
        event.details,
        f64::from(within_secs),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An audit row as read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub job_id: Option<uuid::Uuid>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub details: serde_json::Value,
}

/// A page of the trail, newest first: one job's (`job`), or everything; `before` is the last
/// id of the previous page.
pub async fn list(
    pool: &sqlx::PgPool,
    job: Option<JobId>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, at, actor, action, job_id, request_id, host(client_ip) AS client_ip, details FROM audit_events
         WHERE ($1::uuid IS NULL OR job_id = $1) AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        job.map(|j| j.as_uuid()),
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}
