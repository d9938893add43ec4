//! The worker process's row in `worker_processes`: announced at start with the sandbox layers
//! the self-check found, kept fresh every heartbeat, marked stopped at a clean shutdown. Operators
//! read it on the dashboard (`GET /v1/admin/workers`).

use std::time::Duration;

use mediaq_shared::db::worker_processes::{self, Announcement};
use sqlx::PgPool;

use crate::selfcheck::LayerReport;

/// Announces this process, then beats every `heartbeat` until the process ends. A database that
/// is down only delays the row (logged); it never stops the worker.
pub fn spawn(pool: PgPool, name: String, concurrency: usize, heartbeat: Duration, report: &LayerReport) {
    let announcement = Announcement {
        host: host_of(&name),
        pid: std::process::id() as i32,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        concurrency: concurrency as i32,
        sandbox: serde_json::to_value(report).unwrap_or_default(),
        sandbox_missing: report.missing_required().into_iter().map(str::to_owned).collect(),
        heartbeat_s: heartbeat.as_secs_f64(),
        name,
    };
    tokio::spawn(async move {
        let mut announced = false;
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tick.tick().await;
            let result = if announced {
                worker_processes::beat(&pool, &announcement.name).await
            } else {
                worker_processes::announce(&pool, &announcement).await
            };
            match result {
                Ok(()) => announced = true,
                Err(e) => tracing::warn!(error = %e, "could not record this worker's presence"),
            }
        }
    });
}

/// Marks this process stopped (after a clean shutdown).
pub async fn stopped(pool: &PgPool, name: &str) {
    if let Err(e) = worker_processes::stopped(pool, name).await {
        tracing::warn!(error = %e, "could not record this worker's stop");
    }
}

/// The host part of a name made by `run::unique_name` (`{host}-{pid}-{random}`).
fn host_of(name: &str) -> String {
    let mut parts = name.rsplitn(3, '-');
    let (_random, _pid) = (parts.next(), parts.next());
    parts.next().unwrap_or(name).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_is_the_name_without_pid_and_random() {
        assert_eq!(super::host_of("web-1.example-4242-0a1b2c3d"), "web-1.example");
        assert_eq!(super::host_of("plain"), "plain");
    }
}
