//! Persistent state behind one trait, so that backends are interchangeable.
//!
//! Rows are their own types, separate from the wire types, and none of them prints a secret.
//! Times are stored as milliseconds since the Unix epoch.
//!
//! [`Store`] is implemented once, over what each backend does its own way (`backend.rs`): the
//! statements both dialects share are written there, rows are decoded once (`rows.rs`), and
//! `sqlite.rs` and `postgres.rs` keep their connections, their dialect's statements and, for
//! PostgreSQL, its error codes and cross-instance notifications. The replay record is written
//! in batches (`replay.rs`).

/// The SQL condition of a live token at the parameter `$now` (a literal: `"$3"`, `"?5"`):
/// neither revoked nor expired. Every statement about live tokens spells it with this, so that
/// "live" means one thing (SPEC C2: an expired token leaves every live-token query).
macro_rules! live_at {
    ($now:literal) => {
        concat!(
            "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ",
            $now,
            ")"
        )
    };
}

mod backend;
mod group_commit;
mod postgres;
mod replay;
mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use lmts_core::{scope::join_scopes as scopes_to_text, wire::TokenEventType, Scope, TokenId};

pub use postgres::{PostgresOptions, PostgresStore, EVENT_LOCK_CLASS, REVOCATION_CHANNEL};
pub use sqlite::{SqliteStore, DATABASE_FILE};

use crate::{crypto::SealedSecret, keys::KeyUse};

/// A partner profile: one per identity subject, created on first sight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerProfile {
    /// Positive id that fits in `i32`.
    pub id: i64,
    /// The identity's `sub` (`did:privy:...`).
    pub subject: String,
    /// The EIP-55 wallet address.
    pub account: String,
}

/// What an operator allows a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerSettings {
    /// Whether the partner may derive, list and revoke tokens.
    pub token_management_enabled: bool,
    /// The scopes the partner may request, in the contract's order.
    pub allowed_scopes: Vec<Scope>,
}

impl PartnerSettings {
    /// The settings of a partner no one configured, before an operator changes the default
    /// (SPEC B10): token management on, `trading` only.
    pub fn builtin_default() -> Self {
        Self {
            token_management_enabled: true,
            allowed_scopes: vec![Scope::Trading],
        }
    }
}

/// Whose settings: one partner's, or the default for all partners without their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsKey {
    /// The default.
    Default,
    /// The partner with this wallet address (any case).
    Account(String),
}

impl SettingsKey {
    /// The stored key: `*` or the lower-case address.
    fn stored(&self) -> String {
        match self {
            SettingsKey::Default => "*".to_owned(),
            SettingsKey::Account(account) => account.to_ascii_lowercase(),
        }
    }
}

/// A token about to be stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its id.
    pub token_id: TokenId,
    /// The owning profile.
    pub profile_id: i64,
    /// The label, if any.
    pub label: Option<String>,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from; empty: any.
    pub allowed_ips: Vec<IpNet>,
    /// The sealed secret.
    pub sealed: SealedSecret,
    /// The idempotency key it is derived under, if any, recorded in the same step.
    pub once: Option<DeriveKey>,
    /// The audit event of the derive, written in the same step.
    pub event: Option<NewEvent>,
}

/// An audit event about to be written (SPEC C2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The partner it belongs to.
    pub profile_id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: TokenEventType,
    /// The token it happened to.
    pub token_id: TokenId,
    /// The client's address, when a request made it happen.
    pub ip: Option<IpAddr>,
    /// What else there is to say.
    pub detail: String,
}

/// The audit event of each token a bulk change makes, built by the domain.
pub type EventOf = Arc<dyn Fn(&TokenId) -> NewEvent + Send + Sync>;

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id, in the order events of one partner were written.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: TokenEventType,
    /// The token it happened to.
    pub token_id: TokenId,
    /// The client's address, if any.
    pub ip: Option<IpAddr>,
    /// What else there is to say.
    pub detail: String,
}

/// The token a rotation derives (SPEC C2): its own id, secret and creation time; its label,
/// scopes, addresses and expiry are the rotated token's.
#[derive(Debug, Clone)]
pub struct Successor {
    /// Its id.
    pub token_id: TokenId,
    /// Its sealed secret.
    pub sealed: SealedSecret,
    /// Creation time: the rotation's.
    pub created_at: DateTime<Utc>,
    /// The audit event of the rotation, written in the same step.
    pub event: Option<NewEvent>,
    /// The partner's live-token limit, which the rotation may not pass (the rotated token not
    /// counted: it ends with the overlap); `None`: no limit.
    pub max_active: Option<u32>,
}

/// A secret sealed anew (master-key rotation): moved only if still under `from_key_id`.
#[derive(Debug, Clone)]
pub struct Resealed {
    /// The token.
    pub token_id: TokenId,
    /// The key it was sealed under when read.
    pub from_key_id: String,
    /// The secret sealed under the current key.
    pub sealed: SealedSecret,
}

/// A derive's idempotency key (SPEC C2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveKey {
    /// The key as sent.
    pub key: String,
    /// SHA-256 of the derive's body.
    pub body_digest: [u8; 32],
    /// A record of the key made before this time has lapsed: the key may be used anew.
    pub lapsed_before: DateTime<Utc>,
}

/// The derive a profile made under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedDerive {
    /// The token it created.
    pub token_id: TokenId,
    /// SHA-256 of its body.
    pub body_digest: [u8; 32],
}

/// What authenticating a request needs to know about a token.
#[derive(Debug, Clone)]
pub struct TokenCredentials {
    /// Its id.
    pub token_id: TokenId,
    /// The owning profile.
    pub profile: PartnerProfile,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether it was rotated (superseded by a successor).
    pub rotated: bool,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from; empty: any.
    pub allowed_ips: Vec<IpNet>,
    /// The sealed secret.
    pub sealed: SealedSecret,
}

/// A token as listed: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its id.
    pub token_id: TokenId,
    /// The label, if any.
    pub label: Option<String>,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from; empty: any.
    pub allowed_ips: Vec<IpNet>,
    /// Last authenticated use, as last flushed.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<TokenRecord> for lmts_core::wire::ApiToken {
    fn from(record: TokenRecord) -> Self {
        Self {
            token_id: record.token_id,
            label: record.label,
            scopes: record.scopes,
            created_at: record.created_at,
            expires_at: record.expires_at,
            allowed_ips: record.allowed_ips,
            last_used_at: record.last_used_at,
        }
    }
}

/// What a cache must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One token was revoked.
    Token(TokenId),
    /// One token was rotated (SPEC C2): it works until `ends_at`, the end of its overlap (or
    /// its expiry, when earlier), and its cache entry, which holds the old expiry, is dropped.
    Rotated {
        /// The rotated token.
        token_id: TokenId,
        /// When it stops working.
        ends_at: DateTime<Utc>,
    },
    /// A profile's live tokens changed (a derive or a revoke).
    Profile(i64),
    /// Anything may have changed (a notification may have been missed).
    All,
}

/// Where a store delivers invalidations.
pub type InvalidationSink = Arc<dyn Fn(Invalidation) + Send + Sync>;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The partner already holds the maximum number of active tokens.
    #[error("active token limit of {limit} reached")]
    LimitReached {
        /// The limit in force.
        limit: u32,
    },
    /// The idempotency key is recorded for a derive of its own ([`Store::keyed_derive`]).
    #[error("idempotency key already used")]
    KeyTaken,
    /// The database could not be reached in time.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered with an error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write was not stored: the commit that carried it failed (the error) or was abandoned.
    #[error("database write not committed")]
    NotCommitted(#[source] Option<Arc<sqlx::Error>>),
    /// A stored value is not what this version writes.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// What every backend reports alike: failing to reach the database, or to get a connection in
/// time, is [`StoreError::Unavailable`]; anything else is [`StoreError::Database`]. Error codes
/// of one database server are that backend's to classify (PostgreSQL's SQLSTATEs in
/// `postgres.rs`).
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(error),
            other => StoreError::Database(other),
        }
    }
}

/// The service's persistent state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The profile of `subject`, created on first sight; its account follows the identity's.
    async fn upsert_profile(
        &self,
        subject: &str,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<PartnerProfile, StoreError>;

    /// The profile whose wallet is `account` (any case), if one was ever seen.
    async fn profile_by_account(&self, account: &str)
        -> Result<Option<PartnerProfile>, StoreError>;

    /// Every profile, oldest first.
    async fn profiles(&self) -> Result<Vec<PartnerProfile>, StoreError>;

    /// The settings in force for `account`: its own, else the default, else the built-in default.
    async fn partner_settings(&self, account: &str) -> Result<PartnerSettings, StoreError>;

    /// The settings stored under `key`, if any.
    async fn stored_settings(
        &self,
        key: &SettingsKey,
    ) -> Result<Option<PartnerSettings>, StoreError>;

    /// Stores the settings under `key`, replacing what was there.
    async fn set_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Stores a token unless its profile already holds `max_active` live tokens (neither
    /// revoked nor expired at the new token's creation; [`StoreError::LimitReached`]; `None`:
    /// no limit), and records its idempotency key unless a record of it has not lapsed
    /// ([`StoreError::KeyTaken`]). The checks and the inserts are one atomic step.
    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError>;

    /// The derive `profile_id` made under `key`, unless its record lapsed before `since`.
    async fn keyed_derive(
        &self,
        profile_id: i64,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<KeyedDerive>, StoreError>;

    /// Forgets idempotency keys recorded before `before`; returns how many.
    async fn prune_derive_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The credentials of a token, revoked or not.
    async fn token_credentials(
        &self,
        token_id: &str,
    ) -> Result<Option<TokenCredentials>, StoreError>;

    /// The live tokens of a profile at `now` (neither revoked nor expired), oldest first.
    async fn active_tokens(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes a live token of `profile_id` (neither revoked nor expired at `now`); false when
    /// there is no such live token.
    ///
    /// Answers only once the revocation is final on every other instance sharing the store
    /// (SPEC C1): each has forgotten the token, or can no longer answer from its caches. A
    /// token of `profile_id` revoked earlier answers false once that revocation is final. The
    /// caller forgets the token in its own caches before it answers anyone.
    async fn revoke_token(
        &self,
        profile_id: i64,
        token_id: &str,
        now: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool, StoreError>;

    /// Revokes every live token of `profile_id` at `now` in one step, writing `event_of` each
    /// revoked token beside it; answers their ids. A rotation of the partner's tokens either
    /// went first (its successor is revoked with the others) or comes after and finds its
    /// token revoked: no successor of a token it revokes outlives it (a derive after it is a
    /// new token). Answers, as [`Store::revoke_token`] does, once the revocations (or, with
    /// none left to make, the partner's latest earlier one) are final on every other instance;
    /// the caller forgets the tokens in its own caches.
    async fn revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: EventOf,
    ) -> Result<Vec<TokenId>, StoreError>;

    /// Writes an audit event of its own (a failure, a new address).
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError>;

    /// Notes that `event.token_id` was used from `event.ip`: when the token never was before,
    /// writes `event` in the same step and answers true.
    async fn note_address(&self, event: &NewEvent) -> Result<bool, StoreError>;

    /// Writes a `token.expired` event, once, for each unrevoked token whose expiry passed by
    /// `now`; answers how many.
    async fn note_expiries(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The partner's events after `after` (an id), oldest first, at most `limit`.
    async fn events(
        &self,
        profile_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Forgets events that happened before `before`; returns how many.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Rotates `token_id`, a live token of `profile_id` at the successor's creation: stores
    /// `successor` with the rotated token's label, scopes, addresses and expiry, and moves the
    /// rotated token's expiry to `overlap_end` unless it is earlier already, in one step. `None`
    /// (and nothing stored) when there is no such live token. Like a revoke, answers once the
    /// new expiry is final on every other instance sharing the store.
    async fn rotate_token(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Records an accepted signature until `expires_at`; false when it was already recorded.
    async fn record_signature(
        &self,
        token_id: &str,
        signature: &[u8; 32],
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Each key id that seals a row: how many rows, and how many tokens live at `now`.
    async fn key_usage(&self, now: DateTime<Utc>) -> Result<Vec<KeyUse>, StoreError>;

    /// Up to `limit` sealed secrets under a key other than `key_id`, by token id.
    async fn sealed_under_other_keys(
        &self,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<(TokenId, SealedSecret)>, StoreError>;

    /// Stores `resealed` in one transaction, each row only if still under its `from_key_id`;
    /// answers how many moved.
    async fn reseal(&self, resealed: &[Resealed]) -> Result<u64, StoreError>;

    /// Forgets signatures that expired before `now`; returns how many.
    async fn prune_signatures(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Moves each token's `lastUsedAt` forward to the given time (never backward).
    async fn record_usage(&self, uses: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// Delivers invalidations made by other instances to `sink`, from a task it returns; `None`
    /// for a backend only one instance uses.
    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<tokio::task::JoinHandle<()>> {
        let _ = sink;
        None
    }

    /// Reports the backend's connection pools to the metrics (maintenance).
    fn report_pools(&self) {}

    /// Whether caches kept by [`Store::watch_invalidations`] may answer now. Always, for a
    /// backend only one instance uses; for one several instances share, only while the backend
    /// can prove that its listener hears their changes. While not, read the store.
    fn caches_may_answer(&self) -> bool {
        true
    }
}

/// The migrations of a backend, run so that a release also starts on a database a later
/// release has migrated further (a rolling upgrade, a rollback). That holds because migrations
/// only add what earlier releases' statements do not name (docs/ARCHITECTURE.md, "Schema").
fn rolling(mut migrations: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrations.set_ignore_missing(true);
    migrations
}

/// A time in its stored form: milliseconds since the epoch.
fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Records a derive's idempotency key, or takes over a lapsed record of it; changes no row
/// while an earlier record has not lapsed. Both backends run it in the derive's transaction:
/// `$1` profile, `$2` key, `$3` body digest, `$4` token id, `$5` now, `$6` the lapse time.
const RECORD_DERIVE_KEY: &str = "INSERT INTO derive_keys
         (profile_id, idempotency_key, body_digest, token_id, created_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (profile_id, idempotency_key) DO UPDATE SET
         body_digest = EXCLUDED.body_digest,
         token_id = EXCLUDED.token_id,
         created_at = EXCLUDED.created_at
     WHERE derive_keys.created_at < $6";

/// Writes an audit event: `$1` profile, `$2` time, `$3` type, `$4` token, `$5` address,
/// `$6` detail.
const INSERT_EVENT: &str = "INSERT INTO token_events (profile_id, at, kind, token_id, ip, detail)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Marks the tokens whose expiry passed by `$1` as noted, answering each with whether it was
/// revoked (a revoked token's expiry is no event).
const NOTE_EXPIRED: &str = "UPDATE api_tokens SET expiry_noted = TRUE
     WHERE expires_at IS NOT NULL AND expires_at <= $1 AND NOT expiry_noted
     RETURNING token_id, profile_id, expires_at, revoked_at";

/// Revokes every live token of a partner, answering their ids: `$1` profile, `$2` now.
const REVOKE_PARTNER: &str = concat!(
    "UPDATE api_tokens SET revoked_at = $2 WHERE profile_id = $1 AND ",
    live_at!("$2"),
    " RETURNING token_id"
);

/// Notes that a token was used from an address: `$1` token, `$2` address.
const NOTE_ADDRESS: &str = "INSERT INTO token_addresses (token_id, ip) VALUES ($1, $2)
     ON CONFLICT DO NOTHING";

/// How many live tokens `$1` holds besides `$2` at `$3`, counted up to `$4`.
const COUNT_OTHER_LIVE: &str = concat!(
    "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens
     WHERE profile_id = $1 AND token_id <> $2 AND ",
    live_at!("$3"),
    " LIMIT $4) AS live"
);

/// Moves one secret to a new key if it is still under the key it was read under: `$1` key id,
/// `$2` sealed secret, `$3` token, `$4` the key it was under.
const RESEAL: &str = "UPDATE api_tokens SET key_id = $1, sealed_secret = $2
     WHERE token_id = $3 AND key_id = $4";

/// A rotation's first statement: the successor, copied from the live token it rotates.
/// `$1` successor id, `$2` now, `$3` key id, `$4` sealed secret, `$5` rotated id, `$6` profile.
const INSERT_SUCCESSOR: &str = concat!(
    "INSERT INTO api_tokens (token_id, profile_id, label, scopes,
         created_at, expires_at, allowed_ips, key_id, sealed_secret)
     SELECT $1, profile_id, label, scopes, $2, expires_at, allowed_ips, $3, $4
     FROM api_tokens
     WHERE token_id = $5 AND profile_id = $6 AND rotated_at IS NULL AND ",
    live_at!("$2"),
    "
     RETURNING token_id, label, scopes, created_at, expires_at, allowed_ips, last_used_at"
);

/// A rotation's second statement: the rotated token ends with the overlap, or earlier; answers
/// that end. `$1` rotated id, `$2` now, `$3` the end of the overlap.
const END_ROTATED: &str = "UPDATE api_tokens SET rotated_at = $2,
         expires_at = CASE WHEN expires_at IS NULL OR expires_at > $3 THEN $3 ELSE expires_at END
     WHERE token_id = $1
     RETURNING expires_at";

/// Address blocks in their stored form: canonical CIDR text, comma-separated; `''` for none.
pub(crate) fn blocks_to_text(blocks: &[IpNet]) -> String {
    blocks
        .iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
