//! PostgreSQL: the one source of truth for many service instances behind a load balancer.
//!
//! Revocations are announced with `NOTIFY` in the revoking transaction, so every instance's
//! listener drops the token from its cache as soon as the revoke commits. The active-token
//! limit holds across instances because a derive locks its profile row before it counts.

use std::{borrow::Cow, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lmts_core::TokenId;
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions},
    Postgres,
};
use tokio::task::JoinHandle;

use super::{
    millis,
    rows::{stored_profile_id, StoredRow},
    scopes_to_text, Invalidation, InvalidationSink, NewToken, PartnerProfile, PartnerSettings,
    SettingsKey, Store, StoreError, TokenCredentials, TokenRecord,
};

/// The channel derives and revocations are announced on.
pub const REVOCATION_CHANNEL: &str = "lmts_revocations";

/// Connection settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections one instance holds.
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
    /// The longest a statement may run.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
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
            .connect_with(connect)
            .await
            .map_err(store_error)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
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
    async fn try_insert_token(
        &self,
        token: &NewToken,
        max_active: Option<u32>,
    ) -> Result<(), StoreError> {
        let profile = stored_profile_id::<Postgres>(token.profile_id)?;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        if let Some(max_active) = max_active {
            // Serialises derives of one partner across every instance.
            sqlx::query("SELECT id FROM profiles WHERE id = $1 FOR UPDATE")
                .bind(profile)
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?;
            // Counting stops at the limit, so it costs at most that many rows.
            let active: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens
                 WHERE profile_id = $1 AND revoked_at IS NULL LIMIT $2) AS active",
            )
            .bind(profile)
            .bind(i64::from(max_active))
            .fetch_one(&mut *transaction)
            .await
            .map_err(store_error)?;
            if active >= i64::from(max_active) {
                return Err(StoreError::LimitReached { limit: max_active });
            }
        }
        sqlx::query(
            "INSERT INTO api_tokens
                 (token_id, profile_id, label, scopes, created_at, key_id, sealed_secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.token_id.as_str())
        .bind(profile)
        .bind(token.label.as_deref())
        .bind(scopes_to_text(&token.scopes))
        .bind(millis(token.created_at))
        .bind(&token.sealed.key_id)
        .bind(&token.sealed.sealed)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        // Other instances drop their cached list of this partner's tokens.
        announce(&mut transaction, token.profile_id, None).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn upsert_profile(
        &self,
        subject: &str,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<PartnerProfile, StoreError> {
        let row = sqlx::query(
            "INSERT INTO profiles (subject, account, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (subject) DO UPDATE SET account = EXCLUDED.account
             RETURNING id, subject, account",
        )
        .bind(subject)
        .bind(account)
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        row.profile()
    }

    async fn profile_by_account(
        &self,
        account: &str,
    ) -> Result<Option<PartnerProfile>, StoreError> {
        let row = sqlx::query(
            "SELECT id, subject, account FROM profiles WHERE lower(account) = lower($1)
             ORDER BY id LIMIT 1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(StoredRow::profile).transpose()
    }

    async fn partner_settings(&self, account: &str) -> Result<PartnerSettings, StoreError> {
        let row = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings
             WHERE account IN (lower($1), '*') ORDER BY account = '*' LIMIT 1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        match row {
            Some(row) => row.settings(),
            None => Ok(PartnerSettings::builtin_default()),
        }
    }

    async fn stored_settings(
        &self,
        key: &SettingsKey,
    ) -> Result<Option<PartnerSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT token_management_enabled, allowed_scopes FROM partner_settings
             WHERE account = $1",
        )
        .bind(key.stored())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(StoredRow::settings).transpose()
    }

    async fn set_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
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
        .bind(millis(now))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
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

    async fn token_credentials(
        &self,
        token_id: &str,
    ) -> Result<Option<TokenCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT t.token_id, t.scopes, t.revoked_at, t.key_id, t.sealed_secret,
                    p.id, p.subject, p.account
             FROM api_tokens t JOIN profiles p ON p.id = t.profile_id
             WHERE t.token_id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(StoredRow::credentials).transpose()
    }

    async fn active_tokens(&self, profile_id: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let listed = sqlx::query(
            "SELECT token_id, label, scopes, created_at, last_used_at FROM api_tokens
             WHERE profile_id = $1 AND revoked_at IS NULL ORDER BY created_at, token_id",
        )
        .bind(stored_profile_id::<Postgres>(profile_id)?)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        listed.iter().map(StoredRow::token_record).collect()
    }

    async fn revoke_token(
        &self,
        profile_id: i64,
        token_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3
             WHERE token_id = $1 AND profile_id = $2 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .bind(stored_profile_id::<Postgres>(profile_id)?)
        .bind(millis(now))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?
        .rows_affected();
        if revoked == 1 {
            announce(&mut transaction, profile_id, Some(token_id)).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(revoked == 1)
    }

    async fn record_signature(
        &self,
        token_id: &str,
        signature: &[u8; 32],
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO used_signatures (token_id, signature, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(token_id)
        .bind(&signature[..])
        .bind(millis(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn prune_signatures(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned = sqlx::query("DELETE FROM used_signatures WHERE expires_at < $1")
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(store_error)?
            .rows_affected();
        Ok(pruned)
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

    fn watch_invalidations(&self, sink: InvalidationSink) -> Option<JoinHandle<()>> {
        let pool = self.pool.clone();
        Some(tokio::spawn(listen_for_revocations(pool, sink)))
    }
}

/// Tells every listening instance that `profile_id`'s tokens changed: `revoked` names the token
/// a revoke took; a derive names none. Delivered when, and only if, `transaction` commits.
async fn announce(
    transaction: &mut PgConnection,
    profile_id: i64,
    revoked: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REVOCATION_CHANNEL)
        .bind(format!("{profile_id}:{}", revoked.unwrap_or_default()))
        .execute(transaction)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Delivers one notification (see [`announce`]): `<profile id>:<token id>` for a revoke, `<profile id>:` for a
/// derive. Anything else invalidates everything.
fn deliver(payload: &str, sink: &InvalidationSink) {
    let parsed = payload
        .split_once(':')
        .and_then(|(profile, token)| Some((profile.parse::<i64>().ok()?, token)));
    match parsed {
        Some((profile_id, token_id)) => {
            if !token_id.is_empty() {
                sink(Invalidation::Token(TokenId::new(token_id)));
            }
            sink(Invalidation::Profile(profile_id));
        }
        None => sink(Invalidation::All),
    }
}

/// Forwards revocations from every instance to `sink`, forever. Whenever the listening
/// connection is (re)established or lost, everything is invalidated: notifications sent while
/// no one listened are gone, and the cache must not outlive them.
async fn listen_for_revocations(pool: PgPool, sink: InvalidationSink) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, "revocation listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(REVOCATION_CHANNEL).await {
            tracing::warn!(error = %error, "revocation listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        sink(Invalidation::All);
        tracing::info!(
            channel = REVOCATION_CHANNEL,
            "listening for derives and revocations"
        );
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => deliver(notification.payload(), &sink),
                Ok(None) => {
                    tracing::warn!("revocation listener lost its connection; resynchronising");
                    sink(Invalidation::All);
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "revocation listener failed; reconnecting");
                    sink(Invalidation::All);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn notifications_name_the_profile_and_the_revoked_token() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: InvalidationSink = {
            let seen = seen.clone();
            Arc::new(move |invalidation| seen.lock().unwrap().push(invalidation))
        };
        deliver("7:lmts_abc", &sink);
        deliver("7:", &sink);
        deliver("garbage", &sink);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Invalidation::Token(TokenId::new("lmts_abc")),
                Invalidation::Profile(7),
                Invalidation::Profile(7),
                Invalidation::All,
            ]
        );
    }

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
