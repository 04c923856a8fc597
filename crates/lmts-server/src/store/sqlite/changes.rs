//! Other processes' revocations and rotations on the same SQLite file (SPEC C1: processes
//! sharing a data directory see a revoke within a second; SPEC C2: and the end of a rotated
//! token's overlap). SQLite has no notifications, so a task looks, four times a second, for
//! tokens revoked or rotated since the latest such change it saw, and delivers each change once
//! as invalidations of the token (a revocation, or a rotation with the end of its overlap) and
//! of its partner's listing. Each look reaches
//! [`LOOKBACK_MS`] further back than that change, or than now if that is earlier: a change takes
//! its time before it waits for the writer, so one timed before another may commit after it,
//! and a clock may step. (Derives elsewhere reach this process's listings when their cache
//! entries expire.) Each change timed after the task started is counted in
//! `lmts_invalidation_delay_seconds`, from the change's time to its delivery.

use std::{collections::HashMap, time::Duration};

use chrono::DateTime;
use lmts_core::TokenId;
use sqlx::SqlitePool;
use tokio::task::JoinHandle;

use crate::store::{Invalidation, InvalidationSink};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// How far behind the latest revocation seen each look starts, in milliseconds.
const LOOKBACK_MS: i64 = 30_000;

/// A token revoked or rotated elsewhere.
#[derive(Debug, sqlx::FromRow)]
struct Changed {
    token_id: String,
    profile_id: i64,
    /// When its latest change was made (Unix milliseconds).
    changed_at: i64,
    /// Whether it is revoked (else it was rotated, and no more).
    revoked: bool,
    /// When it stops working (Unix milliseconds): a rotated token's is its overlap's end.
    expires_at: Option<i64>,
}

impl Changed {
    /// What the change invalidates in the token cache: a revocation closes the token's tunnels,
    /// a rotation ends them with its overlap.
    fn invalidation(&self) -> Invalidation {
        let token_id = TokenId::new(self.token_id.as_str());
        match self.expires_at.and_then(DateTime::from_timestamp_millis) {
            Some(ends_at) if !self.revoked => Invalidation::Rotated { token_id, ends_at },
            _ => Invalidation::Token(token_id),
        }
    }
}

/// Starts the task that delivers other processes' revocations and rotations to `sink`.
pub(super) fn watch(pool: SqlitePool, sink: InvalidationSink) -> JoinHandle<()> {
    let started_ms = crate::clock::Clock::system().now().timestamp_millis();
    tokio::spawn(async move {
        let mut seen: Option<Seen> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let seen = match &mut seen {
                Some(seen) => seen,
                None => match latest_change(&pool).await {
                    Ok(latest) => seen.insert(Seen::new(latest, started_ms)),
                    Err(_) => continue,
                },
            };
            // Behind the latest revocation seen, or behind now if that is earlier: a revocation
            // stamped by a clock stepped forward must not hide the ones that follow.
            let now_ms = crate::clock::Clock::system().now().timestamp_millis();
            let since = seen.horizon(now_ms);
            match changed_since(&pool, since).await {
                Ok(changed) => {
                    if std::mem::take(&mut failing) {
                        // Revocations may have been missed while the file could not be read.
                        sink(Invalidation::All);
                    }
                    seen.deliver(changed, &sink);
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot look for other processes' revocations");
                }
                Err(_) => {}
            }
        }
    })
}

/// The time of the latest revocation or rotation on file (0 for none).
async fn latest_change(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(
             (SELECT COALESCE(MAX(revoked_at), 0) FROM api_tokens WHERE revoked_at IS NOT NULL),
             (SELECT COALESCE(MAX(rotated_at), 0) FROM api_tokens WHERE rotated_at IS NOT NULL))",
    )
    .fetch_one(pool)
    .await
}

/// Tokens revoked or rotated at or after `since`, each with the time of its latest change.
async fn changed_since(pool: &SqlitePool, since: i64) -> Result<Vec<Changed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_id, profile_id,
             MAX(COALESCE(revoked_at, 0), COALESCE(rotated_at, 0)) AS changed_at,
             revoked_at IS NOT NULL AS revoked, expires_at
         FROM api_tokens
         WHERE (revoked_at IS NOT NULL AND revoked_at >= ?1)
            OR (rotated_at IS NOT NULL AND rotated_at >= ?1)",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// The changes delivered, for as long as a look may find them again.
#[derive(Debug)]
struct Seen {
    /// When the task started: a change timed before it is delivered again, but its delay is
    /// not this process's to count.
    started: i64,
    /// The time of the latest change seen.
    latest: i64,
    /// Each token whose latest change was delivered, with that change's time and whether it
    /// was a revocation: a revoke timed at or before the rotation it follows (its time is its
    /// request's, not its commit's) is still a change, and closes the token's tunnels.
    delivered: HashMap<String, (i64, bool)>,
}

impl Seen {
    fn new(latest: i64, started: i64) -> Self {
        Self {
            started,
            latest,
            delivered: HashMap::new(),
        }
    }

    /// Where a look at `now_ms` starts: behind the latest change seen, or behind now if that
    /// is earlier.
    fn horizon(&self, now_ms: i64) -> i64 {
        self.latest.min(now_ms) - LOOKBACK_MS
    }

    fn deliver(&mut self, changed: Vec<Changed>, sink: &InvalidationSink) {
        let now_ms = crate::clock::Clock::system().now().timestamp_millis();
        for token in changed {
            self.latest = self.latest.max(token.changed_at);
            let change = (token.changed_at, token.revoked);
            let earlier = self.delivered.insert(token.token_id.clone(), change);
            if earlier == Some(change) {
                continue;
            }
            if token.changed_at > self.started {
                crate::telemetry::invalidation_delay(now_ms - token.changed_at);
            }
            sink(token.invalidation());
            sink(Invalidation::Profile(token.profile_id));
        }
        // Kept as long as a look may find them again (a clock stepped back included).
        let horizon = self.horizon(now_ms);
        self.delivered.retain(|_, (at, _)| *at >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(revoked: bool, expires_at: Option<i64>) -> Changed {
        Changed {
            token_id: "lmts_changed".to_owned(),
            profile_id: 7,
            changed_at: 1_000,
            revoked,
            expires_at,
        }
    }

    #[test]
    fn a_revoke_timed_before_the_rotation_it_follows_is_still_delivered() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink: InvalidationSink = {
            let seen = seen.clone();
            std::sync::Arc::new(move |invalidation| seen.lock().unwrap().push(invalidation))
        };
        let mut delivered = Seen::new(0, 0);
        // Rotated at 1000; then revoked by a request stamped 999 (the row's latest change
        // stays 1000), found again by the next look, and by the one after.
        delivered.deliver(vec![changed(false, Some(5_000))], &sink);
        delivered.deliver(vec![changed(false, Some(5_000))], &sink);
        delivered.deliver(vec![changed(true, Some(5_000))], &sink);
        delivered.deliver(vec![changed(true, Some(5_000))], &sink);
        let token_id = TokenId::new("lmts_changed");
        let ends_at = DateTime::from_timestamp_millis(5_000).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Invalidation::Rotated {
                    token_id: token_id.clone(),
                    ends_at
                },
                Invalidation::Profile(7),
                Invalidation::Token(token_id),
                Invalidation::Profile(7),
            ]
        );
    }

    #[test]
    fn a_rotation_carries_its_end_and_a_revocation_closes() {
        let token_id = TokenId::new("lmts_changed");
        let ends_at = DateTime::from_timestamp_millis(5_000).unwrap();
        assert_eq!(
            changed(false, Some(5_000)).invalidation(),
            Invalidation::Rotated {
                token_id: token_id.clone(),
                ends_at
            }
        );
        // Revoked during its overlap, or with no end to keep: closed.
        assert_eq!(
            changed(true, Some(5_000)).invalidation(),
            Invalidation::Token(token_id.clone())
        );
        assert_eq!(
            changed(false, None).invalidation(),
            Invalidation::Token(token_id)
        );
    }
}
