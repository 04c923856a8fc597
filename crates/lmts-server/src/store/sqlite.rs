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
    Row,
};

use super::{
    group_commit::GroupCommitter, scopes_from_text, scopes_to_text, time_from_millis, NewToken,
    PartnerProfile, PartnerSettings, SettingsKey, Store, StoreError, TokenCredentials, TokenRecord,
};
use crate::crypto::SealedSecret;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "lmts.db";

/// The SQLite backend.
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

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn profile_from_row(row: &SqliteRow) -> Result<PartnerProfile, StoreError> {
    Ok(PartnerProfile {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        account: row.try_get("account")?,
    })
}

fn settings_from_row(row: &SqliteRow) -> Result<PartnerSettings, StoreError> {
    let scopes: String = row.try_get("allowed_scopes")?;
    Ok(PartnerSettings {
        token_management_enabled: row.try_get("token_management_enabled")?,
        allowed_scopes: scopes_from_text(&scopes),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_profile(
        &self,
        subject: &str,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<PartnerProfile, StoreError> {
        // Most identity requests come from a known partner: answer those without a write.
        let known = sqlx::query("SELECT id, subject, account FROM profiles WHERE subject = ?1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(profile) = known.as_ref().map(profile_from_row).transpose()? {
            if profile.account == account {
                return Ok(profile);
            }
        }
        let (subject, account) = (subject.to_owned(), account.to_owned());
        self.writes
            .write(move |connection| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "INSERT INTO profiles (subject, account, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (subject) DO UPDATE SET account = excluded.account
                         RETURNING id, subject, account",
                    )
                    .bind(subject)
                    .bind(account)
                    .bind(millis(now))
                    .fetch_one(connection)
                    .await?;
                    profile_from_row(&row)
                })
            })
            .await
    }

    async fn profile_by_account(
        &self,
        account: &str,
    ) -> Result<Option<PartnerProfile>, StoreError> {
        let row = sqlx::query(
            "SELECT id, subject, account FROM profiles WHERE lower(account) = lower(?1)
             ORDER BY id LIMIT 1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    async fn partner_settings(&self, account: &str) -> Result<PartnerSettings, StoreError> {
        let row = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings
             WHERE account IN (lower(?1), '*') ORDER BY account = '*' LIMIT 1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => settings_from_row(&row),
            None => Ok(PartnerSettings::builtin_default()),
        }
    }

    async fn stored_settings(
        &self,
        key: &SettingsKey,
    ) -> Result<Option<PartnerSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings WHERE account = ?1",
        )
        .bind(key.stored())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(settings_from_row).transpose()
    }

    async fn set_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let statement = sqlx::query(
            "INSERT INTO partner_settings
                 (account, token_management_enabled, allowed_scopes, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account) DO UPDATE SET
                 token_management_enabled = excluded.token_management_enabled,
                 allowed_scopes = excluded.allowed_scopes,
                 updated_at = excluded.updated_at",
        )
        .bind(key.stored())
        .bind(settings.token_management_enabled)
        .bind(scopes_to_text(&settings.allowed_scopes))
        .bind(millis(now));
        self.writes.execute(statement).await.map(drop)
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

    async fn token_credentials(
        &self,
        token_id: &str,
    ) -> Result<Option<TokenCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT t.token_id, t.scopes, t.revoked_at, t.key_id, t.sealed_secret,
                    p.id, p.subject, p.account
             FROM api_tokens t JOIN profiles p ON p.id = t.profile_id
             WHERE t.token_id = ?1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let scopes: String = row.try_get("scopes")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        Ok(Some(TokenCredentials {
            token_id: TokenId::new(row.try_get::<String, _>("token_id")?),
            profile: profile_from_row(&row)?,
            scopes: scopes_from_text(&scopes),
            revoked: revoked_at.is_some(),
            sealed: SealedSecret {
                key_id: row.try_get("key_id")?,
                sealed: row.try_get("sealed_secret")?,
            },
        }))
    }

    async fn active_tokens(&self, profile_id: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_id, label, scopes, created_at, last_used_at FROM api_tokens
             WHERE profile_id = ?1 AND revoked_at IS NULL ORDER BY created_at, token_id",
        )
        .bind(profile_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let scopes: String = row.try_get("scopes")?;
                let last_used: Option<i64> = row.try_get("last_used_at")?;
                Ok(TokenRecord {
                    token_id: TokenId::new(row.try_get::<String, _>("token_id")?),
                    label: row.try_get("label")?,
                    scopes: scopes_from_text(&scopes),
                    created_at: time_from_millis(row.try_get("created_at")?)?,
                    last_used_at: last_used.map(time_from_millis).transpose()?,
                })
            })
            .collect()
    }

    async fn revoke_token(
        &self,
        profile_id: i64,
        token_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let statement = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ?3
             WHERE token_id = ?1 AND profile_id = ?2 AND revoked_at IS NULL",
        )
        .bind(token_id.to_owned())
        .bind(profile_id)
        .bind(millis(now));
        Ok(self.writes.execute(statement).await? == 1)
    }

    async fn record_signature(
        &self,
        token_id: &str,
        signature: &[u8; 32],
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let statement = sqlx::query(
            "INSERT INTO used_signatures (token_id, signature, expires_at)
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )
        .bind(token_id.to_owned())
        .bind(signature.to_vec())
        .bind(millis(expires_at));
        Ok(self.writes.execute(statement).await? == 1)
    }

    async fn prune_signatures(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let statement =
            sqlx::query("DELETE FROM used_signatures WHERE expires_at < ?1").bind(millis(now));
        self.writes.execute(statement).await
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
