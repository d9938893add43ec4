//! The storage half of `/readyz`, cached: the check writes and deletes a probe (with S3, a PUT
//! and a DELETE), and `/readyz` needs no credential, so an uncached check let anyone make the
//! API send two storage requests per request. The outcome is kept for [`TTL`]; callers arriving
//! while a check runs wait for it rather than starting their own.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

/// How long a storage check's outcome is reused.
pub const TTL: Duration = Duration::from_secs(5);

pub struct CachedCheck {
    ttl: Duration,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl CachedCheck {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, last: Mutex::new(None) }
    }

    /// The last outcome if it is younger than the TTL, else the outcome of `check` run now.
    pub async fn get<F, Fut>(&self, check: F) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return outcome.clone();
            }
        }
        let outcome = check().await;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    #[tokio::test]
    async fn one_check_per_ttl_however_many_callers() {
        let cache = Arc::new(CachedCheck::new(Duration::from_millis(300)));
        let runs = Arc::new(AtomicUsize::new(0));
        let check = |runs: Arc<AtomicUsize>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<(), _>("refused".to_owned())
        };
        let mut calls = Vec::new();
        for _ in 0..50 {
            let (cache, runs) = (cache.clone(), runs.clone());
            calls.push(tokio::spawn(async move { cache.get(|| check(runs)).await }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap(), Err("refused".to_owned()), "failures are cached too");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let _ = cache.get(|| check(runs.clone())).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "checked again once the outcome is stale");
    }
}
