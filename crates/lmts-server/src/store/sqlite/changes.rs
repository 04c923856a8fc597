//! Other processes' revocations on the same SQLite file (SPEC C1: processes sharing a data
//! directory see a revoke within a second). SQLite has no notifications, so a task looks, four
//! times a second, for tokens revoked since the latest revocation it saw, and delivers each
//! once as invalidations of the token and of its partner's listing. Each look reaches
//! [`LOOKBACK_MS`] further back than that revocation, or than now if that is earlier: a revoke
//! takes its time before it waits for the writer, so one timed before another may commit after
//! it, and a clock may step. (Derives elsewhere reach this process's listings when their cache
//! entries expire.)

use std::{collections::HashMap, time::Duration};

use lmts_core::TokenId;
use sqlx::SqlitePool;
use tokio::task::JoinHandle;

use crate::store::{Invalidation, InvalidationSink};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// How far behind the latest revocation seen each look starts, in milliseconds.
const LOOKBACK_MS: i64 = 30_000;

/// A token revoked elsewhere.
#[derive(Debug, sqlx::FromRow)]
struct Revoked {
    token_id: String,
    profile_id: i64,
    /// When (Unix milliseconds).
    revoked_at: i64,
}

/// Starts the task that delivers other processes' revocations to `sink`.
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
                None => match latest_revocation(&pool).await {
                    Ok(latest) => seen.insert(Seen::from(latest)),
                    Err(_) => continue,
                },
            };
            // Behind the latest revocation seen, or behind now if that is earlier: a revocation
            // stamped by a clock stepped forward must not hide the ones that follow.
            let now_ms = crate::clock::Clock::system().now().timestamp_millis();
            let since = seen.latest.min(now_ms) - LOOKBACK_MS;
            match revoked_since(&pool, since).await {
                Ok(revoked) => {
                    if std::mem::take(&mut failing) {
                        // Revocations may have been missed while the file could not be read.
                        sink(Invalidation::All);
                    }
                    seen.deliver(revoked, &sink);
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

/// The time of the latest revocation on file (0 for none).
async fn latest_revocation(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(revoked_at), 0) FROM api_tokens WHERE revoked_at IS NOT NULL",
    )
    .fetch_one(pool)
    .await
}

/// Tokens revoked at or after `since`.
async fn revoked_since(pool: &SqlitePool, since: i64) -> Result<Vec<Revoked>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_id, profile_id, revoked_at FROM api_tokens
         WHERE revoked_at IS NOT NULL AND revoked_at >= ?1",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// The revocations delivered, for as long as a look may find them again.
#[derive(Debug)]
struct Seen {
    /// The time of the latest revocation seen.
    latest: i64,
    /// Each token whose revocation was delivered, with its time.
    delivered: HashMap<String, i64>,
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
    fn deliver(&mut self, revoked: Vec<Revoked>, sink: &InvalidationSink) {
        for token in revoked {
            self.latest = self.latest.max(token.revoked_at);
            if self
                .delivered
                .insert(token.token_id.clone(), token.revoked_at)
                .is_some()
            {
                continue;
            }
            sink(Invalidation::Token(TokenId::new(token.token_id)));
            sink(Invalidation::Profile(token.profile_id));
        }
        let horizon = self.latest - LOOKBACK_MS;
        self.delivered.retain(|_, at| *at >= horizon);
    }
}
