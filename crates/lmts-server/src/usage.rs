//! `lastUsedAt`, recorded in memory on the request path and written to the store in batches
//! off it (SPEC B8: the stored value trails the truth by at most the flush interval).

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::TokenId;

/// Uses seen by this instance: those not yet written, and recent ones, which a cached token
/// list may not show yet.
#[derive(Debug)]
pub struct UsageLog {
    pending: Mutex<HashMap<TokenId, DateTime<Utc>>>,
    recent: Mutex<HashMap<TokenId, DateTime<Utc>>>,
    retention: TimeDelta,
}

fn keep_latest(map: &mut HashMap<TokenId, DateTime<Utc>>, token_id: &TokenId, at: DateTime<Utc>) {
    match map.get_mut(token_id) {
        Some(last) if *last >= at => {}
        Some(last) => *last = at,
        None => {
            map.insert(token_id.clone(), at);
        }
    }
}

impl UsageLog {
    /// A log that remembers recent uses for `retention` (at least as long as a cached token
    /// list and a flush take together).
    pub fn new(retention: std::time::Duration) -> Self {
        Self {
            pending: Mutex::default(),
            recent: Mutex::default(),
            retention: TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX),
        }
    }

    /// Notes that `token_id` authenticated a request at `at`.
    pub fn record(&self, token_id: &TokenId, at: DateTime<Utc>) {
        keep_latest(
            &mut self.pending.lock().unwrap_or_else(|p| p.into_inner()),
            token_id,
            at,
        );
        keep_latest(
            &mut self.recent.lock().unwrap_or_else(|p| p.into_inner()),
            token_id,
            at,
        );
    }

    /// The latest use of `token_id` this instance saw recently, written or not.
    pub fn latest(&self, token_id: &TokenId) -> Option<DateTime<Utc>> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        recent.get(token_id).copied()
    }

    /// Takes every pending use, to be written.
    pub fn take(&self) -> Vec<(TokenId, DateTime<Utc>)> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.drain().collect()
    }

    /// Puts back uses whose write failed, keeping any newer ones recorded meanwhile.
    pub fn restore(&self, uses: Vec<(TokenId, DateTime<Utc>)>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (token_id, at) in uses {
            keep_latest(&mut pending, &token_id, at);
        }
    }

    /// Forgets recent uses older than the retention (the store has them by now).
    pub fn forget_old(&self, now: DateTime<Utc>) {
        let horizon = now - self.retention;
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        recent.retain(|_, at| *at >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_use_drains_pending_and_remembers_recent() {
        let log = UsageLog::new(std::time::Duration::from_secs(10));
        let id = TokenId::new("a");
        let t0 = DateTime::from_timestamp_millis(1_000_000).unwrap();
        log.record(&id, t0 + TimeDelta::seconds(5));
        log.record(&id, t0);
        let taken = log.take();
        assert_eq!(taken, vec![(id.clone(), t0 + TimeDelta::seconds(5))]);
        assert!(log.take().is_empty(), "drained");
        assert_eq!(
            log.latest(&id),
            Some(t0 + TimeDelta::seconds(5)),
            "still remembered"
        );
        log.restore(taken);
        assert_eq!(log.take().len(), 1, "a failed write is retried");
        log.forget_old(t0 + TimeDelta::seconds(14));
        assert!(log.latest(&id).is_some());
        log.forget_old(t0 + TimeDelta::seconds(16));
        assert_eq!(log.latest(&id), None);
    }
}
