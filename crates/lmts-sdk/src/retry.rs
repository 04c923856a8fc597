//! When and how long to wait before trying a request again.

use std::time::Duration;

/// Exponential backoff with jitter, honouring `Retry-After`.
///
/// A request that may have had an effect is never repeated: a revoke is retried only when the
/// service certainly did not act on it (the connection was refused, or it answered 429 or
/// 503), and any other state-changing request ([`Client::request`] with a method other than
/// GET, HEAD, OPTIONS, TRACE) only after a refused connection or a 429: a 503 from a service
/// behind a gateway does not prove it did nothing. Reads are also retried after timeouts,
/// dropped connections, 502, 503 and 504, and so is a derive, which goes with an
/// `Idempotency-Key` that makes lmts answer a repeat with the first derive (SPEC C2), once the
/// client has seen `lmts-features: idempotent-derive` on an answer (capabilities or derive).
///
/// [`Client::request`]: crate::Client::request
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// The backoff before the first retry; it doubles after each.
    pub initial_backoff: Duration,
    /// The most backoff between two attempts.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0-based): half the exponential backoff plus a
    /// random part up to the other half, and at least `retry_after`. `None` when
    /// `retry_after` exceeds [`RetryPolicy::max_retry_after`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry_after.is_some_and(|wait| wait > self.max_retry_after) {
            return None;
        }
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        let half = exponential / 2;
        let jitter = Duration::from_nanos(fastrand::u64(
            0..=half.as_nanos().min(u128::from(u64::MAX)) as u64,
        ));
        Some((half + jitter).max(retry_after.unwrap_or(Duration::ZERO)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let first = policy.delay(0, None).unwrap();
            assert!(
                first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
                "{first:?}"
            );
            let third = policy.delay(2, None).unwrap();
            assert!(
                third >= Duration::from_millis(400) && third <= Duration::from_millis(800),
                "{third:?}"
            );
            let late = policy.delay(30, None).unwrap();
            assert!(late <= policy.max_backoff, "{late:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_too_long_means_give_up() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(policy.delay(0, Some(Duration::from_secs(61))), None);
    }
}
