//! The store, written once over what each backend does its own way.
//!
//! A backend runs statements: reads on its read pool, writes however it makes them durable
//! (SQLite: group commit on its one writer; PostgreSQL: on its pool). It also answers the few
//! operations whose SQL is its own dialect. Every other statement is the same text for both
//! and is written here: both dialects take `$N` parameters (sqlx binds SQLite's `$N` by
//! number, as it binds `?N`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lmts_core::TokenId;
use sqlx::{query::Query, Database, Encode, Type};
use tokio::task::JoinHandle;

use crate::{crypto::SealedSecret, keys::KeyUse};

use super::{
    millis,
    replay::ReplayRow,
    rows::{stored_profile_id, StoreDatabase, StoredRow},
    scopes_to_text, EventOf, InvalidationSink, KeyedDerive, NewEvent, NewToken, PartnerProfile,
    PartnerSettings, Resealed, SettingsKey, Store, StoreError, StoredEvent, Successor,
    TokenCredentials, TokenRecord, INSERT_EVENT, RESEAL,
};

/// A statement with its arguments bound, owning them so that a backend may queue it.
pub(super) type Statement<DB> = Query<'static, DB, <DB as Database>::Arguments<'static>>;

/// A row of a backend's database.
type RowOf<B> = <<B as Backend>::Database as Database>::Row;

/// What a backend does its own way; [`Store`] is implemented once on top of it.
#[async_trait]
pub(super) trait Backend: Send + Sync + 'static {
    /// The database it runs on.
    type Database: StoreDatabase;

    /// Runs a read: its first row, if any.
    async fn fetch_optional(
        &self,
        read: Statement<Self::Database>,
    ) -> Result<Option<RowOf<Self>>, StoreError>;

    /// Runs a read: all its rows.
    async fn fetch_all(
        &self,
        read: Statement<Self::Database>,
    ) -> Result<Vec<RowOf<Self>>, StoreError>;

    /// Commits a write that answers with one row (`RETURNING`), and answers it.
    async fn fetch_written(
        &self,
        write: Statement<Self::Database>,
    ) -> Result<RowOf<Self>, StoreError>;

    /// Commits a write; answers how many rows it changed.
    async fn execute(&self, write: Statement<Self::Database>) -> Result<u64, StoreError>;

    /// Records `row` in the replay record (SPEC B6): `true` when the signature is new. The
    /// record matters only for the window, so a backend may batch it and relax its
    /// durability (docs/SECURITY.md, "The replay record").
    async fn record_signature(&self, row: ReplayRow) -> Result<bool, StoreError>;

    /// Forgets the replay record's rows that expired before `now` (Unix milliseconds).
    async fn prune_signatures(&self, now: i64) -> Result<u64, StoreError>;

    /// Commits the revocation `write` makes of `token_id`, a token of `profile_id`, with its
    /// audit `event` when it revoked one; a backend several instances share announces it to
    /// them in the same transaction, and answers once it is final on all of them
    /// ([`Store::revoke_token`]).
    async fn execute_revocation(
        &self,
        write: Statement<Self::Database>,
        profile_id: i64,
        token_id: &str,
        event: Option<&NewEvent>,
    ) -> Result<u64, StoreError>;

    /// [`Store::revoke_partner`]: the revocations and their events in one transaction, under
    /// what serialises the partner's rotations and derives (SQLite's write lock, which every
    /// process's writer takes; the partner's event lock on PostgreSQL, announced to every
    /// instance and waited for).
    async fn revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: EventOf,
    ) -> Result<Vec<TokenId>, StoreError>;

    /// [`Store::record_event`].
    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError>;

    /// [`Store::note_address`].
    async fn note_address(&self, event: &NewEvent) -> Result<bool, StoreError>;

    /// [`Store::note_expiries`].
    async fn note_expiries(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// [`Store::insert_token`]: how the limit check and the insert stay one atomic step is the
    /// backend's own (one statement on SQLite's one writer; a row lock across PostgreSQL
    /// instances).
    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError>;

    /// [`Store::reseal`]: every row in one transaction.
    async fn reseal(&self, resealed: &[Resealed]) -> Result<u64, StoreError>;

    /// [`Store::rotate_token`]: both statements in one transaction, and on a backend several
    /// instances share, the change announced and waited for as a revocation is.
    async fn rotate_token(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// [`Store::record_usage`]: moving many times forward at once is written in each dialect.
    async fn record_usage(&self, uses: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// [`Store::watch_invalidations`].
    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<JoinHandle<()>> {
        let _ = sink;
        None
    }

    /// [`Store::report_pools`].
    fn report_pools(&self) {}

    /// [`Store::caches_may_answer`].
    fn caches_may_answer(&self) -> bool {
        true
    }
}

/// The statement that writes `event`, in `DB`'s column types.
pub(super) fn event_statement<DB>(event: &NewEvent) -> Result<Statement<DB>, StoreError>
where
    DB: StoreDatabase,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: Type<DB> + Encode<'static, DB>,
    String: Type<DB> + Encode<'static, DB>,
    Option<String>: Type<DB> + Encode<'static, DB>,
{
    Ok(sqlx::query(INSERT_EVENT)
        .bind(stored_profile_id::<DB>(event.profile_id)?)
        .bind(millis(event.at))
        .bind(event.kind.as_str().to_owned())
        .bind(event.token_id.as_str().to_owned())
        .bind(event.ip.map(|ip| ip.to_string()))
        .bind(event.detail.clone()))
}

/// The statement that moves one re-sealed secret, in `DB`'s column types.
pub(super) fn reseal_statement<DB>(row: &Resealed) -> Statement<DB>
where
    DB: StoreDatabase,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    String: Type<DB> + Encode<'static, DB>,
    Vec<u8>: Type<DB> + Encode<'static, DB>,
{
    sqlx::query(RESEAL)
        .bind(row.sealed.key_id.clone())
        .bind(row.sealed.sealed.clone())
        .bind(row.token_id.as_str().to_owned())
        .bind(row.from_key_id.clone())
}

/// The store contract, kept by every backend with the same statements. The bounds are the
/// column types those statements bind.
#[async_trait]
impl<B> Store for B
where
    B: Backend,
    RowOf<B>: StoredRow,
    bool: Type<B::Database> + Encode<'static, B::Database>,
    i64: Type<B::Database> + Encode<'static, B::Database>,
    String: Type<B::Database> + Encode<'static, B::Database>,
    Vec<u8>: Type<B::Database> + Encode<'static, B::Database>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_optional(sqlx::query("SELECT 1")).await.map(drop)
    }

    async fn upsert_profile(
        &self,
        subject: &str,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<PartnerProfile, StoreError> {
        // Most identity requests come from a known partner: answer those without a write.
        let read = sqlx::query("SELECT id, subject, account FROM profiles WHERE subject = $1")
            .bind(subject.to_owned());
        let known = self.fetch_optional(read).await?;
        if let Some(profile) = known.as_ref().map(StoredRow::profile).transpose()? {
            if profile.account == account {
                return Ok(profile);
            }
        }
        let upsert = sqlx::query(
            "INSERT INTO profiles (subject, account, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (subject) DO UPDATE SET account = EXCLUDED.account
             RETURNING id, subject, account",
        )
        .bind(subject.to_owned())
        .bind(account.to_owned())
        .bind(millis(now));
        self.fetch_written(upsert).await?.profile()
    }

    async fn profile_by_account(
        &self,
        account: &str,
    ) -> Result<Option<PartnerProfile>, StoreError> {
        let read = sqlx::query(
            "SELECT id, subject, account FROM profiles WHERE lower(account) = lower($1)
             ORDER BY id LIMIT 1",
        )
        .bind(account.to_owned());
        let row = self.fetch_optional(read).await?;
        row.as_ref().map(StoredRow::profile).transpose()
    }

    async fn profiles(&self) -> Result<Vec<PartnerProfile>, StoreError> {
        let read = sqlx::query("SELECT id, subject, account FROM profiles ORDER BY id");
        let profiles = self.fetch_all(read).await?;
        profiles.iter().map(StoredRow::profile).collect()
    }

    async fn partner_settings(&self, account: &str) -> Result<PartnerSettings, StoreError> {
        let read = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings
             WHERE account IN (lower($1), '*') ORDER BY account = '*' LIMIT 1",
        )
        .bind(account.to_owned());
        match self.fetch_optional(read).await? {
            Some(row) => row.settings(),
            None => Ok(PartnerSettings::builtin_default()),
        }
    }

    async fn stored_settings(
        &self,
        key: &SettingsKey,
    ) -> Result<Option<PartnerSettings>, StoreError> {
        let read = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings
             WHERE account = $1",
        )
        .bind(key.stored());
        let row = self.fetch_optional(read).await?;
        row.as_ref().map(StoredRow::settings).transpose()
    }

    async fn set_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let write = sqlx::query(
            "INSERT INTO partner_settings
                 (account, token_management_enabled, allowed_scopes, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (account) DO UPDATE SET
                 token_management_enabled = EXCLUDED.token_management_enabled,
                 allowed_scopes = EXCLUDED.allowed_scopes,
                 updated_at = EXCLUDED.updated_at",
        )
        .bind(key.stored())
        .bind(settings.token_management_enabled)
        .bind(scopes_to_text(&settings.allowed_scopes))
        .bind(millis(now));
        self.execute(write).await.map(drop)
    }

    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        Backend::insert_token(self, token, max_active).await
    }

    async fn keyed_derive(
        &self,
        profile_id: i64,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<KeyedDerive>, StoreError> {
        let read = sqlx::query(
            "SELECT token_id, body_digest FROM derive_keys
             WHERE profile_id = $1 AND idempotency_key = $2 AND created_at >= $3",
        )
        .bind(stored_profile_id::<B::Database>(profile_id)?)
        .bind(key.to_owned())
        .bind(millis(since));
        let row = self.fetch_optional(read).await?;
        row.as_ref().map(StoredRow::keyed_derive).transpose()
    }

    async fn prune_derive_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let write =
            sqlx::query("DELETE FROM derive_keys WHERE created_at < $1").bind(millis(before));
        self.execute(write).await
    }

    async fn token_credentials(
        &self,
        token_id: &str,
    ) -> Result<Option<TokenCredentials>, StoreError> {
        let read = sqlx::query(
            "SELECT t.token_id, t.scopes, t.created_at, t.revoked_at, t.rotated_at, t.expires_at,
                    t.allowed_ips, t.key_id, t.sealed_secret, p.id, p.subject, p.account
             FROM api_tokens t JOIN profiles p ON p.id = t.profile_id
             WHERE t.token_id = $1",
        )
        .bind(token_id.to_owned());
        let row = self.fetch_optional(read).await?;
        row.as_ref().map(StoredRow::credentials).transpose()
    }

    async fn active_tokens(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let read = sqlx::query(concat!(
            "SELECT token_id, label, scopes, created_at, expires_at, allowed_ips, last_used_at
             FROM api_tokens
             WHERE profile_id = $1 AND ",
            live_at!("$2"),
            " ORDER BY created_at, token_id",
        ))
        .bind(stored_profile_id::<B::Database>(profile_id)?)
        .bind(millis(now));
        let listed = self.fetch_all(read).await?;
        listed.iter().map(StoredRow::token_record).collect()
    }

    async fn revoke_token(
        &self,
        profile_id: i64,
        token_id: &str,
        now: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool, StoreError> {
        let write = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = $3
             WHERE token_id = $1 AND profile_id = $2 AND ",
            live_at!("$3"),
        ))
        .bind(token_id.to_owned())
        .bind(stored_profile_id::<B::Database>(profile_id)?)
        .bind(millis(now));
        Ok(self
            .execute_revocation(write, profile_id, token_id, event)
            .await?
            == 1)
    }

    async fn revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: EventOf,
    ) -> Result<Vec<TokenId>, StoreError> {
        Backend::revoke_partner(self, profile_id, now, event_of).await
    }

    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        Backend::record_event(self, event).await
    }

    async fn note_address(&self, event: &NewEvent) -> Result<bool, StoreError> {
        Backend::note_address(self, event).await
    }

    async fn note_expiries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Backend::note_expiries(self, now).await
    }

    async fn events(
        &self,
        profile_id: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let read = sqlx::query(
            "SELECT id, at, kind, token_id, ip, detail FROM token_events
             WHERE profile_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(stored_profile_id::<B::Database>(profile_id)?)
        .bind(after)
        .bind(i64::from(limit));
        let events = self.fetch_all(read).await?;
        events.iter().map(StoredRow::event).collect()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let write = sqlx::query("DELETE FROM token_events WHERE at < $1").bind(millis(before));
        self.execute(write).await
    }

    async fn rotate_token(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        Backend::rotate_token(self, profile_id, token_id, successor, overlap_end).await
    }

    async fn record_signature(
        &self,
        token_id: &str,
        signature: &[u8; 32],
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = ReplayRow {
            token_id: token_id.to_owned(),
            signature: *signature,
            expires_at: millis(expires_at),
        };
        Backend::record_signature(self, row).await
    }

    async fn prune_signatures(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Backend::prune_signatures(self, millis(now)).await
    }

    async fn key_usage(&self, now: DateTime<Utc>) -> Result<Vec<KeyUse>, StoreError> {
        let read = sqlx::query(concat!(
            "SELECT key_id, COUNT(*) AS sealed, SUM(CASE WHEN ",
            live_at!("$1"),
            " THEN 1 ELSE 0 END) AS live
             FROM api_tokens GROUP BY key_id ORDER BY key_id",
        ))
        .bind(millis(now));
        let rows = self.fetch_all(read).await?;
        rows.iter().map(StoredRow::key_use).collect()
    }

    async fn sealed_under_other_keys(
        &self,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<(TokenId, SealedSecret)>, StoreError> {
        let read = sqlx::query(
            "SELECT token_id, key_id, sealed_secret FROM api_tokens
             WHERE key_id <> $1 ORDER BY token_id LIMIT $2",
        )
        .bind(key_id.to_owned())
        .bind(i64::from(limit));
        let rows = self.fetch_all(read).await?;
        rows.iter().map(StoredRow::sealed).collect()
    }

    async fn reseal(&self, resealed: &[Resealed]) -> Result<u64, StoreError> {
        Backend::reseal(self, resealed).await
    }

    async fn record_usage(&self, uses: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        Backend::record_usage(self, uses).await
    }

    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<JoinHandle<()>> {
        Backend::watch_invalidations(self, sink)
    }

    fn caches_may_answer(&self) -> bool {
        Backend::caches_may_answer(self)
    }

    fn report_pools(&self) {
        Backend::report_pools(self);
    }
}
