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
    postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow},
    Postgres,
};
use tokio::task::JoinHandle;

use super::{
    backend::{Backend, Statement},
    millis,
    rows::stored_profile_id,
    scopes_to_text, Invalidation, InvalidationSink, NewToken, StoreError,
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

/// The PostgreSQL backend. It keeps the [`Store`](super::Store) contract, which is
/// written once for both backends.
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
    /// One attempt at [`Backend::insert_token`], in one transaction that the retry may repeat.
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

    async fn execute_revocation(
        &self,
        write: Statement<Postgres>,
        profile_id: i64,
        token_id: &str,
    ) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let revoked = write
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?
            .rows_affected();
        if revoked == 1 {
            announce(&mut transaction, profile_id, Some(token_id)).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(revoked)
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

/// Delivers one notification of [`announce`]: `<profile id>:<token id>` for a revoke,
/// `<profile id>:` for a derive. Anything else invalidates everything.
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
