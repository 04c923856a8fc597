//! PostgreSQL: the one source of truth for many service instances behind a load balancer.
//!
//! Revocations are announced with `NOTIFY` in the revoking transaction, so every instance's
//! listener drops the token from its cache as soon as the revoke commits, and a revoke answers
//! only once it is final on every instance (`instances.rs`). The active-token limit holds
//! across instances because a derive locks its profile row before it counts.

mod instances;
mod notices;

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lmts_core::TokenId;
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
    Postgres,
};
use tokio::task::JoinHandle;

use self::{
    instances::Instance,
    notices::{announce_derive, announce_revocations, announce_rotation_end},
};
use super::{
    backend::{event_statement, reseal_statement, Backend, Statement},
    blocks_to_text, millis,
    replay::{ReplayBatcher, ReplayRow, ReplayWriter},
    rolling,
    rows::{stored_profile_id, StoredRow},
    scopes_to_text, EventOf, InvalidationSink, NewEvent, NewToken, Resealed, StoreError, Successor,
    TokenRecord, COUNT_OTHER_LIVE, END_ROTATED, INSERT_SUCCESSOR, NOTE_ADDRESS, RECORD_DERIVE_KEY,
    REVOKE_PARTNER,
};

/// The channel derives and revocations are announced on.
pub const REVOCATION_CHANNEL: &str = "lmts_revocations";

/// The channel each revocation's time is announced on, beside [`REVOCATION_CHANNEL`] (where a
/// new field would make earlier versions forget everything at every revoke): what the
/// invalidation delay is measured from.
pub const REVOCATION_TIME_CHANNEL: &str = "lmts_revocation_times";

/// The channel a rotation's end is announced on, just before its notice on
/// [`REVOCATION_CHANNEL`]: hearers end the rotated token's tunnels with its overlap rather than
/// close them. Earlier versions do not hear it, and close them.
pub const ROTATION_CHANNEL: &str = "lmts_rotation_ends";

/// Connection settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections one instance holds.
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
    /// The longest a statement may run.
    pub statement_timeout: Duration,
    /// How long an instance's caches may answer after it last proved that its listener hears
    /// other instances' revocations, and so the longest a revoke waits for an instance that
    /// does not acknowledge it (docs/ARCHITECTURE.md, "Revocation across instances"). Zero:
    /// caches never answer and revokes never wait.
    pub revocation_lease: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            revocation_lease: Duration::from_secs(2),
        }
    }
}

/// The PostgreSQL backend. It keeps the [`Store`](super::Store) contract, which is
/// written once for both backends.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The replay record, written in batches on connections whose commits are not waited on
    /// to reach the disk (`synchronous_commit = off`; docs/SECURITY.md, "The replay record").
    replay: ReplayBatcher,
    /// This process among the instances sharing the database.
    instance: Arc<Instance>,
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let statement_timeout = options.statement_timeout.as_millis().to_string();
        let connect = url
            .parse::<PgConnectOptions>()
            .map_err(store_error)?
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(store_error)?;
        rolling(sqlx::migrate!("./migrations/postgres"))
            .run(&pool)
            .await?;
        let instance = Instance::new(&pool, &connect, options.revocation_lease)
            .await
            .map_err(store_error)?;
        let replay = PgPoolOptions::new()
            .max_connections(REPLAY_LANES as u32)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.options([("synchronous_commit", "off")]));
        let replay = ReplayBatcher::start(PostgresReplay(replay), REPLAY_LANES);
        Ok(Self {
            pool,
            replay,
            instance: Arc::new(instance),
        })
    }
}

/// What a PostgreSQL error means for the store: besides what every backend reports as
/// unavailable, SQLSTATE classes `08` (connection exception) and `57P` (operator intervention:
/// the server shutting down, or not yet accepting connections) mean the database is unavailable.
fn store_error(error: sqlx::Error) -> StoreError {
    if sqlstate(&error).is_some_and(|code| code.starts_with("08") || code.starts_with("57P")) {
        StoreError::Unavailable(error)
    } else {
        StoreError::from(error)
    }
}

/// Whether a failed transaction may simply be run again: SQLSTATE `40001` (serialization
/// failure) or `40P01` (deadlock detected).
fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(error) => {
            matches!(sqlstate(error).as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// The SQLSTATE the server answered with, if it answered with an error.
fn sqlstate(error: &sqlx::Error) -> Option<Cow<'_, str>> {
    match error {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    }
}

impl PostgresStore {
    /// Revokes in one transaction: `write` (the shared statement), then the revocation's
    /// number, the token's record of it and the notice to every instance. The number is taken
    /// last: its row stays locked until the commit, so numbers commit in order. Answers the
    /// number, or `None` when there was no live token to revoke.
    async fn commit_revocation(
        &self,
        write: Statement<Postgres>,
        profile_id: i64,
        token_id: &str,
        event: Option<&NewEvent>,
    ) -> Result<Option<i64>, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        if event.is_some() {
            lock_events(&mut transaction, profile_id).await?;
        }
        let revoked = write
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?
            .rows_affected();
        if revoked != 1 {
            transaction.rollback().await.map_err(store_error)?;
            return Ok(None);
        }
        write_event(&mut transaction, event).await?;
        let number = number_and_announce(&mut transaction, profile_id, token_id, None).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(Some(number))
    }

    /// [`Backend::rotate_token`] in one transaction, the rotated token's new expiry numbered
    /// and announced as a revocation is, with that expiry: other instances drop it from their
    /// caches (ending its tunnels with the overlap) and read it again. Answers the successor
    /// and the change's number.
    async fn commit_rotation(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        let now = millis(successor.created_at);
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // Always, event or not: revoke_partner relies on every rotation taking it first.
        lock_events(&mut transaction, profile_id).await?;
        // The rotated row held until the commit: a revoke (of any release) waits, or went first.
        sqlx::query("SELECT 1 FROM api_tokens WHERE token_id = $1 FOR UPDATE")
            .bind(token_id)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        if let Some(limit) = successor.max_active {
            let others: i64 = sqlx::query_scalar(COUNT_OTHER_LIVE)
                .bind(stored_profile_id::<Postgres>(profile_id)?)
                .bind(token_id)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?;
            if others >= i64::from(limit) {
                return Err(StoreError::LimitReached { limit });
            }
        }
        let inserted = sqlx::query(INSERT_SUCCESSOR)
            .bind(successor.token_id.as_str())
            .bind(now)
            .bind(&successor.sealed.key_id)
            .bind(&successor.sealed.sealed)
            .bind(token_id)
            .bind(stored_profile_id::<Postgres>(profile_id)?)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(store_error)?;
        let Some(inserted) = inserted else {
            transaction.rollback().await.map_err(store_error)?;
            return Ok(None);
        };
        let ends: Option<i64> = sqlx::query_scalar(END_ROTATED)
            .bind(token_id)
            .bind(now)
            .bind(millis(overlap_end))
            .fetch_one(&mut *transaction)
            .await
            .map_err(store_error)?;
        write_event(&mut transaction, successor.event.as_ref()).await?;
        let number = number_and_announce(&mut transaction, profile_id, token_id, ends).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(Some((inserted.token_record()?, number)))
    }

    /// [`Backend::revoke_partner`], once. Answers once the revocations (or, with nothing left to
    /// revoke, the partner's latest earlier one) are final on every instance.
    async fn try_revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: &EventOf,
    ) -> Result<Vec<TokenId>, StoreError> {
        let profile = stored_profile_id::<Postgres>(profile_id)?;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // The update's snapshot must be taken after the lock, whatever the database's default.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        // Every rotation and derive of the partner's takes this lock first: one that went
        // first committed its token, which the update below revokes too.
        lock_events(&mut transaction, profile_id).await?;
        let rows = sqlx::query(REVOKE_PARTNER)
            .bind(profile)
            .bind(millis(now))
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?;
        let revoked = rows
            .iter()
            .map(StoredRow::token_id)
            .collect::<Result<Vec<_>, _>>()?;
        for token_id in &revoked {
            write_event(&mut transaction, Some(&event_of(token_id))).await?;
        }
        let last = if revoked.is_empty() {
            // Revoked before, perhaps still on its way to other instances.
            sqlx::query_scalar("SELECT MAX(revoked_seq) FROM api_tokens WHERE profile_id = $1")
                .bind(profile)
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?
        } else {
            let ids: Vec<&str> = revoked.iter().map(TokenId::as_str).collect();
            let numbered = number_revocations(&mut transaction, &ids).await?;
            announce_revocations(&mut transaction, profile_id, &numbered)
                .await
                .map_err(store_error)?;
            numbered.last().map(|(number, _)| *number)
        };
        transaction.commit().await.map_err(store_error)?;
        // Numbers are applied in order: the last one applied everywhere means all were.
        if let Some(number) = last {
            self.instance.await_applied(&self.pool, number).await;
        }
        Ok(revoked)
    }

    /// The number of the revocation that already revoked `token_id` of `profile_id`, so that
    /// a repeated revoke answers only once that one is final too.
    async fn earlier_revocation(
        &self,
        profile_id: i64,
        token_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT revoked_seq FROM api_tokens
             WHERE token_id = $1 AND profile_id = $2 AND revoked_seq IS NOT NULL",
        )
        .bind(token_id)
        .bind(stored_profile_id::<Postgres>(profile_id)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    /// One attempt at [`Backend::insert_token`], in one transaction that the retry may repeat.
    async fn try_insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        let profile = stored_profile_id::<Postgres>(token.profile_id)?;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // Always, event or not: revoke_partner relies on every derive taking it first.
        lock_events(&mut transaction, token.profile_id).await?;
        if let Some(once) = &token.once {
            // A concurrent derive under the same key waits here for the first to end, then
            // finds its record.
            let recorded = sqlx::query(RECORD_DERIVE_KEY)
                .bind(profile)
                .bind(&once.key)
                .bind(once.body_digest.as_slice())
                .bind(token.token_id.as_str())
                .bind(millis(token.created_at))
                .bind(millis(once.lapsed_before))
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            if recorded.rows_affected() == 0 {
                return Err(StoreError::KeyTaken);
            }
        }
        if let Some(max_active) = max_active {
            // Serialises derives of one partner across every instance.
            sqlx::query("SELECT id FROM profiles WHERE id = $1 FOR UPDATE")
                .bind(profile)
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?;
            // Counting stops at the limit, so it costs at most that many rows.
            let active: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens WHERE profile_id = $1 AND ",
                live_at!("$3"),
                " LIMIT $2) AS active",
            ))
            .bind(profile)
            .bind(i64::from(max_active))
            .bind(millis(token.created_at))
            .fetch_one(&mut *transaction)
            .await
            .map_err(store_error)?;
            if active >= i64::from(max_active) {
                return Err(StoreError::LimitReached { limit: max_active });
            }
        }
        sqlx::query(
            "INSERT INTO api_tokens (token_id, profile_id, label, scopes, created_at,
                 expires_at, allowed_ips, key_id, sealed_secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token.token_id.as_str())
        .bind(profile)
        .bind(token.label.as_deref())
        .bind(scopes_to_text(&token.scopes))
        .bind(millis(token.created_at))
        .bind(token.expires_at.map(millis))
        .bind(blocks_to_text(&token.allowed_ips))
        .bind(&token.sealed.key_id)
        .bind(&token.sealed.sealed)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        write_event(&mut transaction, token.event.as_ref()).await?;
        // Other instances drop their cached list of this partner's tokens.
        announce_derive(&mut transaction, token.profile_id)
            .await
            .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(())
    }
}

/// The class of the advisory locks that order a partner's events ("lmts"); the lock's key is
/// the profile id. Every change of a partner's tokens takes it first.
pub const EVENT_LOCK_CLASS: i32 = 0x6C6D_7473;

/// Takes `profile_id`'s event lock until the transaction ends, first in every transaction that
/// writes an event: a partner's events are then written one transaction at a time, so their
/// ids follow commit order and a reader's cursor never passes one not yet committed.
async fn lock_events(transaction: &mut PgConnection, profile_id: i64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(EVENT_LOCK_CLASS)
        .bind(stored_profile_id::<Postgres>(profile_id)?)
        .execute(transaction)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Writes `event`, if any, in `transaction` (whose event lock is taken).
async fn write_event(
    transaction: &mut PgConnection,
    event: Option<&NewEvent>,
) -> Result<(), StoreError> {
    if let Some(event) = event {
        event_statement::<Postgres>(event)?
            .execute(transaction)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Numbers a change that narrows `token_id` (its revocation, or its expiry moved earlier by a
/// rotation, to `rotation_end` in Unix milliseconds) and announces it to every instance, in
/// `transaction`; answers its number.
async fn number_and_announce(
    transaction: &mut PgConnection,
    profile_id: i64,
    token_id: &str,
    rotation_end: Option<i64>,
) -> Result<i64, StoreError> {
    let numbered = number_revocations(transaction, &[token_id]).await?;
    let Some(&(number, _)) = numbered.first() else {
        return Err(StoreError::Corrupt(format!(
            "token {token_id} was not numbered"
        )));
    };
    if let Some(end) = rotation_end {
        announce_rotation_end(transaction, number, end)
            .await
            .map_err(store_error)?;
    }
    announce_revocations(transaction, profile_id, &numbered)
        .await
        .map_err(store_error)?;
    Ok(number)
}

/// Numbers the changes that narrow `token_ids` (each revoked, or rotated, in `transaction`),
/// in one statement however many; answers `(number, token id)` in number order. Taken last:
/// the counter's row stays locked until the commit (numbers commit in order), and every
/// revoke of every partner waits for it.
async fn number_revocations(
    transaction: &mut PgConnection,
    token_ids: &[&str],
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut numbered: Vec<(i64, String)> = sqlx::query_as(
        "WITH numbered AS (
             UPDATE lmts_revocation_counter SET last_seq = last_seq + cardinality($1::text[])
             RETURNING last_seq
         )
         UPDATE api_tokens AS t
         SET revoked_seq = numbered.last_seq - cardinality($1::text[]) + ids.ord
         FROM numbered, unnest($1::text[]) WITH ORDINALITY AS ids(token_id, ord)
         WHERE t.token_id = ids.token_id
         RETURNING t.revoked_seq, t.token_id",
    )
    .bind(token_ids)
    .fetch_all(&mut *transaction)
    .await
    .map_err(store_error)?;
    numbered.sort_unstable();
    Ok(numbered)
}

#[async_trait]
impl Backend for PostgresStore {
    type Database = Postgres;

    async fn fetch_optional(&self, read: Statement<Postgres>) -> Result<Option<PgRow>, StoreError> {
        read.fetch_optional(&self.pool).await.map_err(store_error)
    }

    async fn fetch_all(&self, read: Statement<Postgres>) -> Result<Vec<PgRow>, StoreError> {
        read.fetch_all(&self.pool).await.map_err(store_error)
    }

    async fn fetch_written(&self, write: Statement<Postgres>) -> Result<PgRow, StoreError> {
        write.fetch_one(&self.pool).await.map_err(store_error)
    }

    async fn execute(&self, write: Statement<Postgres>) -> Result<u64, StoreError> {
        let done = write.execute(&self.pool).await.map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn record_signature(&self, row: ReplayRow) -> Result<bool, StoreError> {
        self.replay.record(row).await
    }

    async fn prune_signatures(&self, now: i64) -> Result<u64, StoreError> {
        let write = sqlx::query("DELETE FROM used_signatures WHERE expires_at < $1").bind(now);
        self.execute(write).await
    }

    async fn execute_revocation(
        &self,
        write: Statement<Postgres>,
        profile_id: i64,
        token_id: &str,
        event: Option<&NewEvent>,
    ) -> Result<u64, StoreError> {
        let revoked = self
            .commit_revocation(write, profile_id, token_id, event)
            .await?;
        let number = match revoked {
            Some(number) => Some(number),
            None => self.earlier_revocation(profile_id, token_id).await?,
        };
        if let Some(number) = number {
            self.instance.await_applied(&self.pool, number).await;
        }
        Ok(u64::from(revoked.is_some()))
    }

    async fn reseal(&self, resealed: &[Resealed]) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let mut moved = 0;
        for row in resealed {
            moved += reseal_statement::<Postgres>(row)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?
                .rows_affected();
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(moved)
    }

    async fn revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: EventOf,
    ) -> Result<Vec<TokenId>, StoreError> {
        // A deadlock with a usage flush or a re-seal (rows locked in another order) rolled
        // everything back, and announced nothing: run it again.
        let mut attempt = 0;
        loop {
            match self.try_revoke_partner(profile_id, now, &event_of).await {
                Err(error) if is_transient(&error) && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        lock_events(&mut transaction, event.profile_id).await?;
        write_event(&mut transaction, Some(event)).await?;
        transaction.commit().await.map_err(store_error)
    }

    async fn note_address(&self, event: &NewEvent) -> Result<bool, StoreError> {
        let Some(ip) = event.ip else {
            return Ok(false);
        };
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        lock_events(&mut transaction, event.profile_id).await?;
        let noted = sqlx::query(NOTE_ADDRESS)
            .bind(event.token_id.as_str())
            .bind(ip.to_string())
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        let new = noted.rows_affected() == 1;
        if new {
            write_event(&mut transaction, Some(event)).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(new)
    }

    async fn note_expiries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // A transaction per partner, its event lock first, as every event is written.
        let partners: Vec<i32> = sqlx::query_scalar(
            "SELECT DISTINCT profile_id FROM api_tokens
             WHERE expires_at IS NOT NULL AND expires_at <= $1 AND NOT expiry_noted LIMIT 1000",
        )
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut written = 0;
        for profile_id in partners {
            let mut transaction = self.pool.begin().await.map_err(store_error)?;
            lock_events(&mut transaction, profile_id.into()).await?;
            let rows = sqlx::query(
                "UPDATE api_tokens SET expiry_noted = TRUE
                 WHERE expires_at IS NOT NULL AND expires_at <= $1 AND NOT expiry_noted
                     AND profile_id = $2
                 RETURNING token_id, profile_id, expires_at, revoked_at",
            )
            .bind(millis(now))
            .bind(profile_id)
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                events.extend(row.expiry_event()?);
            }
            events.sort_by_key(|event| event.at);
            for event in &events {
                write_event(&mut transaction, Some(event)).await?;
            }
            transaction.commit().await.map_err(store_error)?;
            written += events.len() as u64;
        }
        Ok(written)
    }

    async fn rotate_token(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let rotated = self
            .commit_rotation(profile_id, token_id, successor, overlap_end)
            .await?;
        let Some((successor, number)) = rotated else {
            return Ok(None);
        };
        self.instance.await_applied(&self.pool, number).await;
        Ok(Some(successor))
    }

    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            match self.try_insert_token(token, max_active).await {
                Err(error) if is_transient(&error) && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn record_usage(&self, uses: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        let times: Vec<i64> = uses.iter().map(|(_, at)| millis(*at)).collect();
        sqlx::query(
            "UPDATE api_tokens t SET last_used_at = GREATEST(COALESCE(t.last_used_at, 0), u.at)
             FROM UNNEST($1::text[], $2::bigint[]) AS u(token_id, at)
             WHERE t.token_id = u.token_id",
        )
        .bind(&ids)
        .bind(&times)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    fn report_pools(&self) {
        crate::telemetry::pool("postgres", self.pool.size(), self.pool.num_idle());
    }

    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<JoinHandle<()>> {
        let instance = Arc::clone(&self.instance);
        Some(tokio::spawn(instance.serve(sink)))
    }

    fn caches_may_answer(&self) -> bool {
        self.instance.caches_may_answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error with nothing but a SQLSTATE.
    #[derive(Debug)]
    struct Answered(&'static str);

    impl std::fmt::Display for Answered {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "sqlstate {}", self.0)
        }
    }

    impl std::error::Error for Answered {}

    impl sqlx::error::DatabaseError for Answered {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn answered(code: &'static str) -> StoreError {
        store_error(sqlx::Error::Database(Box::new(Answered(code))))
    }

    #[test]
    fn sqlstates_of_a_server_going_away_mean_unavailable_and_conflicts_are_retried() {
        for code in ["08006", "08P01", "57P01", "57P03"] {
            assert!(
                matches!(answered(code), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        for code in ["23505", "40001", "40P01", "57014"] {
            assert!(matches!(answered(code), StoreError::Database(_)), "{code}");
        }
        assert!(is_transient(&answered("40001")));
        assert!(is_transient(&answered("40P01")));
        assert!(!is_transient(&answered("23505")));
        assert!(matches!(
            store_error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}

/// Batches of the replay record written side by side, each on a connection of its own.
const REPLAY_LANES: usize = 4;

/// The replay record's batch statement on PostgreSQL: the rows travel as three arrays.
#[derive(Debug)]
struct PostgresReplay(PgPool);

#[async_trait]
impl ReplayWriter for PostgresReplay {
    async fn insert_new(&self, rows: &[ReplayRow]) -> Result<Vec<(String, [u8; 32])>, sqlx::Error> {
        let token_ids: Vec<&str> = rows.iter().map(|row| row.token_id.as_str()).collect();
        let signatures: Vec<&[u8]> = rows.iter().map(|row| &row.signature[..]).collect();
        let expiries: Vec<i64> = rows.iter().map(|row| row.expires_at).collect();
        let inserted: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "INSERT INTO used_signatures (token_id, signature, expires_at)
             SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bigint[])
             ON CONFLICT DO NOTHING RETURNING token_id, signature",
        )
        .bind(token_ids)
        .bind(signatures)
        .bind(expiries)
        .fetch_all(&self.0)
        .await?;
        Ok(inserted
            .into_iter()
            .filter_map(|(token_id, signature)| Some((token_id, signature.try_into().ok()?)))
            .collect())
    }
}
