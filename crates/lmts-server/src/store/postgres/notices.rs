//! What instances tell each other through `NOTIFY`, and the one connection that hears it.
//!
//! Changes are announced on [`REVOCATION_CHANNEL`] in the transaction that makes them, so a
//! notice is delivered when, and only if, the change commits; PostgreSQL delivers notices in
//! commit order. Payloads:
//!
//! - a derive: `<profile id>:`;
//! - a revoke: `<revocation number>/<profile id>:<token id>` (instances of earlier versions sent
//!   `<profile id>:<token id>`, still understood; they read the new form as unreadable and
//!   forget everything, which is safe); and on [`REVOCATION_TIME_CHANNEL`], which earlier
//!   versions do not hear, `<revocation number>@<Unix milliseconds>`, the announcing instance's
//!   time just before the commit: each hearer counts its delay from then to when it applied
//!   the revocation (`lmts_invalidation_delay_seconds`);
//! - a rotation: as a revoke, preceded on [`ROTATION_CHANNEL`] (earlier versions do not hear
//!   it) by `<revocation number>@<Unix milliseconds>`, when the rotated token stops working:
//!   hearers then end its WebSocket tunnels with the overlap instead of closing them. Notices
//!   of one transaction arrive together and in order, from one server process: an end is
//!   taken only by the revocation notice right after it, of the same number and process
//!   (anything else, a notice forged by another session included, leaves a plain revoke). A
//!   rotation heard without its end closes the tunnels, as a revoke does.
//!
//! Each instance also hears its own heartbeats on a channel of its own (`instances.rs`), on the
//! same connection, so that a heartbeat heard back proves every notice committed before it was
//! applied.

use std::time::Duration;

use chrono::DateTime;
use lmts_core::TokenId;
use sqlx::postgres::{PgConnection, PgListener, PgPool};

use super::{instances::Instance, REVOCATION_CHANNEL, REVOCATION_TIME_CHANNEL, ROTATION_CHANNEL};
use crate::store::{Invalidation, InvalidationSink};

/// How long the listener waits before connecting again after it lost its connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// How long the listener waits before trying again after it could not connect.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A change other instances must hear of.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change<'a> {
    /// A token was derived: the profile's list changed.
    Derived,
    /// A token was revoked, or its expiry moved earlier by a rotation (SPEC C2), by the change
    /// of this number: every instance forgets the token and waits for nothing else.
    Revoked {
        /// The revocation's number, in commit order.
        number: i64,
        /// The revoked token.
        token_id: &'a str,
    },
}

/// The payload announcing `change` to `profile_id`'s tokens.
fn payload(profile_id: i64, change: Change<'_>) -> String {
    match change {
        Change::Derived => format!("{profile_id}:"),
        Change::Revoked { number, token_id } => format!("{number}/{profile_id}:{token_id}"),
    }
}

/// Tells every listening instance that `profile_id` derived a token (its list changed).
/// Delivered when, and only if, the transaction `connection` is in commits; so are the
/// announcements below.
pub(super) async fn announce_derive(
    connection: &mut PgConnection,
    profile_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REVOCATION_CHANNEL)
        .bind(payload(profile_id, Change::Derived))
        .execute(connection)
        .await
        .map(drop)
}

/// Tells every listening instance that the rotation numbered `number` ends its token at
/// `end_ms` (Unix milliseconds): sent before its revocation's announcement, which follows it.
pub(super) async fn announce_rotation_end(
    connection: &mut PgConnection,
    number: i64,
    end_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(ROTATION_CHANNEL)
        .bind(format!("{number}@{end_ms}"))
        .execute(connection)
        .await
        .map(drop)
}

/// Announces the revocations `numbered` (in number order) of `profile_id`'s tokens, in one
/// statement and in that order (a hearer that applied the last has applied them all): each on
/// [`REVOCATION_CHANNEL`], followed by its time on [`REVOCATION_TIME_CHANNEL`].
pub(super) async fn announce_revocations(
    connection: &mut PgConnection,
    profile_id: i64,
    numbered: &[(i64, String)],
) -> Result<(), sqlx::Error> {
    let now_ms = crate::clock::Clock::system().now().timestamp_millis();
    let mut channels = Vec::with_capacity(numbered.len() * 2);
    let mut payloads = Vec::with_capacity(numbered.len() * 2);
    for (number, token_id) in numbered {
        let change = Change::Revoked {
            number: *number,
            token_id,
        };
        channels.extend([REVOCATION_CHANNEL, REVOCATION_TIME_CHANNEL]);
        payloads.extend([payload(profile_id, change), format!("{number}@{now_ms}")]);
    }
    sqlx::query("SELECT pg_notify(channel, payload) FROM unnest($1::text[], $2::text[]) AS n(channel, payload)")
        .bind(channels)
        .bind(payloads)
        .execute(connection)
        .await
        .map(drop)
}

/// The revocation number and time (Unix milliseconds) of a `<number>@<time>` payload.
fn numbered_time(payload: &str) -> Option<(i64, i64)> {
    let (number, at) = payload.split_once('@')?;
    Some((number.parse().ok()?, at.parse().ok()?))
}

/// Counts the delay of a revocation announced on [`REVOCATION_TIME_CHANNEL`], from its time to
/// now; an unreadable payload is ignored (it changes no cache).
fn time_delay(payload: &str) {
    if let Some((_, sent_ms)) = numbered_time(payload) {
        let now_ms = crate::clock::Clock::system().now().timestamp_millis();
        crate::telemetry::invalidation_delay(now_ms.saturating_sub(sent_ms));
    }
}

/// The rotation end heard last on [`ROTATION_CHANNEL`], for the revocation notice that
/// follows it at once: its revocation number, end (Unix milliseconds) and the server process
/// that sent it.
#[derive(Debug, Default)]
struct PendingEnd(Option<(i64, i64, u32)>);

impl PendingEnd {
    /// Holds the end a [`ROTATION_CHANNEL`] payload from server process `sender` announces; an
    /// unreadable one is dropped (its revocation then closes the tunnels, as a revoke does).
    fn heard(&mut self, payload: &str, sender: u32) {
        self.0 = numbered_time(payload).map(|(number, end_ms)| (number, end_ms, sender));
    }

    /// The invalidation of `token_id` by revocation `number`, announced by server process
    /// `sender`: a rotation's when the end held was announced just before it, by the same
    /// process for the same number, else a revocation's. Either way the end held is used up.
    fn invalidation(&mut self, number: Option<i64>, sender: u32, token_id: &str) -> Invalidation {
        let token_id = TokenId::new(token_id);
        let ends_at = self
            .0
            .take()
            .filter(|(held, _, from)| Some(*held) == number && *from == sender)
            .and_then(|(_, end_ms, _)| DateTime::from_timestamp_millis(end_ms));
        match ends_at {
            Some(ends_at) => Invalidation::Rotated { token_id, ends_at },
            None => Invalidation::Token(token_id),
        }
    }
}

/// Delivers one notice on [`REVOCATION_CHANNEL`], sent by server process `sender`, to `sink`: the
/// revoked or rotated token (if any), then the profile's list. Anything unreadable invalidates
/// everything. Answers the revocation's number, once `sink` has applied it.
fn deliver(
    payload: &str,
    sender: u32,
    end: &mut PendingEnd,
    sink: &InvalidationSink,
) -> Option<i64> {
    let Some((number, profile_id, token_id)) = parse(payload) else {
        end.0 = None;
        sink(Invalidation::All);
        return None;
    };
    if token_id.is_empty() {
        end.0 = None;
    } else {
        sink(end.invalidation(number, sender, token_id));
    }
    sink(Invalidation::Profile(profile_id));
    number
}

/// The revocation number (absent for a derive, or a notice of an earlier version), profile id
/// and token id (empty for a derive) of a payload.
fn parse(payload: &str) -> Option<(Option<i64>, i64, &str)> {
    let (head, token_id) = payload.split_once(':')?;
    let (number, profile_id) = match head.split_once('/') {
        Some((number, profile_id)) => (Some(number.parse().ok()?), profile_id),
        None => (None, head),
    };
    Some((number, profile_id.parse().ok()?, token_id))
}

/// Hears other instances' changes and this instance's heartbeats, forever, on one connection.
/// Whenever that connection is (re)established or lost, everything is invalidated: notices sent
/// while no one listened are gone, and no cache may outlive them; while it is lost, the
/// instance's caches stop answering at once.
pub(super) async fn listen(pool: &PgPool, instance: &Instance, sink: &InvalidationSink) {
    loop {
        match open(pool, instance).await {
            Ok((mut listener, committed)) => {
                sink(Invalidation::All);
                // Every revocation committed before LISTEN is covered by forgetting everything.
                instance.applied(committed);
                instance.ask_for_beat();
                tracing::info!(
                    channel = REVOCATION_CHANNEL,
                    instance = instance.id(),
                    "listening for derives and revocations"
                );
                hear(&mut listener, instance, sink).await;
                instance.went_deaf();
                sink(Invalidation::All);
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "revocation listener cannot listen; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// A listening connection, named after the instance (`application_name`, for operators), and
/// the last revocation number committed before it listened.
async fn open(pool: &PgPool, instance: &Instance) -> Result<(PgListener, i64), sqlx::Error> {
    let committed: i64 = sqlx::query_scalar("SELECT last_seq FROM lmts_revocation_counter")
        .fetch_one(pool)
        .await?;
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is re-established here, after everything is forgotten, not inside.
    listener.eager_reconnect(false);
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(instance.listener_name())
        .execute(&mut listener)
        .await?;
    listener
        .listen_all([
            REVOCATION_CHANNEL,
            REVOCATION_TIME_CHANNEL,
            ROTATION_CHANNEL,
            instance.channel().as_str(),
        ])
        .await?;
    Ok((listener, committed))
}

/// Applies what `listener` hears until its connection is lost.
async fn hear(listener: &mut PgListener, instance: &Instance, sink: &InvalidationSink) {
    let mut end = PendingEnd::default();
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) if notice.channel() == REVOCATION_CHANNEL => {
                let sender = notice.process_id();
                if let Some(number) = deliver(notice.payload(), sender, &mut end, sink) {
                    instance.applied(number);
                }
            }
            // Sent just before its revocation notice, in the same transaction.
            Ok(Some(notice)) if notice.channel() == ROTATION_CHANNEL => {
                end.heard(notice.payload(), notice.process_id());
            }
            // Sent after the revocation in the same transaction: heard once it is applied.
            Ok(Some(notice)) if notice.channel() == REVOCATION_TIME_CHANNEL => {
                time_delay(notice.payload());
            }
            Ok(Some(notice)) => instance.heard_beat(notice.payload()),
            Ok(None) => {
                tracing::warn!("revocation listener lost its connection; resynchronising");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "revocation listener failed; reconnecting");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that keeps what it is given.
    fn recording() -> (InvalidationSink, Arc<Mutex<Vec<Invalidation>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: InvalidationSink = {
            let seen = seen.clone();
            Arc::new(move |invalidation| seen.lock().unwrap().push(invalidation))
        };
        (sink, seen)
    }

    #[test]
    fn notices_name_the_revocation_the_profile_and_the_revoked_token() {
        let (sink, seen) = recording();
        let end = &mut PendingEnd::default();
        let revoked = Change::Revoked {
            number: 42,
            token_id: "lmts_abc",
        };
        assert_eq!(deliver(&payload(7, revoked), 1, end, &sink), Some(42));
        assert_eq!(deliver(&payload(7, Change::Derived), 1, end, &sink), None);
        let old = deliver("7:lmts_old", 1, end, &sink);
        assert_eq!(old, None, "an earlier version's");
        assert_eq!(deliver("garbage", 1, end, &sink), None);
        assert_eq!(deliver("x/7:lmts_abc", 1, end, &sink), None);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Invalidation::Token(TokenId::new("lmts_abc")),
                Invalidation::Profile(7),
                Invalidation::Profile(7),
                Invalidation::Token(TokenId::new("lmts_old")),
                Invalidation::Profile(7),
                Invalidation::All,
                Invalidation::All,
            ]
        );
    }

    #[test]
    fn a_rotation_whose_end_was_heard_just_before_ends_the_tunnels_with_it() {
        let (sink, seen) = recording();
        let end = &mut PendingEnd::default();
        let rotated = |number| {
            payload(
                7,
                Change::Revoked {
                    number,
                    token_id: "lmts_rotated",
                },
            )
        };
        end.heard("43@5000", 9);
        assert_eq!(deliver(&rotated(43), 9, end, &sink), Some(43));
        // An end is used once: the same rotation heard again closes, as a revoke does.
        assert_eq!(deliver(&rotated(43), 9, end, &sink), Some(43));
        // Not the number, not the process (a notice forged by another session), or
        // unreadable: a revoke.
        end.heard("44@5000", 9);
        assert_eq!(deliver(&rotated(45), 9, end, &sink), Some(45));
        end.heard("46@5000", 8);
        assert_eq!(deliver(&rotated(46), 9, end, &sink), Some(46));
        end.heard("47@5000", 9);
        end.heard("not@a-time", 9);
        assert_eq!(deliver(&rotated(47), 9, end, &sink), Some(47));
        let token_id = TokenId::new("lmts_rotated");
        let closed = [
            Invalidation::Token(token_id.clone()),
            Invalidation::Profile(7),
        ];
        let mut expected = vec![
            Invalidation::Rotated {
                token_id: token_id.clone(),
                ends_at: DateTime::from_timestamp_millis(5_000).unwrap(),
            },
            Invalidation::Profile(7),
        ];
        for _ in 0..4 {
            expected.extend(closed.clone());
        }
        assert_eq!(*seen.lock().unwrap(), expected);
    }

    #[test]
    fn an_earlier_version_reads_a_numbered_revocation_as_unreadable() {
        // What the payload parser before revocation numbers did with it.
        let before = |payload: &str| {
            payload
                .split_once(':')
                .and_then(|(profile, _)| profile.parse::<i64>().ok())
        };
        let revoked = Change::Revoked {
            number: 42,
            token_id: "lmts_abc",
        };
        assert_eq!(
            before(&payload(7, revoked)),
            None,
            "so it forgets everything"
        );
        assert_eq!(before(&payload(7, Change::Derived)), Some(7));
    }
}
