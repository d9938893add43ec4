//! Which failures are retried, and when: persistent exponential backoff with jitter (the next
//! attempt's time is stored in the job row and on the queued task, so it survives restarts).

use std::time::Duration;

use mediaq_shared::{config::duration, FailureCode};

#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct RetryPolicy {
    /// Attempts per job, first included.
    #[arg(long, env = "MEDIAQ_MAX_ATTEMPTS", default_value = "3", value_parser = clap::value_parser!(i32).range(1..))]
    pub max_attempts: i32,
    /// Delay before the second attempt; doubles after each.
    #[arg(long = "retry-base", env = "MEDIAQ_RETRY_BASE", default_value = "10s", value_parser = duration)]
    pub base: Duration,
    /// Longest delay.
    #[arg(long = "retry-max", env = "MEDIAQ_RETRY_MAX", default_value = "10m", value_parser = duration)]
    pub max_delay: Duration,
    /// Whether `timeout` counts as transient.
    #[arg(long, env = "MEDIAQ_RETRY_TIMEOUTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub retry_timeouts: bool,
}

impl RetryPolicy {
    /// Transient causes are the worker's or the machine's, not the file's: they may go away.
    /// Invalid media, limits, unsupported codecs and sandbox violations never do.
    pub fn is_transient(&self, code: FailureCode) -> bool {
        code.is_transient(self.retry_timeouts)
    }

    /// The delay before attempt `used + 1`, after `used` attempts: base * 2^(used-1), capped,
    /// then spread by +-25 % so that jobs failed together do not retry together.
    pub fn delay(&self, used: i32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << (used.clamp(1, 20) - 1) as u32).min(self.max_delay);
        let unit = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0; // [0, 1)
        exp.mul_f64(0.75 + unit * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            retry_timeouts: false,
        }
    }

    #[test]
    fn delays_grow_with_jitter_and_a_cap() {
        let p = policy();
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(7500) && d1 <= Duration::from_millis(12500), "{d1:?}");
            let d2 = p.delay(2);
            assert!(d2 >= Duration::from_secs(15) && d2 <= Duration::from_secs(25), "{d2:?}");
            let d9 = p.delay(9);
            assert!(d9 <= Duration::from_secs(75), "{d9:?}");
        }
    }

    #[test]
    fn only_transient_causes_are_retried() {
        let p = policy();
        for code in ["worker_crashed", "transcoder_crashed", "stalled", "storage_error", "sandbox_unavailable"] {
            assert!(p.is_transient(FailureCode::parse(code).unwrap()), "{code}");
        }
        for code in [
            "invalid_media",
            "unsupported_codec",
            "dimensions_exceeded",
            "sandbox_violation",
            "resource_limit",
            "timeout",
        ] {
            assert!(!p.is_transient(FailureCode::parse(code).unwrap()), "{code}");
        }
        assert!(RetryPolicy { retry_timeouts: true, ..p }.is_transient(FailureCode::Timeout));
    }
}
