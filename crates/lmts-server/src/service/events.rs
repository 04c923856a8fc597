//! SPEC C2's audit events: what each lifecycle change and each class of failure writes, the
//! bounds on what a request can make the service write, and the page a partner reads.
//!
//! Lifecycle events (derived, rotated, revoked) are made here and written by the store in the
//! transaction of their change; `token.expired` by the store as maintenance notes expiries.
//! Failures and new addresses are written as they are seen, off the request's path.

use std::{
    net::IpAddr,
    sync::{Arc, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use lmts_core::{
    scope::join_scopes,
    signing::format_timestamp,
    wire::{TokenEvent, TokenEventPage, TokenEventType},
    TokenId,
};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{
    caches::CachedToken, rate_limit::RateLimit, rate_limit::RateLimiter, ttl_cache::TtlCache,
    validity::Validity, ServiceError,
};
use crate::store::{blocks_to_text, NewEvent, Store, StoredEvent};

/// The most events a page holds, and how many by default.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

/// How many addresses a cached token remembers itself.
const SEEN_PER_ENTRY: usize = 8;

/// How long an address a token was used from is known without asking the store again.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(3600);

/// The most `auth.failed` events one token may cause a minute, whatever the addresses: a token
/// id is no secret, so anyone may fail with it from many addresses.
const FAILURES_PER_TOKEN: RateLimit = RateLimit {
    per_minute: 10,
    burst: 10,
};

/// The most event writes off the request's path at once; past it, events are dropped (and
/// logged) rather than queued.
const MAX_PENDING_WRITES: usize = 64;

/// Why a request with a live token failed, as `auth.failed` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Failure {
    /// The signature did not match the request.
    Signature,
    /// The timestamp was outside the window.
    Window,
    /// The client was outside the token's `allowedIps`.
    Address,
}

impl Failure {
    fn detail(self) -> &'static str {
        match self {
            Failure::Signature => "signature check failed",
            Failure::Window => "timestamp outside the window",
            Failure::Address => "client outside allowedIps",
        }
    }
}

/// What the service remembers to bound the events requests make it write.
#[derive(Debug)]
pub(super) struct EventLog {
    /// One `auth.failed` per token, failure and address a minute.
    failures: RateLimiter<(TokenId, Failure, Option<IpAddr>)>,
    /// At most [`FAILURES_PER_TOKEN`] for one token.
    failures_per_token: RateLimiter<TokenId>,
    /// Addresses tokens were lately seen using, so that only a new one asks the store.
    known_addresses: TtlCache<(TokenId, IpAddr), ()>,
    /// Room for event writes off the request's path.
    pending: Arc<Semaphore>,
}

impl EventLog {
    /// An empty log remembering at most `capacity` addresses.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            failures: RateLimiter::new(Some(RateLimit {
                per_minute: 1,
                burst: 1,
            })),
            failures_per_token: RateLimiter::new(Some(FAILURES_PER_TOKEN)),
            known_addresses: TtlCache::new(KNOWN_ADDRESS_TTL, capacity),
            pending: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
        }
    }

    /// Forgets failure budgets that are full again (maintenance).
    pub(super) fn forget_idle(&self) {
        self.failures.forget_idle();
        self.failures_per_token.forget_idle();
    }

    /// Writes `event` off the request's path with `write`, if there is room; drops it if not.
    fn write_later<F, Fut>(&self, event: NewEvent, write: F)
    where
        F: FnOnce(NewEvent) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), crate::store::StoreError>> + Send,
    {
        let Ok(room) = Arc::clone(&self.pending).try_acquire_owned() else {
            tracing::warn!(token_id = %event.token_id, kind = event.kind.as_str(), "too many event writes pending; event dropped");
            return;
        };
        tokio::spawn(async move {
            let _room = room;
            let token_id = event.token_id.clone();
            if let Err(error) = write(event).await {
                tracing::warn!(%error, %token_id, "could not write an audit event");
            }
        });
    }

    /// Writes an `auth.failed` event for `token` (live), unless one for the same failure and
    /// address was written in the last minute. Never waits for the store.
    pub(super) fn failed(
        &self,
        store: &Arc<dyn Store>,
        token: &CachedToken,
        failure: Failure,
        (client, now): (Option<IpAddr>, DateTime<Utc>),
    ) {
        let key = (token.token_id.clone(), failure, client);
        if self.failures.check(&key).is_err()
            || self.failures_per_token.check(&token.token_id).is_err()
        {
            return;
        }
        let event = NewEvent {
            profile_id: token.profile.id,
            at: now,
            kind: TokenEventType::AuthFailed,
            token_id: token.token_id.clone(),
            ip: client,
            detail: failure.detail().to_owned(),
        };
        let store = Arc::clone(store);
        self.write_later(
            event,
            |event| async move { store.record_event(&event).await },
        );
    }

    /// Notes that `token` was used from `client`: a `token.new_address` event the first time
    /// (across instances: the store decides). Never waits for the store.
    pub(super) fn used_from(
        &self,
        store: &Arc<dyn Store>,
        token: &CachedToken,
        (client, now): (Option<IpAddr>, DateTime<Utc>),
    ) {
        let Some(client) = client else {
            return;
        };
        // The entry's own few addresses first: the common repeat allocates nothing and shares
        // no lock; the process-wide memory (an hour) is asked once per entry and address.
        {
            let mut seen = token
                .seen_from
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if seen.contains(&client) {
                return;
            }
            if seen.len() < SEEN_PER_ENTRY {
                seen.push(client);
            }
        }
        let key = (token.token_id.clone(), client);
        if self.known_addresses.get(&key).is_some() {
            return;
        }
        self.known_addresses
            .insert(self.known_addresses.generation(), key, ());
        let event = NewEvent {
            profile_id: token.profile.id,
            at: now,
            kind: TokenEventType::NewAddress,
            token_id: token.token_id.clone(),
            ip: Some(client),
            detail: "first request from this address".to_owned(),
        };
        let store = Arc::clone(store);
        self.write_later(event, |event| async move {
            store.note_address(&event).await.map(drop)
        });
    }
}

/// The `token.derived` event of a token with `scopes` and `validity`.
pub(super) fn derived(
    (profile_id, token_id): (i64, &TokenId),
    scopes: &[lmts_core::Scope],
    validity: &Validity,
    (client, now): (Option<IpAddr>, DateTime<Utc>),
) -> NewEvent {
    let expires = validity
        .expires_at
        .map_or_else(|| "never".to_owned(), format_timestamp);
    let blocks = blocks_to_text(&validity.allowed_ips);
    let addresses = if blocks.is_empty() { "any" } else { &blocks };
    NewEvent {
        profile_id,
        at: now,
        kind: TokenEventType::Derived,
        token_id: token_id.clone(),
        ip: client,
        detail: format!(
            "scopes {}; expires {expires}; allowed addresses {addresses}",
            join_scopes(scopes)
        ),
    }
}

/// The `token.revoked` event of `token_id`, revoked with `by`.
pub(super) fn revoked(
    (profile_id, token_id): (i64, &TokenId),
    by: &TokenId,
    (client, now): (Option<IpAddr>, DateTime<Utc>),
) -> NewEvent {
    NewEvent {
        profile_id,
        at: now,
        kind: TokenEventType::Revoked,
        token_id: token_id.clone(),
        ip: client,
        detail: format!("revoked with token {by}"),
    }
}

/// The `token.rotated` event of `token_id`, succeeded by `successor` and working until `ends`.
pub(super) fn rotated(
    (profile_id, token_id): (i64, &TokenId),
    successor: &TokenId,
    ends: DateTime<Utc>,
    (client, now): (Option<IpAddr>, DateTime<Utc>),
) -> NewEvent {
    NewEvent {
        profile_id,
        at: now,
        kind: TokenEventType::Rotated,
        token_id: token_id.clone(),
        ip: client,
        detail: format!(
            "succeeded by {successor}; works until {}",
            format_timestamp(ends)
        ),
    }
}

/// The query of `GET /auth/api-tokens/events`.
#[derive(Debug, Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// Where a page starts and how long it is, from the query string (400 naming the field).
pub(super) fn page_bounds(query: Option<&str>) -> Result<(i64, u32), ServiceError> {
    let query: PageQuery = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ServiceError::invalid("the query must be after=<cursor>&limit=<1..500>"))?;
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|after| *after >= 0)
            .ok_or_else(|| {
                ServiceError::invalid("after must be a cursor from an earlier answer's next")
            })?,
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(limit) => limit
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ServiceError::invalid(format!("limit must be a whole number from 1 to {MAX_PAGE}"))
            })?,
    };
    Ok((after, limit))
}

/// The page of `events` read after `after`: `next` is the last one's id, else `after`.
pub(super) fn page(events: Vec<StoredEvent>, after: i64) -> TokenEventPage {
    let next = events.last().map_or(after, |event| event.id).to_string();
    let events = events
        .into_iter()
        .map(|event| TokenEvent {
            id: event.id.to_string(),
            at: event.at,
            kind: event.kind,
            token_id: event.token_id,
            ip: event.ip,
            detail: event.detail,
        })
        .collect();
    TokenEventPage { events, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bounds_default_and_name_what_is_wrong() {
        assert_eq!(page_bounds(None).unwrap(), (0, 100));
        assert_eq!(page_bounds(Some("after=42&limit=500")).unwrap(), (42, 500));
        assert_eq!(page_bounds(Some("after=")).unwrap(), (0, 100));
        for (query, field) in [
            ("after=x", "after"),
            ("after=-1", "after"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
        ] {
            let Err(ServiceError::Invalid(problems)) = page_bounds(Some(query)) else {
                panic!("{query} was accepted");
            };
            assert!(problems[0].starts_with(field), "{query}: {problems:?}");
        }
    }

    #[test]
    fn next_follows_the_last_event_or_stays() {
        let at = lmts_core::signing::parse_timestamp("2027-01-01T00:00:00.000Z").unwrap();
        let event = |id| StoredEvent {
            id,
            at,
            kind: TokenEventType::Derived,
            token_id: TokenId::new("lmts_a"),
            ip: None,
            detail: String::new(),
        };
        assert_eq!(page(vec![event(3), event(7)], 2).next, "7");
        assert_eq!(page(Vec::new(), 7).next, "7");
    }
}
