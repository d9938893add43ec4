//! When a job will start and finish, estimated from its [`Line`]: the lane's slots each free up
//! when their running job is estimated to end; the jobs ahead take the earliest free slot in
//! turn; this job starts at the earliest free slot after them and takes its own estimated time.
//!
//! A conversion's time is estimated from its input's bytes, the only size known before a worker
//! probes the file (the API never decodes media), with the lane's recent speed ([`Speed`]: wall
//! seconds against bytes, fitted to recent attempts); a running job's from its progress once it
//! has some. Live jobs last as long as their recordings: they get a place in line, no times.
//!
//! The fitted line is what conversions took when they ran; the running jobs say how fast they
//! go now. When they run slower or faster than the line says (more workers sharing a host's
//! cores, a busy neighbour), every waiting job's time is scaled by that ratio ([`pace`]).

use crate::{
    db::line::{Line, Running, Speed},
    queue::Lane,
};

/// Used until the lane has a few finished attempts to learn from: 1 s + 3 s per MB.
const DEFAULT_INTERCEPT_S: f64 = 1.0;
const DEFAULT_SECONDS_PER_BYTE: f64 = 3.0 / 1_000_000.0;
/// Attempts needed before the fitted line is trusted.
const MIN_SAMPLES: i64 = 3;
/// Progress below this says too little about the rest.
const MIN_PROGRESS: f64 = 0.05;
/// Shortest estimate of a conversion.
const MIN_SECONDS: f64 = 0.2;
/// Bounds of the running jobs' pace against the fitted line.
const PACE_RANGE: (f64, f64) = (0.25, 4.0);

/// Seconds from now until the job starts (0 when running) and until it finishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub start_in_s: f64,
    pub finish_in_s: f64,
}

/// Estimated wall seconds to convert an input of `bytes`.
pub fn seconds_for(speed: &Speed, bytes: u64) -> f64 {
    let fitted = match (speed.slope, speed.intercept) {
        (Some(slope), Some(intercept)) if speed.samples >= MIN_SAMPLES && slope > 0.0 => {
            Some(intercept + slope * bytes as f64)
        }
        _ => None,
    };
    fitted.unwrap_or(DEFAULT_INTERCEPT_S + DEFAULT_SECONDS_PER_BYTE * bytes as f64).max(MIN_SECONDS)
}

/// Seconds left of a running job.
fn remaining(speed: &Speed, job: &Running) -> f64 {
    if job.progress >= MIN_PROGRESS && job.progress < 1.0 {
        job.elapsed_s / job.progress - job.elapsed_s
    } else {
        (seconds_for(speed, job.input_bytes) - job.elapsed_s).max(0.0)
    }
}

/// How much longer than the fitted line the running jobs are taking now: the mean over those
/// with enough progress of (elapsed / progress) / the line's time for their input; 1 when none
/// has.
pub fn pace(speed: &Speed, running: &[Running]) -> f64 {
    let ratios: Vec<f64> = running
        .iter()
        .filter(|r| r.progress >= MIN_PROGRESS && r.progress < 1.0)
        .map(|r| r.elapsed_s / r.progress / seconds_for(speed, r.input_bytes))
        .collect();
    if ratios.is_empty() {
        return 1.0;
    }
    (ratios.iter().sum::<f64>() / ratios.len() as f64).clamp(PACE_RANGE.0, PACE_RANGE.1)
}

/// The estimate for the job whose line this is (`own_bytes`: its input's size), or `None` when
/// there is nothing to go by: a live lane, or no worker alive in the lane.
pub fn estimate(line: &Line, own: crate::JobId, own_bytes: u64) -> Option<Estimate> {
    if line.lane == Lane::Live || line.slots <= 0 {
        return None;
    }
    if let Some(me) = line.running.iter().find(|r| r.id == own) {
        let left = remaining(&line.model, me);
        return Some(Estimate { start_in_s: 0.0, finish_in_s: left });
    }
    // Each slot's time until free: its running job's rest, or 0 for an idle one. More running
    // jobs than live slots (a worker just died): the extra ones hold no slot.
    let mut free: Vec<f64> = line.running.iter().map(|r| remaining(&line.model, r)).collect();
    free.sort_by(f64::total_cmp);
    free.truncate(line.slots as usize);
    free.resize(line.slots as usize, 0.0);
    let pace = pace(&line.model, &line.running);
    let seconds_for = |speed: &Speed, bytes: u64| seconds_for(speed, bytes) * pace;
    let mut take = |seconds: f64| {
        let (i, start) = free.iter().copied().enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).expect("a slot");
        free[i] = start + seconds;
        start
    };
    for &bytes in &line.ahead_bytes {
        take(seconds_for(&line.model, bytes));
    }
    // Jobs ahead beyond the listed ones: the average of the listed.
    let unlisted = (line.position as usize).saturating_sub(line.ahead_bytes.len());
    if unlisted > 0 {
        let avg = line.ahead_bytes.iter().sum::<u64>() / line.ahead_bytes.len().max(1) as u64;
        for _ in 0..unlisted {
            take(seconds_for(&line.model, avg));
        }
    }
    let own_seconds = seconds_for(&line.model, own_bytes);
    let start = take(own_seconds);
    Some(Estimate { start_in_s: start, finish_in_s: start + own_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;

    fn fitted(intercept: f64, slope: f64) -> Speed {
        Speed { slope: Some(slope), intercept: Some(intercept), samples: 10 }
    }

    fn line(slots: i64, running: Vec<Running>, ahead: Vec<u64>) -> Line {
        Line {
            lane: Lane::Cpu,
            position: ahead.len() as i64,
            ahead_bytes: ahead,
            running,
            slots,
            model: fitted(1.0, 1e-6),
        }
    }

    #[test]
    fn an_idle_lane_starts_at_once() {
        let e = estimate(&line(1, vec![], vec![]), JobId::generate(), 4_000_000).unwrap();
        assert_eq!(e.start_in_s, 0.0);
        assert!((e.finish_in_s - 5.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn jobs_ahead_share_the_slots() {
        // Two slots, four 1 MB jobs ahead (2 s each): two rounds, then this one.
        let e = estimate(&line(2, vec![], vec![1_000_000; 4]), JobId::generate(), 1_000_000).unwrap();
        assert!((e.start_in_s - 4.0).abs() < 1e-9, "{e:?}");
        assert!((e.finish_in_s - 6.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn a_running_job_counts_by_its_progress() {
        let other = Running { id: JobId::generate(), input_bytes: 9_000_000, progress: 0.5, elapsed_s: 3.0 };
        let e = estimate(&line(1, vec![other], vec![]), JobId::generate(), 1_000_000).unwrap();
        assert!((e.start_in_s - 3.0).abs() < 1e-9, "{e:?}");
        let me = Running { id: JobId::generate(), input_bytes: 1_000_000, progress: 0.25, elapsed_s: 1.0 };
        let e = estimate(&line(1, vec![me], vec![]), me.id, 1_000_000).unwrap();
        assert_eq!(e, Estimate { start_in_s: 0.0, finish_in_s: 3.0 });
    }

    #[test]
    fn waiting_jobs_go_at_the_running_jobs_pace() {
        // The line says 1 s + 1 s per MB; the running 3 MB job has taken 4 s for 25 %, so 16 s
        // in all where the line says 4 s: 4 times slower now (two workers on the cores that
        // one had, say). Two slots: this 1 MB job starts at once and takes 4 x 2 s.
        let slow = Running { id: JobId::generate(), input_bytes: 3_000_000, progress: 0.25, elapsed_s: 4.0 };
        assert!((pace(&fitted(1.0, 1e-6), &[slow]) - 4.0).abs() < 1e-9);
        let e = estimate(&line(2, vec![slow], vec![]), JobId::generate(), 1_000_000).unwrap();
        assert_eq!(e.start_in_s, 0.0);
        assert!((e.finish_in_s - 8.0).abs() < 1e-9, "{e:?}");
        // Twice as fast as the line: half the time. Too little progress to tell: the line.
        let fast = Running { progress: 0.5, elapsed_s: 1.0, ..slow };
        assert!((pace(&fitted(1.0, 1e-6), &[fast]) - 0.5).abs() < 1e-9);
        let fresh = Running { progress: 0.01, elapsed_s: 0.1, ..slow };
        assert_eq!(pace(&fitted(1.0, 1e-6), &[fresh]), 1.0);
        assert_eq!(pace(&fitted(1.0, 1e-6), &[]), 1.0);
    }

    #[test]
    fn no_estimate_without_workers_or_for_live_jobs() {
        assert!(estimate(&line(0, vec![], vec![]), JobId::generate(), 1).is_none());
        let live = Line { lane: Lane::Live, ..line(1, vec![], vec![]) };
        assert!(estimate(&live, JobId::generate(), 1).is_none());
    }

    #[test]
    fn the_default_speed_holds_until_enough_samples() {
        let few = Speed { slope: Some(1.0), intercept: Some(0.0), samples: 2 };
        assert!((seconds_for(&few, 1_000_000) - 4.0).abs() < 1e-9);
        assert!((seconds_for(&fitted(-5.0, 1e-6), 0) - MIN_SECONDS).abs() < 1e-9);
    }
}
