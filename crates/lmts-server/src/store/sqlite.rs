//! The embedded default: one SQLite file in WAL mode, every commit synced to disk.

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

use super::{
    backend::{Backend, Statement},
    group_commit::GroupCommitter,
    millis, scopes_to_text, NewToken, StoreError,
};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "lmts.db";

/// The SQLite backend. It keeps the [`Store`](super::Store) contract, which is
/// written once for both backends.
///
/// Writes queue in the process for one writer connection, which commits them in groups (one
/// synced commit carries every write that arrived while the previous one was syncing);
/// reads use a pool of their own (WAL lets them run beside the writer).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writes: GroupCommitter,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
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
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            writes: GroupCommitter::start(writer),
        })
    }

    /// Opens the database of a data directory.
    pub async fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open(&data_dir.join(DATABASE_FILE)).await
    }

    /// Opens an in-memory database (for tests of pure logic on a real engine).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            writes: GroupCommitter::start(pool.clone()),
            pool,
        })
    }
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

    async fn insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        // One statement on the one writer: no concurrent derive can slip in between the count
        // and the insert. The count stops at the limit, so it costs at most that many rows.
        let statement = sqlx::query(
            "INSERT INTO api_tokens
                 (token_id, profile_id, label, scopes, created_at, key_id, sealed_secret)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE ?8 IS NULL OR (SELECT COUNT(*) FROM (
                 SELECT 1 FROM api_tokens WHERE profile_id = ?2 AND revoked_at IS NULL
                 LIMIT ?8)) < ?8",
        )
        .bind(token.token_id.as_str().to_owned())
        .bind(token.profile_id)
        .bind(token.label.clone())
        .bind(scopes_to_text(&token.scopes))
        .bind(millis(token.created_at))
        .bind(token.sealed.key_id.clone())
        .bind(token.sealed.sealed.clone())
        .bind(max_active.map(i64::from));
        match (self.writes.execute(statement).await?, max_active) {
            (0, Some(limit)) => Err(StoreError::LimitReached { limit }),
            _ => Ok(()),
        }
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
