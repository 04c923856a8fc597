//! Per-caller rate limiting (SPEC B2, 429 with `Retry-After`): a token bucket per identity
//! subject and per API token, counted after authentication so that no one can spend another
//! caller's budget.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// The buckets of every caller seen recently. Bounded: idle buckets (full again) are dropped.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The most buckets kept before idle ones are swept.
const SWEEP_AT: usize = 100_000;

impl RateLimiter {
    /// A limiter; `None` lets everything through.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket; `Err` holds how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let rate = f64::from(limit.per_minute.max(1)) / 60.0;
        let capacity = f64::from(limit.burst.max(1));
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.refilled_at).as_secs_f64() * rate
                    < capacity
            });
        }
        // Looked up by &str: a known caller costs one lookup and no allocation; a new one
        // starts with a full bucket and spends one request of it.
        let Some(bucket) = buckets.get_mut(caller) else {
            buckets.insert(
                caller.to_owned(),
                Bucket {
                    tokens: capacity - 1.0,
                    refilled_at: now,
                },
            );
            return Ok(());
        };
        let refill = now.duration_since(bucket.refilled_at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(Some(RateLimit {
            per_minute: 60,
            burst: 3,
        }));
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok(), "callers are independent");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limiter = RateLimiter::new(None);
        for _ in 0..10_000 {
            assert!(limiter.check("a").is_ok());
        }
    }
}
