//! `lastUsedAt`, recorded in memory on the request path and written to the store in batches
//! off it (SPEC B8: the stored value trails the truth by at most the flush interval).

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Utc};
use lmts_core::TokenId;

/// Uses not yet written to the store.
#[derive(Debug, Default)]
pub struct UsageLog {
    pending: Mutex<HashMap<TokenId, DateTime<Utc>>>,
}

impl UsageLog {
    /// Notes that `token_id` authenticated a request at `at`.
    pub fn record(&self, token_id: &TokenId, at: DateTime<Utc>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match pending.get_mut(token_id) {
            Some(last) if *last >= at => {}
            Some(last) => *last = at,
            None => {
                pending.insert(token_id.clone(), at);
            }
        }
    }

    /// The latest use of `token_id` not yet written, if any.
    pub fn pending(&self, token_id: &TokenId) -> Option<DateTime<Utc>> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.get(token_id).copied()
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
        for (token_id, at) in uses {
            self.record(&token_id, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn keeps_the_latest_use_and_drains() {
        let log = UsageLog::default();
        let id = TokenId::new("a");
        let t0 = DateTime::from_timestamp_millis(1_000).unwrap();
        log.record(&id, t0 + TimeDelta::seconds(5));
        log.record(&id, t0);
        assert_eq!(log.pending(&id), Some(t0 + TimeDelta::seconds(5)));
        let taken = log.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(log.pending(&id), None);
        log.restore(taken);
        assert_eq!(log.pending(&id), Some(t0 + TimeDelta::seconds(5)));
    }
}
