//! What every request handler shares.

use std::{ops::Deref, sync::Arc, time::Duration};

use chrono::TimeDelta;
use lmts_core::signing::DEFAULT_WINDOW;

use crate::http::error::ApiError;

use crate::{
    auth::identity::IdentityVerifier,
    clock::Clock,
    crypto::Keyring,
    listing::TokenListing,
    rate_limit::{RateLimit, RateLimiter},
    store::{Invalidation, PartnerSettings, SettingsKey, Store, StoreError},
    token_cache::{TokenCache, TtlCache},
    usage::UsageLog,
};

/// How long partner settings are cached: a change made by `lmts partners` (another process)
/// applies within this time.
pub const SETTINGS_TTL: Duration = Duration::from_millis(500);

/// The service's tunable limits.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How far a request's timestamp may be from server time, either way (SPEC B5).
    pub window: TimeDelta,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The most active tokens one partner may hold (SPEC B2, 409); `None` for no limit.
    pub max_active_tokens: Option<u32>,
    /// How often pending `lastUsedAt` values are written (the most they may trail).
    pub usage_flush_interval: Duration,
    /// How long verification state stays cached before it is re-read.
    pub token_cache_ttl: Duration,
    /// The most tokens cached at once.
    pub token_cache_capacity: usize,
    /// Requests allowed per identity and per token; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            max_body_bytes: 64 * 1024,
            max_active_tokens: Some(100),
            usage_flush_interval: Duration::from_secs(1),
            token_cache_ttl: Duration::from_secs(5),
            token_cache_capacity: 1_000_000,
            rate_limit: Some(RateLimit::default()),
        }
    }
}

/// The shared state: cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// Limits.
    pub settings: ServiceSettings,
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Master keys for secrets at rest.
    pub keyring: Keyring,
    /// Identity token verification.
    pub identity: IdentityVerifier,
    /// Verification state of recently used tokens.
    pub tokens: Arc<TokenCache>,
    /// Partner settings by account as profiles carry it (EIP-55), for [`SETTINGS_TTL`].
    pub settings_cache: TtlCache<String, Arc<PartnerSettings>>,
    /// Live tokens by profile id, dropped on derive and revoke (here or, on PostgreSQL, on any
    /// instance).
    pub token_lists: Arc<TtlCache<i64, Arc<TokenListing>>>,
    /// Uses not yet written.
    pub usage: UsageLog,
    /// Per-caller request budgets.
    pub rate_limiter: RateLimiter,
    /// The time.
    pub clock: Clock,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        settings: ServiceSettings,
        store: Arc<dyn Store>,
        keyring: Keyring,
        identity: IdentityVerifier,
        clock: Clock,
    ) -> Self {
        let tokens = Arc::new(TokenCache::new(
            settings.token_cache_ttl,
            settings.token_cache_capacity,
        ));
        let rate_limiter = RateLimiter::new(settings.rate_limit);
        let settings_cache = TtlCache::new(SETTINGS_TTL, settings.token_cache_capacity);
        let token_lists = Arc::new(TtlCache::new(
            settings.token_cache_ttl,
            settings.token_cache_capacity,
        ));
        let usage = UsageLog::new(
            settings.token_cache_ttl + settings.usage_flush_interval + Duration::from_secs(1),
        );
        Self(Arc::new(Shared {
            settings,
            store,
            keyring,
            identity,
            tokens,
            settings_cache,
            token_lists,
            usage,
            rate_limiter,
            clock,
        }))
    }

    /// The settings in force for `account`, cached for [`SETTINGS_TTL`]. Keyed by the
    /// account as given: profiles always carry the EIP-55 form, so no per-request lowering.
    pub async fn partner_settings(
        &self,
        account: &str,
    ) -> Result<Arc<PartnerSettings>, StoreError> {
        if let Some(settings) = self.settings_cache.get(account) {
            return Ok(settings);
        }
        let generation = self.settings_cache.generation();
        let settings = Arc::new(self.store.partner_settings(account).await?);
        self.settings_cache
            .insert(generation, account.to_owned(), settings.clone());
        Ok(settings)
    }

    /// Stores settings and applies them to this instance at once (others within [`SETTINGS_TTL`]).
    pub async fn set_partner_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
    ) -> Result<(), StoreError> {
        self.store
            .set_settings(key, settings, self.clock.now())
            .await?;
        self.settings_cache.clear();
        Ok(())
    }

    /// The live tokens of a profile, rendered for listing and cached until a derive or
    /// revoke changes them.
    pub async fn token_listing(&self, profile_id: i64) -> Result<Arc<TokenListing>, ApiError> {
        if let Some(listing) = self.token_lists.get(&profile_id) {
            return Ok(listing);
        }
        let generation = self.token_lists.generation();
        let records = self.store.active_tokens(profile_id).await?;
        let listing = Arc::new(TokenListing::new(records).map_err(|error| {
            tracing::error!(error = %error, "token list could not be rendered");
            ApiError::Internal
        })?);
        self.token_lists
            .insert(generation, profile_id, listing.clone());
        Ok(listing)
    }

    /// Writes pending `lastUsedAt` values and forgets expired replay records.
    pub async fn run_maintenance(&self) {
        let uses = self.usage.take();
        if !uses.is_empty() {
            if let Err(error) = self.store.record_usage(&uses).await {
                tracing::warn!(error = %crate::http::error::error_chain(&error), "could not write lastUsedAt; will retry");
                self.usage.restore(uses);
            }
        }
        self.usage.forget_old(self.clock.now());
        if let Err(error) = self.store.prune_signatures(self.clock.now()).await {
            tracing::warn!(error = %crate::http::error::error_chain(&error), "could not prune replay records");
        }
    }

    /// Forgets what `invalidation` names: after this instance's own derive or revoke.
    pub fn invalidate(&self, invalidation: Invalidation) {
        forget(&self.tokens, &self.token_lists, invalidation);
    }

    /// Applies invalidations from other instances to the caches, when the store has them.
    pub fn spawn_invalidation_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        // The caches, not the state: the store keeps the sink, and the state keeps the store.
        let tokens = self.tokens.clone();
        let lists = self.token_lists.clone();
        self.store
            .watch_invalidations(Arc::new(move |invalidation| {
                forget(&tokens, &lists, invalidation);
            }))
    }

    /// Runs [`AppState::run_maintenance`] every flush interval, forever.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.settings.usage_flush_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.run_maintenance().await;
            }
        })
    }
}

/// The one place that knows which cache an [`Invalidation`] touches, for this instance's own
/// changes and for other instances' notices alike.
fn forget(
    tokens: &TokenCache,
    lists: &TtlCache<i64, Arc<TokenListing>>,
    invalidation: Invalidation,
) {
    match invalidation {
        Invalidation::Token(token_id) => tokens.invalidate(&token_id),
        Invalidation::Profile(profile_id) => lists.invalidate(&profile_id),
        Invalidation::All => {
            tokens.clear();
            lists.clear();
        }
    }
}

impl AppState {
    /// Spends one request of `caller`'s budget, or answers 429.
    pub fn check_rate(&self, caller: &str) -> Result<(), ApiError> {
        self.rate_limiter
            .check(caller)
            .map_err(|wait| ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
