//! Per-caller rate limiting (SPEC B2, 429 with `Retry-After`) with `governor`'s keyed GCRA
//! limiter: a budget per identity subject and per API token, spent after authentication so
//! that no one can spend another caller's budget.

use std::{hash::Hash, num::NonZeroU32, time::Duration};

use governor::{
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
    Quota,
};

/// How many requests a caller may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: 600,
            burst: 60,
        }
    }
}

impl RateLimit {
    fn quota(self) -> Quota {
        let per_minute = NonZeroU32::new(self.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(per_minute).allow_burst(burst)
    }
}

/// The budgets of every caller of one kind (keyed by `K`) seen recently.
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limiter: Option<governor::RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter; `None` lets everything through.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limiter: limit.map(|limit| governor::RateLimiter::keyed(limit.quota())),
        }
    }

    /// Spends one request of `caller`'s budget; `Err` holds how long until one is available.
    pub fn check(&self, caller: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(caller)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets callers whose budget is full again, so that memory follows recent callers.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        // 6 000 a minute: one more every 10 ms once the burst of 3 is spent.
        let limiter = RateLimiter::new(Some(RateLimit {
            per_minute: 6_000,
            burst: 3,
        }));
        let a = "a".to_owned();
        for _ in 0..3 {
            assert!(limiter.check(&a).is_ok());
        }
        let wait = limiter.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(10),
            "{wait:?}"
        );
        assert!(
            limiter.check(&"b".to_owned()).is_ok(),
            "callers are independent"
        );
        std::thread::sleep(Duration::from_millis(11));
        assert!(limiter.check(&a).is_ok(), "the sustained rate refills");
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limiter = RateLimiter::new(None);
        for _ in 0..10_000 {
            assert!(limiter.check(&1u32).is_ok());
        }
    }

    #[test]
    fn idle_callers_are_forgotten() {
        let limiter = RateLimiter::new(Some(RateLimit {
            per_minute: 6_000_000,
            burst: 1,
        }));
        assert!(limiter.check(&7u32).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        limiter.forget_idle();
        let inner = limiter.limiter.as_ref().unwrap();
        assert_eq!(inner.len(), 0);
    }
}
