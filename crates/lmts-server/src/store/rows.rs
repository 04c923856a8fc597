//! Stored rows, decoded once for both backends.
//!
//! The decoders are generic over [`sqlx::Row`] the way sqlx's own `FromRow` derive is written:
//! the column types they read are bounds on the row's database, stated once on the one
//! implementation of [`StoredRow`]. The one column the backends store differently, the profile
//! id, is [`StoreDatabase::ProfileId`].

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use lmts_core::{addresses::parse_block, wire::TokenEventType, Scope, TokenId};
use sqlx::{ColumnIndex, Database, Decode, Encode, Postgres, Row, Sqlite, Type};

use super::{
    KeyedDerive, NewEvent, PartnerProfile, PartnerSettings, StoreError, StoredEvent,
    TokenCredentials, TokenRecord,
};
use crate::{crypto::SealedSecret, keys::KeyUse};

/// A database the store runs on.
pub(super) trait StoreDatabase: Database {
    /// The column type of profile ids.
    type ProfileId: Into<i64>
        + TryFrom<i64>
        + Send
        + Type<Self>
        + for<'r> Decode<'r, Self>
        + Encode<'static, Self>;
}

impl StoreDatabase for Sqlite {
    /// SQLite's `INTEGER PRIMARY KEY`: the 64-bit rowid.
    type ProfileId = i64;
}

impl StoreDatabase for Postgres {
    /// PostgreSQL's `SERIAL`: a 32-bit `INTEGER`.
    type ProfileId = i32;
}

/// A profile id as `DB` stores it; an id that does not fit was never stored there.
pub(super) fn stored_profile_id<DB: StoreDatabase>(id: i64) -> Result<DB::ProfileId, StoreError> {
    DB::ProfileId::try_from(id)
        .map_err(|_| StoreError::Corrupt(format!("profile id {id} out of range")))
}

/// A row of either backend, decoded into the store's types.
pub(super) trait StoredRow {
    /// A profile from the columns `id, subject, account`.
    fn profile(&self) -> Result<PartnerProfile, StoreError>;

    /// Settings from the columns `token_management_enabled, allowed_scopes`.
    fn settings(&self) -> Result<PartnerSettings, StoreError>;

    /// Credentials from the token's `token_id, scopes, revoked_at, key_id, sealed_secret` and
    /// its profile's `id, subject, account`.
    fn credentials(&self) -> Result<TokenCredentials, StoreError>;

    /// A listed token from the columns `token_id, label, scopes, created_at, last_used_at`.
    fn token_record(&self) -> Result<TokenRecord, StoreError>;

    /// A derive recorded under an idempotency key, from `token_id, body_digest`.
    fn keyed_derive(&self) -> Result<KeyedDerive, StoreError>;

    /// A key's use from `key_id, sealed, live`.
    fn key_use(&self) -> Result<KeyUse, StoreError>;

    /// A token's sealed secret from `token_id, key_id, sealed_secret`.
    fn sealed(&self) -> Result<(TokenId, SealedSecret), StoreError>;

    /// An audit event from `id, at, kind, token_id, ip, detail`.
    fn event(&self) -> Result<StoredEvent, StoreError>;

    /// The `token.expired` event of a token noted as expired, from `token_id, profile_id,
    /// expires_at, revoked_at`; `None` for a revoked token.
    fn expiry_event(&self) -> Result<Option<NewEvent>, StoreError>;

    /// A token's id, from `token_id`.
    fn token_id(&self) -> Result<TokenId, StoreError>;

    /// A token's sealed secret, from `key_id, sealed_secret`.
    fn sealed_secret(&self) -> Result<SealedSecret, StoreError>;

    /// A token's expiry, from `expires_at`.
    fn expires_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// A token's address blocks, from `allowed_ips`.
    fn allowed_ips(&self) -> Result<Vec<IpNet>, StoreError>;
}

impl<R> StoredRow for R
where
    R: Row<Database: StoreDatabase>,
    for<'c> &'c str: ColumnIndex<R>,
    bool: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    fn profile(&self) -> Result<PartnerProfile, StoreError> {
        let id: <R::Database as StoreDatabase>::ProfileId = self.try_get("id")?;
        Ok(PartnerProfile {
            id: id.into(),
            subject: self.try_get("subject")?,
            account: self.try_get("account")?,
        })
    }

    fn settings(&self) -> Result<PartnerSettings, StoreError> {
        let scopes: String = self.try_get("allowed_scopes")?;
        Ok(PartnerSettings {
            token_management_enabled: self.try_get("token_management_enabled")?,
            allowed_scopes: scopes_from_text(&scopes),
        })
    }

    fn credentials(&self) -> Result<TokenCredentials, StoreError> {
        let scopes: String = self.try_get("scopes")?;
        let revoked_at: Option<i64> = self.try_get("revoked_at")?;
        Ok(TokenCredentials {
            token_id: self.token_id()?,
            profile: self.profile()?,
            scopes: scopes_from_text(&scopes),
            created_at: time_from_millis(self.try_get("created_at")?)?,
            revoked: revoked_at.is_some(),
            rotated: self.try_get::<Option<i64>, _>("rotated_at")?.is_some(),
            expires_at: self.expires_at()?,
            allowed_ips: self.allowed_ips()?,
            sealed: self.sealed_secret()?,
        })
    }

    fn token_record(&self) -> Result<TokenRecord, StoreError> {
        let scopes: String = self.try_get("scopes")?;
        let last_used: Option<i64> = self.try_get("last_used_at")?;
        Ok(TokenRecord {
            token_id: self.token_id()?,
            label: self.try_get("label")?,
            scopes: scopes_from_text(&scopes),
            created_at: time_from_millis(self.try_get("created_at")?)?,
            expires_at: self.expires_at()?,
            allowed_ips: self.allowed_ips()?,
            last_used_at: last_used.map(time_from_millis).transpose()?,
        })
    }

    fn keyed_derive(&self) -> Result<KeyedDerive, StoreError> {
        let digest: Vec<u8> = self.try_get("body_digest")?;
        Ok(KeyedDerive {
            token_id: self.token_id()?,
            body_digest: digest
                .try_into()
                .map_err(|_| StoreError::Corrupt("derive key digest".into()))?,
        })
    }

    fn key_use(&self) -> Result<KeyUse, StoreError> {
        let sealed: i64 = self.try_get("sealed")?;
        let live: i64 = self.try_get("live")?;
        Ok(KeyUse {
            key_id: self.try_get("key_id")?,
            sealed: sealed.unsigned_abs(),
            live: live.unsigned_abs(),
        })
    }

    fn sealed(&self) -> Result<(TokenId, SealedSecret), StoreError> {
        Ok((self.token_id()?, self.sealed_secret()?))
    }

    fn event(&self) -> Result<StoredEvent, StoreError> {
        let kind: String = self.try_get("kind")?;
        let ip: Option<String> = self.try_get("ip")?;
        Ok(StoredEvent {
            id: self.try_get("id")?,
            at: time_from_millis(self.try_get("at")?)?,
            kind: TokenEventType::parse(&kind),
            token_id: self.token_id()?,
            ip: ip
                .map(|ip| ip.parse())
                .transpose()
                .map_err(|_| StoreError::Corrupt("event address".into()))?,
            detail: self.try_get("detail")?,
        })
    }

    fn expiry_event(&self) -> Result<Option<NewEvent>, StoreError> {
        let revoked_at: Option<i64> = self.try_get("revoked_at")?;
        let Some(at) = self.expires_at()?.filter(|_| revoked_at.is_none()) else {
            return Ok(None);
        };
        let profile_id: <R::Database as StoreDatabase>::ProfileId = self.try_get("profile_id")?;
        Ok(Some(NewEvent {
            profile_id: profile_id.into(),
            at,
            kind: TokenEventType::Expired,
            token_id: self.token_id()?,
            ip: None,
            detail: format!("it expired at {}", lmts_core::signing::format_timestamp(at)),
        }))
    }

    fn token_id(&self) -> Result<TokenId, StoreError> {
        Ok(TokenId::new(self.try_get::<String, _>("token_id")?))
    }

    fn sealed_secret(&self) -> Result<SealedSecret, StoreError> {
        Ok(SealedSecret {
            key_id: self.try_get("key_id")?,
            sealed: self.try_get("sealed_secret")?,
        })
    }

    fn expires_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let expires_at: Option<i64> = self.try_get("expires_at")?;
        expires_at.map(time_from_millis).transpose()
    }

    fn allowed_ips(&self) -> Result<Vec<IpNet>, StoreError> {
        let text: String = self.try_get("allowed_ips")?;
        text.split(',')
            .filter(|part| !part.is_empty())
            .map(|part| {
                parse_block(part)
                    .map_err(|_| StoreError::Corrupt(format!("address block {part:?}")))
            })
            .collect()
    }
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
