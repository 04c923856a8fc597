//! Privy identity tokens (SPEC A6): ES256 JWTs checked for issuer, audience and expiry, the key
//! chosen by `kid` among a PEM key, a JWKS document and, in dev mode, the dev issuer's key
//! ([`dev`]).

pub mod dev;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError,
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::{sync::Mutex, time::Instant};

use lmts_core::error_chain::error_chain;

use crate::account::checksum_address;

/// The issuer Privy writes into its identity tokens.
pub const PRIVY_ISSUER: &str = "privy.io";
/// The most leeway the verifier grants on `exp` and `nbf`.
pub const MAX_LEEWAY: TimeDelta = TimeDelta::seconds(60);
/// The largest identity token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an identity token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not a well-formed JWT.
    #[error("identity token is malformed")]
    Malformed,
    /// Signed with an algorithm other than ES256.
    #[error("identity token must be signed with ES256")]
    WrongAlgorithm,
    /// No verification key has the token's `kid`.
    #[error("identity token is signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("identity token signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("identity token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("identity token is not valid yet")]
    NotYetValid,
    /// Issued by someone else than the configured issuer.
    #[error("identity token is from another issuer")]
    WrongIssuer,
    /// Issued for another app.
    #[error("identity token is for another app")]
    WrongAudience,
    /// A required claim is missing or of the wrong type.
    #[error("identity token lacks a required claim")]
    MissingClaim,
    /// The identity has no EVM wallet to map to a partner profile.
    #[error("identity has no linked wallet to map to a partner profile")]
    NoWallet,
    /// No key set could be fetched yet, so no identity token can be verified.
    #[error("identity verification keys are unavailable")]
    KeysUnavailable(#[source] JwksError),
}

/// A verified identity: who, and which wallet speaks for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The Privy DID (`sub`).
    pub subject: String,
    /// The first linked EVM wallet, EIP-55 checksummed.
    pub account: String,
}

/// The longest a JWKS fetch may take, from connecting to the last byte of the document.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the JWKS document could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request failed or timed out, or its answer was an error status or not a JWKS.
    #[error("the JWKS request failed")]
    Request(#[source] Arc<reqwest::Error>),
    /// The fetch ended without an answer (the runtime is shutting down).
    #[error("the JWKS fetch was interrupted")]
    Interrupted,
}

/// Verification keys from a JWKS document, fetched on the first unknown `kid` and again on a
/// later unknown `kid` at most once per `min_refetch`.
///
/// A request whose `kid` is in the last key set fetched reads it under a lock that is never
/// held across an `.await`, so a slow or failing JWKS host delays none of them. A request whose
/// `kid` is unknown waits for the one fetch in flight (single flight) or, when there is none
/// and the rate limit allows, starts it. The fetch runs in a task of its own, bounded by
/// [`JWKS_FETCH_TIMEOUT`], so a client that goes away cannot cancel it; the new key set is
/// swapped in whole. A failed fetch keeps the keys known.
///
/// An unknown `kid` is [`IdentityError::UnknownKey`] (401) as soon as any key set is known,
/// even when the refetch that might have found it failed: 5xx never answers bad input, and
/// the known keys still verify everyone else. Only while no key set was ever fetched is the
/// answer [`IdentityError::KeysUnavailable`] (503): the service then cannot verify anyone.
pub struct JwksSource {
    shared: Arc<JwksShared>,
}

struct JwksShared {
    url: String,
    client: reqwest::Client,
    min_refetch: Duration,
    /// The last key set fetched, `None` until a fetch succeeds; never locked across an await.
    keys: std::sync::RwLock<Option<HashMap<String, DecodingKey>>>,
    /// Fetch attempts finished, so that a request that waited for another's fetch takes its
    /// result instead of fetching again.
    attempts: AtomicU64,
    /// Held by the fetch in flight, and briefly by requests deciding whether to start one.
    fetcher: Arc<Mutex<FetchState>>,
}

/// What the fetcher remembers between attempts.
#[derive(Default)]
struct FetchState {
    started_at: Option<Instant>,
    last_error: Option<JwksError>,
}

/// What the key set knows of a `kid`.
enum Lookup {
    Found(DecodingKey),
    Unknown,
    NoKeySet,
}

impl JwksSource {
    /// A JWKS document at `url`, re-fetched on an unknown `kid` at most once per `min_refetch`.
    pub fn new(url: String, min_refetch: Duration) -> Result<Self, reqwest::Error> {
        // A total deadline: from connecting to the end of the body.
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()?;
        Ok(Self {
            shared: Arc::new(JwksShared {
                url,
                client,
                min_refetch,
                keys: std::sync::RwLock::new(None),
                attempts: AtomicU64::new(0),
                fetcher: Arc::new(Mutex::new(FetchState::default())),
            }),
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, IdentityError> {
        // Read before the lookup: an attempt that ends after it shows as a changed count.
        let seen = self.shared.attempts.load(Ordering::Acquire);
        if let Lookup::Found(key) = self.shared.lookup(kid) {
            return Ok(key);
        }
        let last_error = self.refresh(seen).await;
        match self.shared.lookup(kid) {
            Lookup::Found(key) => Ok(key),
            Lookup::Unknown => Err(IdentityError::UnknownKey),
            Lookup::NoKeySet => Err(IdentityError::KeysUnavailable(
                last_error.unwrap_or(JwksError::Interrupted),
            )),
        }
    }

    /// Waits until a fetch attempt has ended since `seen` attempts, starting one unless another
    /// ended meanwhile or the rate limit forbids it; answers the last attempt's error, if any.
    async fn refresh(&self, seen: u64) -> Option<JwksError> {
        let state = Arc::clone(&self.shared.fetcher).lock_owned().await;
        let shared = &self.shared;
        let may_start = state
            .started_at
            .is_none_or(|at| at.elapsed() >= shared.min_refetch);
        if shared.attempts.load(Ordering::Acquire) != seen || !may_start {
            return state.last_error.clone();
        }
        let shared = Arc::clone(shared);
        // The task owns the lock until the attempt ends, even if this request is dropped.
        tokio::spawn(async move {
            let mut state = state;
            shared.attempt(&mut state).await;
            state.last_error.clone()
        })
        .await
        .unwrap_or(Some(JwksError::Interrupted))
    }
}

impl JwksShared {
    fn lookup(&self, kid: &str) -> Lookup {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        match keys.as_ref() {
            None => Lookup::NoKeySet,
            Some(keys) => keys
                .get(kid)
                .cloned()
                .map_or(Lookup::Unknown, Lookup::Found),
        }
    }

    /// One fetch; on success the key set is replaced whole, on failure the old one stays.
    async fn attempt(&self, state: &mut FetchState) {
        state.started_at = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched identity JWKS");
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(keys);
                state.last_error = None;
            }
            Err(error) => {
                tracing::warn!(
                    url = %self.url,
                    error = %error_chain(&error),
                    "could not fetch identity JWKS; the keys known so far stay"
                );
                state.last_error = Some(error);
            }
        }
        self.attempts.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwksError> {
        let request_error = |error| JwksError::Request(Arc::new(error));
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .map_err(request_error)?
            .json()
            .await
            .map_err(request_error)?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, key))
            })
            .collect())
    }
}

/// The keys identity tokens may be signed with.
#[derive(Default)]
pub struct IdentityKeys {
    /// Keys with a fixed `kid` (the dev issuer's).
    pub by_kid: HashMap<String, DecodingKey>,
    /// A PEM key from the Privy dashboard, used for any `kid` not in `by_kid`.
    pub pem: Option<DecodingKey>,
    /// A JWKS document, consulted when no other key applies.
    pub jwks: Option<JwksSource>,
}

impl IdentityKeys {
    /// Whether there is any key at all.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty() && self.pem.is_none() && self.jwks.is_none()
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, IdentityError> {
        if let Some(key) = kid.and_then(|kid| self.by_kid.get(kid)) {
            return Ok(key.clone());
        }
        if let Some(key) = &self.pem {
            return Ok(key.clone());
        }
        match (&self.jwks, kid) {
            (Some(jwks), Some(kid)) => jwks.key(kid).await,
            _ => Err(IdentityError::UnknownKey),
        }
    }
}

/// Verifies Privy identity tokens.
pub struct IdentityVerifier {
    keys: IdentityKeys,
    validation: Validation,
    leeway: TimeDelta,
}

impl fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("dev_keys", &self.keys.by_kid.keys().collect::<Vec<_>>())
            .field("pem", &self.keys.pem.is_some())
            .field("jwks", &self.keys.jwks.as_ref().map(|j| &j.shared.url))
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    linked_accounts: Option<Value>,
}

impl IdentityVerifier {
    /// A verifier for tokens of `app_id` from `issuer`, with `leeway` (capped at 60 s) on times.
    pub fn new(keys: IdentityKeys, issuer: &str, app_id: &str, leeway: TimeDelta) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[app_id]);
        // `exp` is required by `Claims` itself: the library reads it as a `u64` and would call
        // a negative `exp` missing rather than expired. Times are checked against the
        // service's clock in `check_times`, not the library's.
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            keys,
            validation,
            leeway: leeway.clamp(TimeDelta::zero(), MAX_LEEWAY),
        }
    }

    /// Verifies `token` at `now` and finds the wallet it speaks for.
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedIdentity, IdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(IdentityError::WrongAlgorithm);
        }
        let key = self.keys.key_for(header.kid.as_deref()).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(map_jwt_error)?
            .claims;
        self.check_times(&claims, now)?;
        let account =
            first_wallet(claims.linked_accounts.as_ref()).ok_or(IdentityError::NoWallet)?;
        Ok(VerifiedIdentity {
            subject: claims.sub,
            account,
        })
    }

    /// `exp` and `nbf` against `now`, with the leeway; saturating, so that no claim wraps
    /// around (`exp = i64::MAX` never expires, `nbf = i64::MAX` is never valid yet).
    fn check_times(&self, claims: &Claims, now: DateTime<Utc>) -> Result<(), IdentityError> {
        let now = now.timestamp();
        let leeway = self.leeway.num_seconds();
        if claims.exp.saturating_add(leeway) < now {
            return Err(IdentityError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
        {
            return Err(IdentityError::NotYetValid);
        }
        Ok(())
    }
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> IdentityError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => IdentityError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            IdentityError::WrongAlgorithm
        }
        ErrorKind::InvalidIssuer => IdentityError::WrongIssuer,
        ErrorKind::InvalidAudience => IdentityError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => IdentityError::MissingClaim,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => IdentityError::BadSignature,
        _ => IdentityError::Malformed,
    }
}

/// The first linked account of type `wallet` with an EVM address, checksummed. Privy sends
/// `linked_accounts` as a JSON string holding the array; an array itself is accepted too.
fn first_wallet(linked_accounts: Option<&Value>) -> Option<String> {
    let parsed;
    let accounts = match linked_accounts? {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_array()?
        }
        Value::Array(accounts) => accounts,
        _ => return None,
    };
    accounts
        .iter()
        .filter(|account| account.get("type").and_then(Value::as_str) == Some("wallet"))
        .find_map(|account| checksum_address(account.get("address")?.as_str()?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::first_wallet;

    #[test]
    fn first_evm_wallet_wins_in_string_or_array_form() {
        let accounts = json!([
            {"type": "email", "address": "a@b.c"},
            {"type": "wallet", "address": "So1anaAddre55", "chain_type": "solana"},
            {"type": "wallet", "address": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"},
            {"type": "wallet", "address": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"}
        ]);
        let expected = Some("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".to_owned());
        assert_eq!(first_wallet(Some(&accounts)), expected);
        assert_eq!(first_wallet(Some(&json!(accounts.to_string()))), expected);
        assert_eq!(first_wallet(Some(&json!([{"type": "email"}]))), None);
        assert_eq!(first_wallet(Some(&json!("not json"))), None);
        assert_eq!(first_wallet(None), None);
    }
}
