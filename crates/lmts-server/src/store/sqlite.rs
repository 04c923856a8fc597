//! The embedded default: one SQLite file in WAL mode, every commit synced to disk, and a
//! second file for the replay record, whose commits are not waited on to reach the disk.

use std::{io, path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lmts_core::{
    files::{self, FileError},
    TokenId,
};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
    Sqlite,
};

mod changes;

use tokio::task::JoinHandle;

use super::{
    backend::{event_statement, reseal_statement, Backend, Statement},
    blocks_to_text,
    group_commit::GroupCommitter,
    millis,
    replay::{ReplayBatcher, ReplayRow, ReplayWriter},
    rolling,
    rows::StoredRow,
    scopes_to_text, EventOf, InvalidationSink, NewEvent, NewToken, Resealed, StoreError, Successor,
    TokenRecord, COUNT_OTHER_LIVE, END_ROTATED, INSERT_SUCCESSOR, NOTE_ADDRESS, NOTE_EXPIRED,
    RECORD_DERIVE_KEY, REVOKE_PARTNER,
};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "lmts.db";

/// File name of the replay record inside the data directory.
pub const REPLAY_FILE: &str = "replay.db";

/// The replay record's one table (SPEC B6): signatures (in hexadecimal) of accepted
/// state-changing requests, kept for the window. Keyed by expiry first: a signature's expiry
/// follows from the timestamp it signs, so a copy has the same key, and fresh signatures land
/// together at the key range's end instead of on a random page each (which made every batch
/// write tens of pages to the WAL); pruning reads the key's front.
const REPLAY_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS used_signatures (
    expires_at INTEGER NOT NULL,
    token_id   TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    PRIMARY KEY (expires_at, token_id, signature)
) WITHOUT ROWID;";

/// The SQLite backend. It keeps the [`Store`](super::Store) contract, which is
/// written once for both backends.
///
/// Writes queue in the process for one writer connection, which commits them in groups (one
/// synced commit carries every write that arrived while the previous one was syncing);
/// reads use a pool of their own (WAL lets them run beside the writer). The replay record
/// lives in a file of its own with a committer of its own, synced only at checkpoints: a
/// signed POST does not wait for the disk (docs/SECURITY.md, "The replay record").
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writes: GroupCommitter,
    replay: ReplayBatcher,
    /// The replay record's writer connection, for pruning.
    replay_pool: SqlitePool,
    /// A connection of the replay record's own for checkpoints, which sync it to disk beside
    /// the writer rather than in its way.
    replay_checkpoints: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, and the replay record beside it
    /// at `replay_path`, and brings their schemas up to date.
    pub async fn open(path: &Path, replay_path: &Path) -> Result<Self, StoreError> {
        create_private_database(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        rolling(sqlx::migrate!("./migrations/sqlite"))
            .run(&writer)
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let (replay_pool, replay_checkpoints) = open_replay(replay_path).await?;
        Ok(Self {
            pool,
            writes: GroupCommitter::start(writer),
            replay: ReplayBatcher::start(SqliteReplay(replay_pool.clone()), 1),
            replay_pool,
            replay_checkpoints,
        })
    }

    /// Opens the database of a data directory.
    pub async fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open(&data_dir.join(DATABASE_FILE), &data_dir.join(REPLAY_FILE)).await
    }

    /// Opens an in-memory database (for tests of pure logic on a real engine).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        rolling(sqlx::migrate!("./migrations/sqlite"))
            .run(&pool)
            .await?;
        sqlx::raw_sql(REPLAY_SCHEMA).execute(&pool).await?;
        Ok(Self {
            writes: GroupCommitter::start(pool.clone()),
            replay: ReplayBatcher::start(SqliteReplay(pool.clone()), 1),
            replay_pool: pool.clone(),
            replay_checkpoints: pool.clone(),
            pool,
        })
    }
}

/// The replay record's writer connection, and one for its checkpoints. Commits are synced
/// only at checkpoints (`synchronous = NORMAL`), which maintenance runs beside the writer
/// (automatic ones, in the writer's way, are off): a commit survives the process being killed,
/// not the machine losing power.
async fn open_replay(path: &Path) -> Result<(SqlitePool, SqlitePool), StoreError> {
    create_private_database(path)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("wal_autocheckpoint", "0")
        .busy_timeout(Duration::from_secs(5));
    let connect = |options| {
        SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
    };
    let writer = connect(options.clone()).await?;
    sqlx::raw_sql(REPLAY_SCHEMA).execute(&writer).await?;
    Ok((writer, connect(options).await?))
}

/// Creates the database file with mode 0600 unless it exists: SQLite would create it (and its
/// `-wal` and `-shm` files, which take its mode) readable by everyone under the usual umask.
fn create_private_database(path: &Path) -> Result<(), StoreError> {
    match files::create_private(path, |_| Ok(())) {
        Err(FileError::Io(error)) if error.kind() != io::ErrorKind::AlreadyExists => {
            Err(StoreError::Unavailable(sqlx::Error::Io(error)))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Backend for SqliteStore {
    type Database = Sqlite;

    async fn fetch_optional(
        &self,
        read: Statement<Sqlite>,
    ) -> Result<Option<SqliteRow>, StoreError> {
        Ok(read.fetch_optional(&self.pool).await?)
    }

    async fn fetch_all(&self, read: Statement<Sqlite>) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(read.fetch_all(&self.pool).await?)
    }

    async fn fetch_written(&self, write: Statement<Sqlite>) -> Result<SqliteRow, StoreError> {
        self.writes
            .write(move |connection| {
                Box::pin(async move { Ok(write.fetch_one(connection).await?) })
            })
            .await
    }

    async fn execute(&self, write: Statement<Sqlite>) -> Result<u64, StoreError> {
        self.writes.execute(write).await
    }

    async fn record_signature(&self, row: ReplayRow) -> Result<bool, StoreError> {
        self.replay.record(row).await
    }

    fn report_pools(&self) {
        crate::telemetry::pool("sqlite_read", self.pool.size(), self.pool.num_idle());
        crate::telemetry::pool(
            "sqlite_replay",
            self.replay_pool.size(),
            self.replay_pool.num_idle(),
        );
    }

    /// Other processes on the same file: their revocations, within a second.
    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<JoinHandle<()>> {
        Some(changes::watch(self.pool.clone(), sink))
    }

    async fn prune_signatures(&self, now: i64) -> Result<u64, StoreError> {
        let pruned = sqlx::query("DELETE FROM used_signatures WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.replay_pool)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.replay_checkpoints)
            .await?;
        Ok(pruned.rows_affected())
    }

    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        // On the one writer, in one savepoint: no concurrent derive can slip in between the
        // checks and the inserts, and a refused insert takes the key's record back with it.
        // The count stops at the limit, so it costs at most that many rows.
        let key = token.once.as_ref().map(|once| {
            sqlx::query(RECORD_DERIVE_KEY)
                .bind(token.profile_id)
                .bind(once.key.clone())
                .bind(once.body_digest.to_vec())
                .bind(token.token_id.as_str().to_owned())
                .bind(millis(token.created_at))
                .bind(millis(once.lapsed_before))
        });
        let insert = sqlx::query(concat!(
            "INSERT INTO api_tokens (token_id, profile_id, label, scopes, created_at,
                     expires_at, allowed_ips, key_id, sealed_secret)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?9, ?10, ?6, ?7
                 WHERE ?8 IS NULL OR (SELECT COUNT(*) FROM (
                     SELECT 1 FROM api_tokens WHERE profile_id = ?2 AND ",
            live_at!("?5"),
            " LIMIT ?8)) < ?8",
        ))
        .bind(token.token_id.as_str().to_owned())
        .bind(token.profile_id)
        .bind(token.label.clone())
        .bind(scopes_to_text(&token.scopes))
        .bind(millis(token.created_at))
        .bind(token.sealed.key_id.clone())
        .bind(token.sealed.sealed.clone())
        .bind(max_active.map(i64::from))
        .bind(token.expires_at.map(millis))
        .bind(blocks_to_text(&token.allowed_ips));
        let event = token
            .event
            .as_ref()
            .map(event_statement::<Sqlite>)
            .transpose()?;
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    if let Some(key) = key {
                        if key.execute(&mut *connection).await?.rows_affected() == 0 {
                            return Err(StoreError::KeyTaken);
                        }
                    }
                    let inserted = insert.execute(&mut *connection).await?.rows_affected();
                    if let (0, Some(limit)) = (inserted, max_active) {
                        return Err(StoreError::LimitReached { limit });
                    }
                    if let Some(event) = event {
                        event.execute(connection).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn reseal(&self, resealed: &[Resealed]) -> Result<u64, StoreError> {
        let moves: Vec<_> = resealed.iter().map(reseal_statement).collect();
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let mut moved = 0;
                    for statement in moves {
                        moved += statement.execute(&mut *connection).await?.rows_affected();
                    }
                    Ok(moved)
                })
            })
            .await
    }

    async fn execute_revocation(
        &self,
        write: Statement<Sqlite>,
        _profile_id: i64,
        _token_id: &str,
        event: Option<&NewEvent>,
    ) -> Result<u64, StoreError> {
        let event = event.map(event_statement::<Sqlite>).transpose()?;
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let revoked = write.execute(&mut *connection).await?.rows_affected();
                    if let Some(event) = event.filter(|_| revoked == 1) {
                        event.execute(connection).await?;
                    }
                    Ok(revoked)
                })
            })
            .await
    }

    async fn revoke_partner(
        &self,
        profile_id: i64,
        now: DateTime<Utc>,
        event_of: EventOf,
    ) -> Result<Vec<TokenId>, StoreError> {
        let revoke = sqlx::query(REVOKE_PARTNER)
            .bind(profile_id)
            .bind(millis(now));
        // One write under SQLite's write lock, which every process's writer takes: a rotation
        // or derive of the partner's runs before or after it.
        // Other processes on the file find the revocations by their time (`changes.rs`).
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let rows = revoke.fetch_all(&mut *connection).await?;
                    let mut revoked = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let token_id = row.token_id()?;
                        event_statement::<Sqlite>(&event_of(&token_id))?
                            .execute(&mut *connection)
                            .await?;
                        revoked.push(token_id);
                    }
                    Ok(revoked)
                })
            })
            .await
    }

    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        self.writes
            .execute(event_statement::<Sqlite>(event)?)
            .await
            .map(drop)
    }

    async fn note_address(&self, event: &NewEvent) -> Result<bool, StoreError> {
        let Some(ip) = event.ip else {
            return Ok(false);
        };
        let note = sqlx::query(NOTE_ADDRESS)
            .bind(event.token_id.as_str().to_owned())
            .bind(ip.to_string());
        let event = event_statement::<Sqlite>(event)?;
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let new = note.execute(&mut *connection).await?.rows_affected() == 1;
                    if new {
                        event.execute(connection).await?;
                    }
                    Ok(new)
                })
            })
            .await
    }

    async fn note_expiries(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let noted = sqlx::query(NOTE_EXPIRED).bind(millis(now));
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let rows = noted.fetch_all(&mut *connection).await?;
                    let mut events = Vec::with_capacity(rows.len());
                    for row in &rows {
                        events.extend(row.expiry_event()?);
                    }
                    events.sort_by_key(|event| event.at);
                    for event in &events {
                        event_statement::<Sqlite>(event)?
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(events.len() as u64)
                })
            })
            .await
    }

    async fn rotate_token(
        &self,
        profile_id: i64,
        token_id: &str,
        successor: &Successor,
        overlap_end: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = millis(successor.created_at);
        let insert = sqlx::query(INSERT_SUCCESSOR)
            .bind(successor.token_id.as_str().to_owned())
            .bind(now)
            .bind(successor.sealed.key_id.clone())
            .bind(successor.sealed.sealed.clone())
            .bind(token_id.to_owned())
            .bind(profile_id);
        let end = sqlx::query(END_ROTATED)
            .bind(token_id.to_owned())
            .bind(now)
            .bind(millis(overlap_end));
        let event = successor
            .event
            .as_ref()
            .map(event_statement::<Sqlite>)
            .transpose()?;
        let count = successor.max_active.map(|limit| {
            let others = sqlx::query_scalar::<_, i64>(COUNT_OTHER_LIVE)
                .bind(profile_id)
                .bind(token_id.to_owned())
                .bind(now)
                .bind(i64::from(limit));
            (others, limit)
        });
        // Other processes on the file find the rotation by its time (`changes.rs`).
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    if let Some((others, limit)) = count {
                        if others.fetch_one(&mut *connection).await? >= i64::from(limit) {
                            return Err(StoreError::LimitReached { limit });
                        }
                    }
                    let Some(successor) = insert.fetch_optional(&mut *connection).await? else {
                        return Ok(None);
                    };
                    end.execute(&mut *connection).await?;
                    if let Some(event) = event {
                        event.execute(connection).await?;
                    }
                    successor.token_record().map(Some)
                })
            })
            .await
    }

    async fn record_usage(&self, uses: &[(TokenId, DateTime<Utc>)]) -> Result<(), StoreError> {
        let uses = uses.to_vec();
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    for (token_id, at) in uses {
                        sqlx::query(
                            "UPDATE api_tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2)
                             WHERE token_id = ?1",
                        )
                        .bind(token_id.as_str())
                        .bind(millis(at))
                        .execute(&mut *connection)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }
}

/// The replay record's batch statement on SQLite: the rows travel as one JSON array.
#[derive(Debug)]
struct SqliteReplay(SqlitePool);

#[async_trait]
impl ReplayWriter for SqliteReplay {
    async fn insert_new(&self, rows: &[ReplayRow]) -> Result<Vec<(String, [u8; 32])>, sqlx::Error> {
        let batch: Vec<(&str, String, i64)> = rows
            .iter()
            .map(|row| (row.token_id.as_str(), hex(&row.signature), row.expires_at))
            .collect();
        let batch =
            serde_json::to_string(&batch).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        // `WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert clause.
        let inserted: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO used_signatures (token_id, signature, expires_at)
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
             ON CONFLICT DO NOTHING RETURNING token_id, signature",
        )
        .bind(batch)
        .fetch_all(&self.0)
        .await?;
        Ok(inserted
            .into_iter()
            .filter_map(|(token_id, signature)| Some((token_id, unhex(&signature)?)))
            .collect())
    }
}

/// Lower-case hexadecimal of a signature.
fn hex(signature: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in signature {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// The signature `text` spells in hexadecimal, if it does.
fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut signature = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (byte, pair) in signature.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(signature)
}
