//! The in-memory cache of verification state in front of the store: a token's signer (key
//! decrypted and HMAC state prepared once), its profile and its scopes.
//!
//! Revocation invalidates an entry at once. A load that raced with an invalidation is not
//! cached (the generation counter tells), and every entry expires after a TTL as a backstop.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use lmts_core::{Scope, Signer, TokenId};
use tokio::time::Instant;

use crate::store::PartnerProfile;

/// Verification state of one live token.
#[derive(Debug)]
pub struct CachedToken {
    /// Its id.
    pub token_id: TokenId,
    /// The owning profile.
    pub profile: PartnerProfile,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// The prepared signer.
    pub signer: Signer,
    loaded_at: Instant,
}

impl CachedToken {
    /// An entry loaded now.
    pub fn new(
        token_id: TokenId,
        profile: PartnerProfile,
        scopes: Vec<Scope>,
        signer: Signer,
    ) -> Self {
        Self {
            token_id,
            profile,
            scopes,
            signer,
            loaded_at: Instant::now(),
        }
    }
}

/// The cache.
#[derive(Debug)]
pub struct TokenCache {
    entries: RwLock<HashMap<TokenId, Arc<CachedToken>>>,
    generation: AtomicU64,
    ttl: Duration,
    capacity: usize,
}

impl TokenCache {
    /// A cache whose entries live `ttl` and which holds at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            capacity,
        }
    }

    /// The entry of `token_id`, if cached and fresh.
    pub fn get(&self, token_id: &str) -> Option<Arc<CachedToken>> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = TokenId::new(token_id);
        entries
            .get(&key)
            .filter(|entry| entry.loaded_at.elapsed() < self.ttl)
            .cloned()
    }

    /// Call before loading from the store; pass the value to [`TokenCache::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `entry` unless an invalidation happened since `generation` was read.
    pub fn insert(&self, generation: u64, entry: Arc<CachedToken>) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.loaded_at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(entry.token_id.clone(), entry);
    }

    /// Drops the entry of `token_id`; loads in flight will not cache their result.
    pub fn invalidate(&self, token_id: &TokenId) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(token_id);
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
    use lmts_core::TokenSecret;

    use super::*;

    fn entry(id: &str) -> Arc<CachedToken> {
        let profile = PartnerProfile {
            id: 1,
            subject: "did:privy:x".into(),
            account: "0x0".into(),
        };
        let signer = Signer::new(&TokenSecret::from_bytes(vec![1; 32]).unwrap());
        Arc::new(CachedToken::new(
            TokenId::new(id),
            profile,
            vec![Scope::Trading],
            signer,
        ))
    }

    #[test]
    fn invalidation_removes_and_blocks_racing_loads() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let generation = cache.generation();
        cache.insert(generation, entry("a"));
        assert!(cache.get("a").is_some());

        let racing = cache.generation();
        cache.invalidate(&TokenId::new("a"));
        assert!(cache.get("a").is_none());
        cache.insert(racing, entry("a"));
        assert!(
            cache.get("a").is_none(),
            "a load that raced a revoke is not cached"
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60), 3);
        for id in ["a", "b", "c", "d", "e"] {
            cache.insert(cache.generation(), entry(id));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get("e").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        cache.insert(cache.generation(), entry("a"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(cache.get("a").is_none());
    }
}
