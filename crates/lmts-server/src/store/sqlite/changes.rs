//! Other processes' changes on the same SQLite file (SPEC C1: processes sharing a data
//! directory see a revoke within a second). SQLite has no notifications, so a task looks, four
//! times a second, for tokens revoked or derived since the latest change it saw, and delivers
//! them as invalidations. Each look reaches a few seconds further back than that change, so a
//! change whose time was taken before another's but committed after it is still found; a
//! change is delivered once.

use std::{collections::HashMap, time::Duration};

use sqlx::SqlitePool;
use tokio::task::JoinHandle;

use lmts_core::TokenId;

use crate::store::{Invalidation, InvalidationSink};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// How far behind the latest change seen each look starts, in milliseconds.
const LOOKBACK_MS: i64 = 5_000;

/// A token changed: revoked (`revoked`) or derived, at `at` (Unix milliseconds).
type Change = (String, i64, i64, Option<i64>);

/// Starts the task that delivers other processes' changes to `sink`.
pub(super) fn watch(pool: SqlitePool, sink: InvalidationSink) -> JoinHandle<()> {
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
                    Ok(latest) => seen.insert(Seen::from(latest)),
                    Err(_) => continue,
                },
            };
            match changes_since(&pool, seen.latest - LOOKBACK_MS).await {
                Ok(changes) => {
                    if std::mem::take(&mut failing) {
                        // Changes may have been missed while the file could not be read.
                        sink(Invalidation::All);
                    }
                    seen.deliver(changes, &sink);
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

/// The time of the latest change on file (0 for none).
async fn latest_change(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(COALESCE((SELECT MAX(created_at) FROM api_tokens), 0),
                    COALESCE((SELECT MAX(revoked_at) FROM api_tokens), 0))",
    )
    .fetch_one(pool)
    .await
}

/// Tokens revoked or derived at or after `since`.
async fn changes_since(pool: &SqlitePool, since: i64) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_id, profile_id, created_at, revoked_at FROM api_tokens
         WHERE revoked_at >= ?1 OR created_at >= ?1",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// The changes delivered, for as long as a look may find them again.
#[derive(Debug)]
struct Seen {
    /// The time of the latest change seen.
    latest: i64,
    /// Each change delivered, by token and whether it was the revocation, with its time.
    delivered: HashMap<(String, bool), i64>,
}

impl From<i64> for Seen {
    fn from(latest: i64) -> Self {
        Self {
            latest,
            delivered: HashMap::new(),
        }
    }
}

impl Seen {
    fn deliver(&mut self, changes: Vec<Change>, sink: &InvalidationSink) {
        for (token_id, profile_id, created_at, revoked_at) in changes {
            let at = revoked_at.unwrap_or(created_at);
            self.latest = self.latest.max(at);
            let key = (token_id, revoked_at.is_some());
            if self.delivered.insert(key.clone(), at).is_some() {
                continue;
            }
            if key.1 {
                sink(Invalidation::Token(TokenId::new(key.0)));
            }
            sink(Invalidation::Profile(profile_id));
        }
        let horizon = self.latest - LOOKBACK_MS;
        self.delivered.retain(|_, at| *at >= horizon);
    }
}
