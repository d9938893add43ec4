//! A waiting job's place in line, and what the estimate of its start and finish is made from:
//! the jobs ahead of it in its lane (in claim order: fair tag, then age), the jobs running in
//! that lane, the workers' slots alive there, and how long recent conversions took for their
//! input's size (a least-squares line over the lane's last successful attempts). The estimate
//! itself is [`crate::eta`]'s, a pure function of these.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{queue::Lane, JobId};

/// Jobs ahead of one that are looked at one by one for its estimate (the count is exact).
const AHEAD_LISTED: i64 = 2000;
/// Successful attempts the speed model is fitted to.
const MODEL_SAMPLES: i64 = 100;

/// What the estimate of one waiting or running job is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub lane: Lane,
    /// Jobs that will start before this one.
    pub position: i64,
    /// The input sizes of the first of those jobs, in order.
    pub ahead_bytes: Vec<u64>,
    /// The jobs running in the lane now (this one included when it runs).
    pub running: Vec<Running>,
    /// Worker slots of the lane seen alive in the last 30 s.
    pub slots: i64,
    pub model: Speed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Running {
    pub id: JobId,
    pub input_bytes: u64,
    pub progress: f64,
    pub elapsed_s: f64,
}

/// Wall seconds of a conversion for its input's bytes: `intercept + slope * bytes`, fitted to
/// `samples` recent successful attempts of the lane (none: not fitted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub slope: Option<f64>,
    pub intercept: Option<f64>,
    pub samples: i64,
}

/// The line as job `id` sees it, or `None` when it is not waiting or running in a lane (not yet
/// queued, waiting for bytes, finished).
pub async fn of_job(pool: &PgPool, id: JobId) -> Result<Option<Line>, sqlx::Error> {
    let Some(me) = sqlx::query!(
        r#"SELECT lane AS "lane!", status, fair_tag, created_at, next_attempt_at FROM jobs
           WHERE id = $1 AND lane IS NOT NULL AND NOT awaiting_bytes
             AND status IN ('queued', 'receiving', 'processing')"#,
        id.as_uuid(),
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let Some(lane) = Lane::parse(&me.lane) else { return Ok(None) };
    let (position, ahead_bytes) = if me.status == "processing" {
        (0, Vec::new())
    } else {
        ahead(pool, lane, me.fair_tag.unwrap_or(i64::MAX), me.created_at, id, me.next_attempt_at).await?
    };
    let running = sqlx::query!(
        r#"SELECT id, input_size, progress, EXTRACT(EPOCH FROM now() - started_at)::float8 AS "elapsed_s!"
           FROM jobs WHERE lane = $1 AND status = 'processing' AND started_at IS NOT NULL"#,
        lane.as_str(),
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| Running {
        id: JobId::from_uuid(r.id),
        input_bytes: r.input_size as u64,
        progress: f64::from(r.progress),
        elapsed_s: r.elapsed_s.max(0.0),
    })
    .collect();
    let slots: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM apalis.workers
           WHERE worker_type = $1 AND last_seen > now() - interval '30 seconds'"#,
        lane.queue(),
    )
    .fetch_one(pool)
    .await?;
    Ok(Some(Line { lane, position, ahead_bytes, running, slots, model: speed(pool).await? }))
}

async fn ahead(
    pool: &PgPool,
    lane: Lane,
    tag: i64,
    created_at: DateTime<Utc>,
    id: JobId,
    not_before: Option<DateTime<Utc>>,
) -> Result<(i64, Vec<u64>), sqlx::Error> {
    // Waiting for a retry: everything due before it is ahead too.
    let rows = sqlx::query!(
        r#"SELECT input_size, count(*) OVER () AS "total!" FROM jobs
           WHERE lane = $1 AND status IN ('queued', 'receiving') AND NOT awaiting_bytes AND id <> $4
             AND (next_attempt_at IS NULL OR next_attempt_at <= GREATEST(now(), $5))
             AND (fair_tag < $2 OR (fair_tag = $2 AND created_at < $3) OR ($5::timestamptz > now()))
           ORDER BY fair_tag, created_at LIMIT $6"#,
        lane.as_str(),
        tag,
        created_at,
        id.as_uuid(),
        not_before,
        AHEAD_LISTED,
    )
    .fetch_all(pool)
    .await?;
    let total = rows.first().map_or(0, |r| r.total);
    Ok((total, rows.into_iter().map(|r| r.input_size as u64).collect()))
}

/// The CPU lane's recent speed (live attempts last as long as their recordings: no model).
async fn speed(pool: &PgPool) -> Result<Speed, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT regr_slope(wall_s, input_size) AS slope, regr_intercept(wall_s, input_size) AS intercept,
                  count(*) AS "samples!"
           FROM (SELECT a.wall_s, j.input_size::float8 AS input_size FROM job_attempts a JOIN jobs j ON j.id = a.job_id
                 WHERE a.outcome = 'succeeded' AND a.wall_s IS NOT NULL AND j.lane = 'cpu'
                 ORDER BY a.finished_at DESC LIMIT $1) recent"#,
        MODEL_SAMPLES,
    )
    .fetch_one(pool)
    .await?;
    Ok(Speed { slope: r.slope, intercept: r.intercept, samples: r.samples })
}
