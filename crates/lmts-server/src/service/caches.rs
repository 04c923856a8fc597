//! The service's caches in front of the store, and the one place that knows what each
//! invalidation forgets: this instance's own derives, revokes and rotations, and other
//! instances' notices delivered by the store (PostgreSQL `NOTIFY`), go through
//! [`Caches::forget`] alike.
//!
//! Token and list caches answer only while the store says they may
//! ([`Store::caches_may_answer`]): on PostgreSQL, while this instance can prove it hears other
//! instances' revocations. Otherwise every lookup reads the store, and caches nothing.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderValue;
use lmts_core::{clock::Clock, Scope, Signer, TokenId};
use tokio::task::JoinHandle;

use super::{
    derive,
    listing::TokenListing,
    ttl_cache::TtlCache,
    tunnels::{OpenTunnels, TunnelGuard},
    validity::Validity,
    ServiceError, ServiceSettings,
};
use crate::{
    crypto::Keyring,
    store::{Invalidation, PartnerProfile, PartnerSettings, Store},
};

/// How long partner settings are cached: a change made by `lmts partners` (another process)
/// applies within this time.
pub const SETTINGS_TTL: Duration = Duration::from_millis(500);

/// Verification state of one live token: its signer (key decrypted and HMAC state prepared
/// once), its profile and its scopes.
#[derive(Debug)]
pub struct CachedToken {
    /// Its id.
    pub token_id: TokenId,
    /// The owning profile.
    pub profile: PartnerProfile,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// The prepared signer.
    pub signer: Signer,
    /// When and from where it may be used.
    pub validity: Validity,
    /// The values of the gateway's grant headers, made at the token's first gateway request
    /// (boxed: a token only the token endpoints see pays a pointer for it).
    pub(super) grant_values: OnceLock<Box<[Option<HeaderValue>; 4]>>,
    /// Client addresses this entry has already noted (a few; audit events' new addresses), so
    /// that a repeat request costs no allocation and no shared lock.
    pub(super) seen_from: Mutex<Vec<IpAddr>>,
}

impl CachedToken {
    /// The verification state of a live token.
    pub fn new(
        token_id: TokenId,
        profile: PartnerProfile,
        scopes: Vec<Scope>,
        signer: Signer,
        validity: Validity,
    ) -> Self {
        Self {
            token_id,
            profile,
            scopes,
            signer,
            validity,
            grant_values: OnceLock::new(),
            seen_from: Mutex::default(),
        }
    }
}

/// What the service keeps in memory, each entry bounded by a TTL as the backstop for a missed
/// invalidation.
#[derive(Debug)]
pub(super) struct Caches {
    /// Verification state by token id.
    tokens: TtlCache<TokenId, Arc<CachedToken>>,
    /// Live tokens by profile id, rendered for listing.
    lists: TtlCache<i64, Arc<TokenListing>>,
    /// Partner settings by account as profiles carry it (EIP-55), for [`SETTINGS_TTL`].
    settings: TtlCache<String, Arc<PartnerSettings>>,
    /// The gateway's WebSocket tunnels, by the token that opened them.
    pub(super) tunnels: OpenTunnels,
    /// The service's time: a rotation's end, a time of day, becomes a tunnel's deadline.
    clock: Clock,
}

impl Caches {
    /// Empty caches sized and timed by `settings`, on the service's `clock`.
    pub(super) fn new(settings: &ServiceSettings, clock: Clock) -> Self {
        let capacity = settings.token_cache_capacity;
        Self {
            tokens: TtlCache::new(settings.token_cache_ttl, capacity),
            lists: TtlCache::new(settings.token_cache_ttl, capacity),
            settings: TtlCache::new(SETTINGS_TTL, capacity),
            tunnels: OpenTunnels::default(),
            clock,
        }
    }

    /// The verification state of `token_id` if it is cached and the caches may answer (no
    /// lookup, no wait).
    pub(super) fn cached_token(
        &self,
        store: &dyn Store,
        token_id: &str,
    ) -> Option<Arc<CachedToken>> {
        if store.caches_may_answer() {
            self.tokens.get(token_id)
        } else {
            None
        }
    }

    /// The verification state of a live token: cached, else loaded and its secret opened;
    /// `None` when no live token has this id.
    pub(super) async fn token(
        &self,
        store: &dyn Store,
        keyring: &Keyring,
        token_id: &str,
    ) -> Result<Option<Arc<CachedToken>>, ServiceError> {
        // A load fails with `None` when no live token has the id.
        let load = || async {
            let credentials = match store.token_credentials(token_id).await {
                Ok(Some(credentials)) if !credentials.revoked => credentials,
                Ok(_) => return Err(None),
                Err(error) => return Err(Some(ServiceError::from(error))),
            };
            let secret = keyring
                .open(token_id, &credentials.sealed)
                .map_err(|error| Some(error.into()))?;
            Ok(Arc::new(CachedToken::new(
                credentials.token_id,
                credentials.profile,
                credentials.scopes,
                Signer::new(&secret),
                Validity {
                    expires_at: credentials.expires_at,
                    allowed_ips: credentials.allowed_ips.into(),
                },
            )))
        };
        let owned_key = |entry: &Arc<CachedToken>| entry.token_id.clone();
        let found = if store.caches_may_answer() {
            self.tokens.get_or_load(token_id, load, owned_key).await
        } else {
            load().await
        };
        match found {
            Ok(entry) => Ok(Some(entry)),
            Err(None) => Ok(None),
            Err(Some(error)) => Err(error),
        }
    }

    /// The live tokens of a profile at `now`, rendered for listing (a cached listing may hold
    /// tokens that expired since: [`TokenListing::render`] leaves them out).
    pub(super) async fn listing(
        &self,
        store: &dyn Store,
        profile_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Arc<TokenListing>, ServiceError> {
        let load = || async {
            let records = store.active_tokens(profile_id, now).await?;
            let listing = TokenListing::new(records).map_err(|error| {
                tracing::error!(error = %error, "token list could not be rendered");
                ServiceError::Internal
            })?;
            Ok(Arc::new(listing))
        };
        if store.caches_may_answer() {
            self.lists
                .get_or_load(&profile_id, load, |_| profile_id)
                .await
        } else {
            load().await
        }
    }

    /// The settings in force for `account`. Keyed by the account as given: profiles always
    /// carry the EIP-55 form, so no per-request lowering.
    pub(super) async fn partner_settings(
        &self,
        store: &dyn Store,
        account: &str,
    ) -> Result<Arc<PartnerSettings>, ServiceError> {
        let load = || async { Ok(Arc::new(store.partner_settings(account).await?)) };
        self.settings
            .get_or_load(account, load, |_| account.to_owned())
            .await
    }

    /// Forgets what `invalidation` names.
    pub(super) fn forget(&self, invalidation: Invalidation) {
        match invalidation {
            Invalidation::Token(token_id) => {
                self.tokens.invalidate(&token_id);
                self.tunnels.close(&token_id);
            }
            Invalidation::Rotated { token_id, ends_at } => {
                self.tokens.invalidate(&token_id);
                // No rotation ends later than its longest overlap from now, whatever a notice
                // says.
                let longest = TimeDelta::seconds(derive::MAX_OVERLAP_SECONDS);
                let latest = self.clock.now().checked_add_signed(longest);
                let ends_at = latest.map_or(ends_at, |latest| ends_at.min(latest));
                if let Some(end) = self.deadline(ends_at) {
                    self.tunnels.end_at(&token_id, end);
                }
            }
            Invalidation::Profile(profile_id) => self.lists.invalidate(&profile_id),
            Invalidation::All => {
                self.tokens.clear();
                self.lists.clear();
                self.tunnels.close_all();
            }
        }
    }

    /// How many token invalidations there have been: taken before a token is checked, it tells
    /// whether one came between the check and what the check allows.
    pub(super) fn token_epoch(&self) -> u64 {
        self.tokens.generation()
    }

    /// The instant on tokio's clock of `at` on the service's (now, if `at` has passed); `None`
    /// when too far ahead to represent, which is no deadline.
    fn deadline(&self, at: DateTime<Utc>) -> Option<tokio::time::Instant> {
        let left = (at - self.clock.now()).to_std().unwrap_or_default();
        tokio::time::Instant::now().checked_add(left)
    }

    /// Registers a WebSocket tunnel of `token_id`, which expires at `expires_at` (if it does),
    /// whose check began at token epoch `epoch`.
    /// A token invalidation since then may be the token's revocation, which has passed the
    /// registry by already and closed the tunnels it found: the tunnel is closed from the start
    /// (its client opens another, checked again). Registered first and compared second, so that
    /// an invalidation either finds the tunnel or is seen here.
    pub(super) fn open_tunnel(
        &self,
        token_id: &TokenId,
        expires_at: Option<DateTime<Utc>>,
        epoch: u64,
    ) -> TunnelGuard {
        let deadline = expires_at.and_then(|at| self.deadline(at));
        self.tunnels
            .open(token_id, deadline, || self.token_epoch() == epoch)
    }

    /// Forgets every partner's settings (after this instance changed some).
    pub(super) fn forget_settings(&self) {
        self.settings.clear();
    }

    /// Applies other instances' invalidations, delivered by `store`, from a task it returns;
    /// `None` for a store only one instance uses.
    pub(super) fn watch(self: &Arc<Self>, store: &dyn Store) -> Option<JoinHandle<()>> {
        let caches = Arc::clone(self);
        store.watch_invalidations(Arc::new(move |invalidation| {
            crate::telemetry::invalidation_received(match &invalidation {
                Invalidation::Token(_) => "token",
                Invalidation::Rotated { .. } => "rotation",
                Invalidation::Profile(_) => "profile",
                Invalidation::All => "all",
            });
            caches.forget(invalidation);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_rotation_keeps_a_tunnel_open_past_the_longest_overlap() {
        let caches = Caches::new(&ServiceSettings::default(), Clock::system());
        let token = TokenId::new("lmts_rotated");
        let mut tunnel = caches.open_tunnel(&token, None, caches.token_epoch());
        let year_3000 = DateTime::from_timestamp(32_503_680_000, 0).unwrap();
        caches.forget(Invalidation::Rotated {
            token_id: token,
            ends_at: year_3000,
        });
        let longest = Duration::from_secs(604_800);
        let early = tokio::time::timeout(longest - Duration::from_secs(1), tunnel.closed());
        assert!(early.await.is_err(), "closed before the longest overlap");
        let late = tokio::time::timeout(Duration::from_secs(2), tunnel.closed());
        assert!(late.await.is_ok(), "open past the longest overlap");
    }

    #[tokio::test]
    async fn a_tunnel_checked_before_a_revocation_is_closed_from_the_start() {
        let caches = Caches::new(&ServiceSettings::default(), Clock::system());
        let token = TokenId::new("lmts_tunnelled");
        let checked = caches.token_epoch();
        // The revocation's invalidation passes by before the tunnel is registered.
        caches.forget(Invalidation::Token(token.clone()));
        let mut late = caches.open_tunnel(&token, None, checked);
        tokio::time::timeout(Duration::from_secs(1), late.closed())
            .await
            .expect("a tunnel checked before the revocation is closed from the start");

        let mut current = caches.open_tunnel(&token, None, caches.token_epoch());
        let open = tokio::time::timeout(Duration::from_millis(100), current.closed()).await;
        assert!(
            open.is_err(),
            "a tunnel checked after the revocation was closed"
        );
        caches.forget(Invalidation::Token(token));
        tokio::time::timeout(Duration::from_secs(1), current.closed())
            .await
            .expect("a revocation closes the tunnels registered before it");
    }
}
