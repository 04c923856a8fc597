//! Stored rows, decoded once for both backends.
//!
//! The decoders are generic over [`sqlx::Row`] the way sqlx's own `FromRow` derive is written:
//! the column types they read are bounds on the row's database, stated once on [`StoredRow`].
//! The one column the backends store differently, the profile id, is
//! [`StoredRow::ProfileId`].

use chrono::{DateTime, Utc};
use lmts_core::{Scope, TokenId};
use sqlx::{postgres::PgRow, sqlite::SqliteRow, ColumnIndex, Decode, Row, Type};

use super::{PartnerProfile, PartnerSettings, StoreError, TokenCredentials, TokenRecord};
use crate::crypto::SealedSecret;

/// A row of one of the backends, decoded into the store's types.
///
/// The decoders are written once, here; a backend only says how it stores profile ids.
pub(super) trait StoredRow: Row
where
    for<'c> &'c str: ColumnIndex<Self>,
    bool: Type<Self::Database> + for<'r> Decode<'r, Self::Database>,
    i64: Type<Self::Database> + for<'r> Decode<'r, Self::Database>,
    String: Type<Self::Database> + for<'r> Decode<'r, Self::Database>,
    Vec<u8>: Type<Self::Database> + for<'r> Decode<'r, Self::Database>,
{
    /// The column type of profile ids in this backend.
    type ProfileId: Into<i64> + Type<Self::Database> + for<'r> Decode<'r, Self::Database>;

    /// A profile from the columns `id, subject, account`.
    fn profile(&self) -> Result<PartnerProfile, StoreError> {
        Ok(PartnerProfile {
            id: self.try_get::<Self::ProfileId, _>("id")?.into(),
            subject: self.try_get("subject")?,
            account: self.try_get("account")?,
        })
    }

    /// Settings from the columns `token_management_enabled, allowed_scopes`.
    fn settings(&self) -> Result<PartnerSettings, StoreError> {
        let scopes: String = self.try_get("allowed_scopes")?;
        Ok(PartnerSettings {
            token_management_enabled: self.try_get("token_management_enabled")?,
            allowed_scopes: scopes_from_text(&scopes),
        })
    }

    /// Credentials from the token's `token_id, scopes, revoked_at, key_id, sealed_secret` and
    /// its profile's `id, subject, account`.
    fn credentials(&self) -> Result<TokenCredentials, StoreError> {
        let scopes: String = self.try_get("scopes")?;
        let revoked_at: Option<i64> = self.try_get("revoked_at")?;
        Ok(TokenCredentials {
            token_id: TokenId::new(self.try_get::<String, _>("token_id")?),
            profile: self.profile()?,
            scopes: scopes_from_text(&scopes),
            revoked: revoked_at.is_some(),
            sealed: SealedSecret {
                key_id: self.try_get("key_id")?,
                sealed: self.try_get("sealed_secret")?,
            },
        })
    }

    /// A listed token from the columns `token_id, label, scopes, created_at, last_used_at`.
    fn token_record(&self) -> Result<TokenRecord, StoreError> {
        let scopes: String = self.try_get("scopes")?;
        let last_used: Option<i64> = self.try_get("last_used_at")?;
        Ok(TokenRecord {
            token_id: TokenId::new(self.try_get::<String, _>("token_id")?),
            label: self.try_get("label")?,
            scopes: scopes_from_text(&scopes),
            created_at: time_from_millis(self.try_get("created_at")?)?,
            last_used_at: last_used.map(time_from_millis).transpose()?,
        })
    }
}

impl StoredRow for SqliteRow {
    /// SQLite's `INTEGER PRIMARY KEY`: the 64-bit rowid.
    type ProfileId = i64;
}

impl StoredRow for PgRow {
    /// PostgreSQL's `SERIAL`: a 32-bit `INTEGER`.
    type ProfileId = i32;
}

/// Scopes from their stored form.
fn scopes_from_text(text: &str) -> Vec<Scope> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(Scope::from)
        .collect()
}

/// A stored time from milliseconds since the epoch.
fn time_from_millis(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("time {millis} out of range")))
}
