//! A bounded in-memory map whose entries expire after a TTL: the backstop for anything an
//! invalidation could miss.
//!
//! A load that raced with an invalidation is not cached: callers read [`TtlCache::generation`]
//! before they load from the store and pass it to [`TtlCache::insert`], which refuses the
//! value when an invalidation happened in between.

use std::{
    borrow::Borrow,
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{
        atomic::{AtomicU64, Ordering},
        RwLock,
    },
    time::Duration,
};

use tokio::time::Instant;

/// A bounded map whose entries expire after a TTL.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    generation: AtomicU64,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// A cache whose entries live `ttl` and which holds at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            capacity,
        }
    }

    /// The entry of `key`, if cached and fresh.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(key)
            .filter(|(_, loaded_at)| loaded_at.elapsed() < self.ttl)
            .map(|(value, _)| value.clone())
    }

    /// Call before loading from the store; pass the value to [`TtlCache::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `value` unless an invalidation happened since `generation` was read.
    pub fn insert(&self, generation: u64, key: K, value: V) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, loaded_at)| loaded_at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// The entry of `key`: cached, else loaded by `load` and cached under `owned_key` of the
    /// loaded value (unless an invalidation raced the load). Lookups borrow the key, so a hit
    /// allocates nothing.
    pub async fn get_or_load<Q, E, Fut>(
        &self,
        key: &Q,
        load: impl FnOnce() -> Fut,
        owned_key: impl FnOnce(&V) -> K,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let generation = self.generation();
        let value = load().await?;
        self.insert(generation, owned_key(&value), value.clone());
        Ok(value)
    }

    /// Drops the entry of `key`; loads in flight will not cache their result.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }

    /// Drops every entry (a notification may have been missed); loads in flight will not cache.
    pub fn clear(&self) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// How many entries are cached.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl_secs: u64, capacity: usize) -> TtlCache<String, u32> {
        TtlCache::new(Duration::from_secs(ttl_secs), capacity)
    }

    #[test]
    fn invalidation_removes_and_blocks_racing_loads() {
        let cache = cache(60, 10);
        cache.insert(cache.generation(), "a".into(), 1);
        assert_eq!(cache.get("a"), Some(1));

        let racing = cache.generation();
        cache.invalidate("a");
        assert_eq!(cache.get("a"), None);
        cache.insert(racing, "a".into(), 1);
        assert_eq!(
            cache.get("a"),
            None,
            "a load that raced a revoke is not cached"
        );

        cache.insert(cache.generation(), "b".into(), 2);
        let racing = cache.generation();
        cache.clear();
        assert!(cache.is_empty());
        cache.insert(racing, "b".into(), 2);
        assert!(cache.is_empty(), "a load that raced a clear is not cached");
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = cache(60, 3);
        for (i, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            cache.insert(cache.generation(), key.into(), i as u32);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get("e"), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = cache(5, 10);
        cache.insert(cache.generation(), "a".into(), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(cache.get("a"), None);
    }
}
