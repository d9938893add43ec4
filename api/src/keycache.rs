//! A short-lived cache of verified API keys, so that polling costs no key lookup.
//!
//! An entry holds the key's stored SHA-256 and is used only when the presented secret matches it
//! (constant time). Revocations are announced with NOTIFY in the revoking transaction and drop
//! the entry at once; entries also expire after MEDIAQ_KEY_CACHE_TTL. While this process is not
//! listening for revocations (start-up, a lost connection) the cache is bypassed entirely.
//!
//! A fill races a revocation when the lookup reads the key just before the revoking transaction
//! commits and the NOTIFY arrives before the fill inserts (it then finds nothing to drop, and the
//! stale entry would live for the TTL). Every revocation notice therefore bumps a generation
//! under the cache's lock, and a fill inserts only if no notice arrived since its lookup began.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use mediaq_shared::{
    apikey::Credential,
    db::keys::{self, Authenticated},
};
use sqlx::{postgres::PgListener, PgPool};

/// Cached keys at most (a bound against memory growth from many keys).
const MAX_ENTRIES: usize = 10_000;
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct Entry {
    hash: Vec<u8>,
    key: Authenticated,
    verified: Instant,
    touched: Instant,
}

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    listening: AtomicBool,
    /// Revocation notices (and listener restarts) seen; changed only under `entries`' lock.
    generation: AtomicU64,
}

impl KeyCache {
    /// A cache whose entries live `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// The verified key, from the cache or the database; `None` when unknown, revoked or wrong.
    pub async fn verify(&self, pool: &PgPool, credential: &Credential) -> Result<Option<Authenticated>, sqlx::Error> {
        if let Some((key, touch)) = self.cached(credential) {
            if touch {
                let (pool, id) = (pool.clone(), key.id.clone());
                tokio::spawn(async move {
                    if let Err(e) = keys::touch(&pool, &id).await {
                        tracing::debug!(error = %e, "could not record a key's last use");
                    }
                });
            }
            return Ok(Some(key));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some((key, hash)) = keys::lookup(pool, credential).await? else { return Ok(None) };
        keys::touch(pool, &key.id).await?;
        self.insert(key.clone(), hash, generation);
        Ok(Some(key))
    }

    /// The key `id` while it is active (not revoked), without its secret: what a signed playback
    /// link needs on every request. Served from the cache like [`Self::verify`], so a revocation
    /// reaches it through the same NOTIFY.
    pub async fn active(&self, pool: &PgPool, id: &str) -> Result<Option<Authenticated>, sqlx::Error> {
        if self.enabled() {
            let entries = self.entries.lock().expect("key cache lock");
            if let Some(entry) = entries.get(id).filter(|e| e.verified.elapsed() < self.ttl) {
                return Ok(Some(entry.key.clone()));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some((key, hash)) = keys::find_active(pool, id).await? else { return Ok(None) };
        self.insert(key.clone(), hash, generation);
        Ok(Some(key))
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.listening.load(Ordering::Acquire)
    }

    /// The cached key if the secret matches, and whether its last use is due to be written.
    fn cached(&self, credential: &Credential) -> Option<(Authenticated, bool)> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock().expect("key cache lock");
        let entry = entries.get_mut(&credential.id)?;
        if entry.verified.elapsed() >= self.ttl || !credential.matches(&entry.hash) {
            return None;
        }
        let touch = entry.touched.elapsed() >= TOUCH_EVERY;
        if touch {
            entry.touched = Instant::now();
        }
        Some((entry.key.clone(), touch))
    }

    /// Caches a key looked up when the generation was `generation`; not if a revocation notice
    /// arrived since (the lookup may predate that revocation).
    fn insert(&self, key: Authenticated, hash: Vec<u8>, generation: u64) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock().expect("key cache lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.verified.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let now = Instant::now();
        entries.insert(key.id.clone(), Entry { hash, key, verified: now, touched: now });
    }

    fn set_listening(&self, on: bool) {
        if !on {
            self.listening.store(false, Ordering::Release);
        }
        // Whatever was cached before (or while) we were not listening may be stale, and so may
        // a fill that began then.
        let mut entries = self.entries.lock().expect("key cache lock");
        entries.clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(entries);
        if on {
            self.listening.store(true, Ordering::Release);
        }
    }

    /// Drops a revoked key, and makes every fill that began before this notice skip its insert.
    fn revoked(&self, id: &str) {
        let mut entries = self.entries.lock().expect("key cache lock");
        entries.remove(id);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Listens for revocations for as long as the process runs, reconnecting after errors.
    pub async fn listen(self: Arc<Self>, pool: PgPool) {
        if self.ttl.is_zero() {
            return;
        }
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(keys::REVOKED_CHANNEL).await {
                        tracing::warn!(error = %e, "key cache cannot LISTEN; keys are looked up every time");
                    } else {
                        self.set_listening(true);
                        // Ends when the connection is lost: notifications may have been missed.
                        while let Ok(Some(note)) = listener.try_recv().await {
                            self.revoked(note.payload());
                            tracing::info!(key_id = note.payload(), "revoked key dropped from the cache");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "key cache cannot connect; keys are looked up every time"),
            }
            self.set_listening(false);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use mediaq_shared::apikey::{Kind, Scope};

    use super::*;

    fn key(credential: &Credential) -> Authenticated {
        Authenticated { id: credential.id.clone(), owner: "o".into(), scopes: vec![Scope::JobsRead] }
    }

    #[test]
    fn a_fill_that_races_a_revocation_is_not_cached() {
        let cache = KeyCache::new(Duration::from_secs(60));
        cache.set_listening(true);
        let credential = Credential::generate(Kind::ApiKey);
        // A fill reads the key (not yet revoked); the revocation's notice arrives before it inserts.
        let before_lookup = cache.generation.load(Ordering::Acquire);
        cache.revoked(&credential.id);
        cache.insert(key(&credential), credential.secret_hash(), before_lookup);
        assert!(cache.cached(&credential).is_none(), "the stale key must not be served from the cache");
        // A fill with no notice in between is cached, and a later notice drops it.
        let now = cache.generation.load(Ordering::Acquire);
        cache.insert(key(&credential), credential.secret_hash(), now);
        assert!(cache.cached(&credential).is_some());
        cache.revoked(&credential.id);
        assert!(cache.cached(&credential).is_none());
    }
}
