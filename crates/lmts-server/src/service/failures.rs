//! A budget of authentication failures per client address, so that guessing token ids,
//! signatures or identity tokens costs the guesser and not the service: each 401 spends from
//! the address's budget, and once it is spent the address gets 429 before any work is done,
//! until the budget refills.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        RwLock,
    },
};

use tokio::time::Instant;

use super::{rate_limit::RateLimiter, RateLimit, ServiceError};

/// Failures allowed per client address.
#[derive(Debug)]
pub(super) struct FailureBudget {
    spent: RateLimiter<IpAddr>,
    /// Addresses whose budget is spent, until when. Empty in normal operation, so that the
    /// check on every request is one atomic load.
    blocked: RwLock<HashMap<IpAddr, Instant>>,
    blocked_count: AtomicUsize,
}

impl FailureBudget {
    /// A budget of `limit` failures per address; `None` for none.
    pub(super) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            spent: RateLimiter::new(limit),
            blocked: RwLock::default(),
            blocked_count: AtomicUsize::new(0),
        }
    }

    /// Refuses an address whose budget is spent, before any work is done for it.
    pub(super) fn admit(&self, client: Option<IpAddr>) -> Result<(), ServiceError> {
        let Some(client) = client else { return Ok(()) };
        if self.blocked_count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let blocked = self
            .blocked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match blocked.get(&client) {
            Some(until) if *until > Instant::now() => {
                Err(ServiceError::rate_limited(*until - Instant::now()))
            }
            _ => Ok(()),
        }
    }

    /// Spends one failure of `client`'s budget: answers `failure` itself while the budget
    /// lasts, and a 429 once it is spent.
    pub(super) fn charge(&self, client: Option<IpAddr>, failure: ServiceError) -> ServiceError {
        let Some(client) = client else { return failure };
        let Err(wait) = self.spent.check(&client) else {
            return failure;
        };
        tracing::warn!(%client, "authentication failure budget spent; refusing the address for a while");
        let mut blocked = self
            .blocked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        blocked.insert(client, Instant::now() + wait);
        self.blocked_count.store(blocked.len(), Ordering::Release);
        ServiceError::rate_limited(wait)
    }

    /// Forgets addresses whose block is over and whose budget is full again.
    pub(super) fn forget_idle(&self) {
        self.spent.forget_idle();
        let mut blocked = self
            .blocked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        self.blocked_count.store(blocked.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_burst_block_the_address_only() {
        let budget = FailureBudget::new(Some(RateLimit {
            per_minute: 1,
            burst: 2,
        }));
        let guesser = Some(IpAddr::from([203, 0, 113, 9]));
        let other = Some(IpAddr::from([203, 0, 113, 10]));
        let failure = || ServiceError::unauthenticated("no");
        for _ in 0..2 {
            assert!(budget.admit(guesser).is_ok());
            let answer = budget.charge(guesser, failure());
            assert!(matches!(answer, ServiceError::Unauthenticated(_)));
        }
        let answer = budget.charge(guesser, failure());
        assert!(
            matches!(answer, ServiceError::RateLimited { .. }),
            "{answer:?}"
        );
        assert!(matches!(
            budget.admit(guesser),
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(
            budget.admit(other).is_ok(),
            "other addresses are not touched"
        );
        assert!(budget.admit(None).is_ok(), "no address, no budget");
    }
}
