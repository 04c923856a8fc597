//! `lastUsedAt`, recorded in memory on the request path and written to the store in batches
//! off it (SPEC B8: the stored value trails the truth by at most the flush interval).

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::TokenId;

/// Uses seen by this instance, recently: the latest per token and whether it still has to be
/// written. One map behind one lock, so recording a use costs one lock per request.
#[derive(Debug)]
pub struct UsageLog {
    uses: Mutex<HashMap<TokenId, Use>>,
    retention: TimeDelta,
}

#[derive(Debug, Clone, Copy)]
struct Use {
    at: DateTime<Utc>,
    unwritten: bool,
}

impl UsageLog {
    /// A log that remembers recent uses for `retention` (at least as long as a cached token
    /// list and a flush take together).
    pub fn new(retention: std::time::Duration) -> Self {
        Self {
            uses: Mutex::default(),
            retention: TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX),
        }
    }

    fn uses(&self) -> std::sync::MutexGuard<'_, HashMap<TokenId, Use>> {
        self.uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that `token_id` authenticated a request at `at`.
    pub fn record(&self, token_id: &TokenId, at: DateTime<Utc>) {
        let mut uses = self.uses();
        match uses.get_mut(token_id) {
            Some(last) if last.at >= at => {}
            Some(last) => {
                *last = Use {
                    at,
                    unwritten: true,
                }
            }
            None => {
                uses.insert(
                    token_id.clone(),
                    Use {
                        at,
                        unwritten: true,
                    },
                );
            }
        }
    }

    /// The latest use of `token_id` this instance saw recently, written or not.
    pub fn latest(&self, token_id: &TokenId) -> Option<DateTime<Utc>> {
        self.uses().get(token_id).map(|last| last.at)
    }

    /// Takes every use not written yet, to be written.
    pub fn take(&self) -> Vec<(TokenId, DateTime<Utc>)> {
        self.uses()
            .iter_mut()
            .filter(|(_, last)| last.unwritten)
            .map(|(token_id, last)| {
                last.unwritten = false;
                (token_id.clone(), last.at)
            })
            .collect()
    }

    /// Puts back uses whose write failed, keeping any newer ones recorded meanwhile.
    pub fn restore(&self, failed: Vec<(TokenId, DateTime<Utc>)>) {
        let mut uses = self.uses();
        for (token_id, at) in failed {
            let last = uses.entry(token_id).or_insert(Use {
                at,
                unwritten: true,
            });
            last.at = last.at.max(at);
            last.unwritten = true;
        }
    }

    /// Forgets written uses older than the retention (the store has them by now), in the same
    /// pass counting the uses that wait to be written (after a failed write: those put back).
    pub fn forget_old(&self, now: DateTime<Utc>) -> usize {
        let horizon = now - self.retention;
        let mut pending = 0;
        self.uses().retain(|_, last| {
            pending += usize::from(last.unwritten);
            last.unwritten || last.at >= horizon
        });
        pending
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
        assert_eq!(log.forget_old(t0), 1, "a use put back is pending");
        assert_eq!(log.take().len(), 1, "a failed write is retried");
        assert_eq!(log.forget_old(t0 + TimeDelta::seconds(14)), 0);
        assert!(log.latest(&id).is_some());
        log.forget_old(t0 + TimeDelta::seconds(16));
        assert_eq!(log.latest(&id), None);
    }
}
