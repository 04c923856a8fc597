//! The domain: the rules of the token service, with no HTTP in it.
//!
//! [`TokenService`] answers capabilities, derive, list and revoke (SPEC A1) for a caller that
//! [`TokenService::identify`] or the [`Verifier`] authenticated, and holds partner settings.
//! Its caches and their invalidation live in one place (`caches`); the HTTP adapter
//! (`crate::http`) only translates requests into these calls and errors into statuses.

pub mod admin;
mod bodies;
mod caches;
mod derive;
mod error;
mod events;
mod failures;
pub mod gateway;
mod listing;
pub mod policy;
mod proxies;
mod rate_limit;
mod rotation;
mod scheme;
mod settings;
mod ttl_cache;
mod tunnels;
mod usage;
mod validity;
mod verifier;

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderMap;
use lmts_core::{
    error_chain::error_chain,
    wire::{
        DeriveApiTokenResponse, PartnerCapabilities, ProfileRef, RevokeApiTokenResponse,
        TokenEventPage, IDEMPOTENCY_KEY,
    },
    Scope, TokenId, TokenSecret,
};
use tokio::task::JoinHandle;

pub use bodies::BodyAllowance;
pub use caches::{CachedToken, SETTINGS_TTL};
pub use error::ServiceError;
pub use gateway::{Gateway, Grant, Passage};
pub use lmts_core::addresses::canonical_address;
pub use proxies::{TrustedProxies, TrustedProxiesError};
pub use rate_limit::RateLimit;
use rate_limit::RateLimiter;
pub use settings::ServiceSettings;
pub use ttl_cache::TtlCache;
pub use tunnels::TunnelGuard;
pub use validity::Validity;
pub use verifier::{Admitted, SignedHead, VerifiedToken, Verifier};

use crate::{
    clock::Clock,
    crypto::Keyring,
    identity::IdentityVerifier,
    store::{
        DeriveKey, Invalidation, NewToken, PartnerProfile, PartnerSettings, SettingsKey, Store,
        StoreError, Successor, TokenCredentials, TokenRecord,
    },
};
use bodies::BodyBudget;
use caches::Caches;
use events::EventLog;
use failures::FailureBudget;
use usage::UsageLog;

/// The token service. Cheap to clone: every clone shares one state.
#[derive(Debug, Clone)]
pub struct TokenService(Verifier);

/// What the service and its [`Verifier`] share.
#[derive(Debug)]
struct Core {
    settings: ServiceSettings,
    store: Arc<dyn Store>,
    keyring: Keyring,
    identity: IdentityVerifier,
    caches: Arc<Caches>,
    bodies: BodyBudget,
    failures: FailureBudget,
    usage: UsageLog,
    /// What bounds the audit events requests write.
    events: EventLog,
    /// Request budgets per identity subject and per token.
    identity_rates: RateLimiter<String>,
    token_rates: RateLimiter<TokenId>,
    clock: Clock,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Core {
    /// Spends one request of `caller`'s budget in `limiter`.
    fn check_rate<K: std::hash::Hash + Eq + Clone>(
        limiter: &RateLimiter<K>,
        caller: &K,
    ) -> Result<(), ServiceError> {
        limiter.check(caller).map_err(ServiceError::rate_limited)
    }

    async fn partner_settings(&self, account: &str) -> Result<Arc<PartnerSettings>, ServiceError> {
        self.caches
            .partner_settings(self.store.as_ref(), account)
            .await
    }

    /// The settings of `account`, refused when token management is off for it.
    async fn managing_settings(&self, account: &str) -> Result<Arc<PartnerSettings>, ServiceError> {
        let settings = self.partner_settings(account).await?;
        if settings.token_management_enabled {
            Ok(settings)
        } else {
            Err(ServiceError::Forbidden(
                "token management is disabled for this partner".into(),
            ))
        }
    }
}

impl TokenService {
    /// Assembles the service.
    pub fn new(
        settings: ServiceSettings,
        store: Arc<dyn Store>,
        keyring: Keyring,
        identity: IdentityVerifier,
        clock: Clock,
    ) -> Self {
        let usage = UsageLog::new(settings.usage_retention());
        Self(Verifier(Arc::new(Core {
            caches: Arc::new(Caches::new(&settings, clock.clone())),
            bodies: BodyBudget::new(settings.body_budget_bytes),
            events: EventLog::new(settings.token_cache_capacity),
            failures: FailureBudget::new(settings.auth_failure_limit),
            identity_rates: RateLimiter::new(settings.rate_limit),
            token_rates: RateLimiter::new(settings.rate_limit),
            settings,
            store,
            keyring,
            identity,
            usage,
            clock,
        })))
    }

    /// The verifier of signed requests (shared with the service, borrowed per request).
    pub fn verifier(&self) -> &Verifier {
        &self.0
    }

    /// What the service and its verifier share.
    fn core(&self) -> &Core {
        &self.0 .0
    }

    /// The limits in force.
    pub fn settings(&self) -> &ServiceSettings {
        &self.core().settings
    }

    /// The persistent state.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.core().store
    }

    /// An allowance to hold a request body of `bytes` in memory, from the process's budget.
    pub fn reserve_body(&self, bytes: usize) -> Result<BodyAllowance, ServiceError> {
        self.core().bodies.reserve(bytes)
    }

    /// The service's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.core().clock.now()
    }

    /// The count of token invalidations so far: read it before checking a request that may
    /// open a tunnel, and give it to [`TokenService::open_tunnel`].
    pub fn tunnel_epoch(&self) -> u64 {
        self.core().caches.token_epoch()
    }

    /// Registers a WebSocket tunnel opened by `token`, checked from [`TokenService::tunnel_epoch`]
    /// `epoch` on: the guard's `closed()` completes when the token is revoked, here or on
    /// another instance, or expires (at once, if an invalidation came since the check began).
    pub fn open_tunnel(&self, token: &VerifiedToken, epoch: u64) -> TunnelGuard {
        let expires_at = token.validity.expires_at;
        self.core()
            .caches
            .open_tunnel(&token.token_id, expires_at, epoch)
    }

    /// The client of a request from `peer` with `headers`: the peer, or the address a trusted
    /// proxy forwarded for (see [`TrustedProxies::client`]).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        peer.map(|peer| self.settings().trusted_proxies.client(peer, headers))
    }

    /// The partner profile of the Privy identity token the request presents (created on first
    /// sight), after the client's failure budget and the caller's rate limit.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<PartnerProfile, ServiceError> {
        let core = self.core();
        core.failures.admit(client)?;
        let now = core.clock.now();
        let verified = match scheme::identity_token(headers) {
            Ok(token) => core
                .identity
                .verify(token, now)
                .await
                .map_err(ServiceError::from),
            Err(refusal) => Err(refusal),
        };
        let identity = verified.map_err(|error| match error {
            ServiceError::Unauthenticated(_) => core.failures.charge(client, error),
            other => other,
        })?;
        Core::check_rate(&core.identity_rates, &identity.subject).inspect_err(|_| {
            crate::telemetry::rate_limited("identity");
        })?;
        Ok(core
            .store
            .upsert_profile(&identity.subject, &identity.account, now)
            .await?)
    }

    /// What `profile` may do (SPEC A2).
    pub async fn capabilities(
        &self,
        profile: &PartnerProfile,
    ) -> Result<PartnerCapabilities, ServiceError> {
        let settings = self.core().partner_settings(&profile.account).await?;
        Ok(PartnerCapabilities {
            partner_profile_id: profile.id,
            token_management_enabled: settings.token_management_enabled,
            allowed_scopes: settings.allowed_scopes.clone(),
        })
    }

    /// Derives a token for `profile` from a derive request's headers and raw body; the answer
    /// holds its secret, shown this once. With an `Idempotency-Key` (SPEC C2), the profile's
    /// derive under that key in the last 24 hours is answered again, secret included, and no
    /// second token is created; the same key with another body is refused.
    pub async fn derive(
        &self,
        profile: &PartnerProfile,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<DeriveApiTokenResponse, ServiceError> {
        let core = self.core();
        let now = core.clock.now();
        let once = derive::idempotency_key(headers, body, now)?;
        if let Some(earlier) = self.earlier_derive(profile, once.as_ref()).await? {
            return Ok(earlier);
        }
        let request = derive::parse_derive_body(body, now)?;
        let settings = core.managing_settings(&profile.account).await?;
        check_allowed(&request.scopes, &settings.allowed_scopes)?;
        let token_id = derive::new_token_id(&core.keyring)?;
        let secret = derive::new_secret(&core.keyring)?;
        let event = events::derived(
            (profile.id, &token_id),
            &request.scopes,
            &request.validity,
            (client, now),
        );
        let token = NewToken {
            sealed: core.keyring.seal(token_id.as_str(), &secret)?,
            event: Some(event),
            token_id,
            profile_id: profile.id,
            label: request.label,
            scopes: request.scopes,
            created_at: now,
            expires_at: request.validity.expires_at,
            allowed_ips: request.validity.allowed_ips.into_vec(),
            once,
        };
        match core
            .store
            .insert_token(&token, core.settings.max_active_tokens)
            .await
        {
            Err(StoreError::LimitReached { limit }) => return Err(limit_reached(limit)),
            // A derive under the same key got there first: its answer is this one's too.
            Err(StoreError::KeyTaken) => {
                return self
                    .earlier_derive(profile, token.once.as_ref())
                    .await?
                    .ok_or_else(|| ServiceError::Conflict(KEY_LAPSED.into()))
            }
            other => other?,
        }
        core.caches.forget(Invalidation::Profile(profile.id));
        tracing::info!(token_id = %token.token_id, profile_id = profile.id, "derived API token");
        let derived = TokenRecord {
            token_id: token.token_id,
            label: token.label,
            scopes: token.scopes,
            created_at: token.created_at,
            expires_at: token.expires_at,
            allowed_ips: token.allowed_ips,
            last_used_at: None,
        };
        Ok(derive_answer(profile, secret, derived))
    }

    /// The answer of `profile`'s derive under `once`'s key, if one was made in the last 24
    /// hours with the same body (with another body: 409).
    async fn earlier_derive(
        &self,
        profile: &PartnerProfile,
        once: Option<&DeriveKey>,
    ) -> Result<Option<DeriveApiTokenResponse>, ServiceError> {
        let core = self.core();
        let Some(once) = once else {
            return Ok(None);
        };
        let stored = core
            .store
            .keyed_derive(profile.id, &once.key, once.lapsed_before);
        let Some(earlier) = stored.await? else {
            return Ok(None);
        };
        if earlier.body_digest != once.body_digest {
            return Err(ServiceError::Conflict(format!(
                "this {IDEMPOTENCY_KEY} came with another body in the last 24 hours; send a new key for a new derive"
            )));
        }
        let token_id = earlier.token_id;
        let token = core.store.token_credentials(token_id.as_str()).await?;
        let token = token.ok_or(ServiceError::Internal)?;
        let secret = core.keyring.open(token_id.as_str(), &token.sealed)?;
        tracing::info!(token_id = %token_id, profile_id = profile.id, "answered a derive again under its idempotency key");
        let derived = TokenRecord {
            token_id,
            label: None,
            scopes: token.scopes,
            created_at: token.created_at,
            expires_at: token.expires_at,
            allowed_ips: token.allowed_ips,
            last_used_at: None,
        };
        Ok(Some(derive_answer(profile, secret, derived)))
    }

    /// The caller's partner's live tokens (neither revoked nor expired), oldest first, as the
    /// JSON array of the answer.
    pub async fn list(&self, caller: &VerifiedToken) -> Result<String, ServiceError> {
        let core = self.core();
        core.managing_settings(&caller.profile.account).await?;
        let now = core.clock.now();
        let listing = core
            .caches
            .listing(core.store.as_ref(), caller.profile.id, now)
            .await?;
        Ok(listing.render(now, |token_id| core.usage.latest(token_id)))
    }

    /// Revokes a live token of the caller's partner. An unknown id, another partner's token
    /// and a revoked one get the same answer (SPEC B2).
    pub async fn revoke(
        &self,
        caller: &VerifiedToken,
        client: Option<IpAddr>,
        token_id: &str,
    ) -> Result<RevokeApiTokenResponse, ServiceError> {
        let core = self.core();
        core.managing_settings(&caller.profile.account).await?;
        let now = core.clock.now();
        let token_id = TokenId::new(token_id);
        let event = events::revoked(
            (caller.profile.id, &token_id),
            &caller.token_id,
            (client, now),
        );
        let revoked = derive::is_token_id_shaped(token_id.as_str())
            && core
                .store
                .revoke_token(caller.profile.id, token_id.as_str(), now, Some(&event))
                .await?;
        if !revoked {
            return Err(ServiceError::NotFound("API token not found".into()));
        }
        tracing::info!(token_id = %token_id, by = %caller.token_id, "revoked API token");
        core.caches.forget(Invalidation::Token(token_id));
        core.caches.forget(Invalidation::Profile(caller.profile.id));
        Ok(RevokeApiTokenResponse {
            message: "API token revoked".into(),
        })
    }

    /// Rotates a live token of the caller's partner (SPEC C2): a successor with its label,
    /// scopes, addresses and expiry, whose secret the answer holds, while the rotated token
    /// keeps working for the overlap the body asks (an hour by default) and then expires.
    /// Unknown, foreign, revoked and expired ids get the 404 of B2; a token rotated already 409
    /// (rotate its successor); a rotation the caller's reach does not cover or scopes the
    /// partner may no longer hold, 403 (`rotation.rs`); a partner at its token limit (the
    /// rotated token not counted), 409.
    pub async fn rotate(
        &self,
        caller: &VerifiedToken,
        client: Option<IpAddr>,
        token_id: &str,
        body: &[u8],
    ) -> Result<DeriveApiTokenResponse, ServiceError> {
        let core = self.core();
        let settings = core.managing_settings(&caller.profile.account).await?;
        let overlap = derive::parse_rotate_body(body)?;
        let not_found = || ServiceError::NotFound("API token not found".into());
        if !derive::is_token_id_shaped(token_id) {
            return Err(not_found());
        }
        let rotated = core.store.token_credentials(token_id).await?;
        let now = core.clock.now();
        let live =
            |token: &TokenCredentials| !token.revoked && validity::is_live(token.expires_at, now);
        let rotated = rotated
            .filter(|token| token.profile.id == caller.profile.id && live(token))
            .ok_or_else(not_found)?;
        rotation::check_rotation(caller, &rotated)?;
        check_allowed(&rotated.scopes, &settings.allowed_scopes)?;
        let successor_id = derive::new_token_id(&core.keyring)?;
        let secret = derive::new_secret(&core.keyring)?;
        let overlap_end = now
            .checked_add_signed(overlap)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let ends = rotated
            .expires_at
            .map_or(overlap_end, |at| at.min(overlap_end));
        let event = events::rotated(
            (caller.profile.id, &rotated.token_id),
            &successor_id,
            ends,
            (client, now),
        );
        let successor = Successor {
            sealed: core.keyring.seal(successor_id.as_str(), &secret)?,
            token_id: successor_id,
            created_at: now,
            event: Some(event),
            max_active: core.settings.max_active_tokens,
        };
        let stored = core
            .store
            .rotate_token(caller.profile.id, token_id, &successor, overlap_end);
        let record = match stored.await {
            Err(StoreError::LimitReached { limit }) => return Err(limit_reached(limit)),
            other => other?.ok_or_else(not_found)?,
        };
        let rotated_id = TokenId::new(token_id);
        tracing::info!(token_id = %rotated_id, successor = %record.token_id, by = %caller.token_id, "rotated API token");
        core.caches.forget(Invalidation::Rotated {
            token_id: rotated_id,
            ends_at: ends,
        });
        core.caches.forget(Invalidation::Profile(caller.profile.id));
        Ok(derive_answer(&caller.profile, secret, record))
    }

    /// The caller's partner's audit events after the query's cursor (SPEC C2), oldest first.
    pub async fn events(
        &self,
        caller: &VerifiedToken,
        query: Option<&str>,
    ) -> Result<TokenEventPage, ServiceError> {
        let core = self.core();
        core.managing_settings(&caller.profile.account).await?;
        let (after, limit) = events::page_bounds(query)?;
        let stored = core.store.events(caller.profile.id, after, limit).await?;
        Ok(events::page(stored, after))
    }

    /// The calling token as the list shows it (SPEC C2's introspection), as its JSON object.
    pub async fn current(&self, caller: &VerifiedToken) -> Result<String, ServiceError> {
        let core = self.core();
        core.managing_settings(&caller.profile.account).await?;
        let now = core.clock.now();
        let listing = core
            .caches
            .listing(core.store.as_ref(), caller.profile.id, now)
            .await?;
        let latest_use = |token_id: &TokenId| core.usage.latest(token_id);
        // Listed unless it was revoked or expired since it was verified, a moment ago.
        listing
            .render_one(&caller.token_id, now, latest_use)
            .ok_or_else(|| ServiceError::unauthenticated("API token expired or revoked"))
    }

    /// The settings in force for `account`, cached for [`SETTINGS_TTL`].
    pub async fn partner_settings(
        &self,
        account: &str,
    ) -> Result<Arc<PartnerSettings>, ServiceError> {
        self.core().partner_settings(account).await
    }

    /// Stores settings and applies them to this instance at once (others within
    /// [`SETTINGS_TTL`]).
    pub async fn set_partner_settings(
        &self,
        key: &SettingsKey,
        settings: &PartnerSettings,
    ) -> Result<(), ServiceError> {
        let core = self.core();
        core.store
            .set_settings(key, settings, core.clock.now())
            .await?;
        core.caches.forget_settings();
        Ok(())
    }

    /// Answers when the database does.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        Ok(self.core().store.ping().await?)
    }

    /// Writes pending `lastUsedAt` values and `token.expired` events, and forgets expired
    /// replay records, lapsed idempotency keys and events past their retention.
    pub async fn run_maintenance(&self) {
        let core = self.core();
        let uses = core.usage.take();
        if !uses.is_empty() {
            if let Err(error) = core.store.record_usage(&uses).await {
                tracing::warn!(error = %error_chain(&error), "could not write lastUsedAt; will retry");
                core.usage.restore(uses);
            }
        }
        let pending = core.usage.forget_old(core.clock.now());
        crate::telemetry::usage_pending(pending);
        core.store.report_pools();
        crate::telemetry::upkeep();
        core.identity_rates.forget_idle();
        core.token_rates.forget_idle();
        core.failures.forget_idle();
        core.events.forget_idle();
        core.caches.tunnels.forget_ended();
        let now = core.clock.now();
        if let Err(error) = core.store.prune_signatures(now).await {
            tracing::warn!(error = %error_chain(&error), "could not prune replay records");
        }
        let lapsed = now - derive::IDEMPOTENCY_WINDOW;
        if let Err(error) = core.store.prune_derive_keys(lapsed).await {
            tracing::warn!(error = %error_chain(&error), "could not prune idempotency keys");
        }
        if let Err(error) = core.store.note_expiries(now).await {
            tracing::warn!(error = %error_chain(&error), "could not write token.expired events");
        }
        let retention =
            TimeDelta::from_std(core.settings.event_retention).unwrap_or(TimeDelta::MAX);
        let outlived = now
            .checked_sub_signed(retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if let Err(error) = core.store.prune_events(outlived).await {
            tracing::warn!(error = %error_chain(&error), "could not prune audit events");
        }
    }

    /// Starts the background work: maintenance every flush interval, and other instances'
    /// invalidations applied as they arrive. Stopped by [`Background::stop`].
    pub fn start_background(&self) -> Background {
        let service = self.clone();
        let maintenance = tokio::spawn(async move {
            let mut tick = tokio::time::interval(service.settings().usage_flush_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                service.run_maintenance().await;
            }
        });
        let invalidations = self.core().caches.watch(self.core().store.as_ref());
        Background {
            tasks: [Some(maintenance), invalidations]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

/// The refusal of a derive or rotation that would pass the partner's token limit.
fn limit_reached(limit: u32) -> ServiceError {
    ServiceError::Conflict(format!(
        "this partner already holds the maximum of {limit} active tokens; revoke one first"
    ))
}

/// Why a derive under a key another derive took is refused, when that derive's record is gone.
const KEY_LAPSED: &str =
    "a derive under this idempotency key ended meanwhile; send the request again";

/// The answer of a derive (or rotation) of `token` for `profile`.
fn derive_answer(
    profile: &PartnerProfile,
    secret: TokenSecret,
    token: TokenRecord,
) -> DeriveApiTokenResponse {
    DeriveApiTokenResponse {
        api_key: token.token_id.clone(),
        secret,
        token_id: token.token_id,
        created_at: token.created_at,
        scopes: token.scopes,
        expires_at: token.expires_at,
        allowed_ips: token.allowed_ips,
        profile: ProfileRef {
            id: profile.id,
            account: profile.account.clone(),
        },
    }
}

/// Refuses scopes outside the partner's allowed ones (SPEC A3, B2), naming them.
fn check_allowed(requested: &[Scope], allowed: &[Scope]) -> Result<(), ServiceError> {
    let refused: Vec<&str> = requested
        .iter()
        .filter(|scope| !allowed.contains(scope))
        .map(Scope::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.iter().map(Scope::as_str).collect();
    Err(ServiceError::Forbidden(format!(
        "scopes not allowed for this partner: {}; allowed scopes: {}",
        refused.join(", "),
        allowed.join(", ")
    )))
}

/// The service's background tasks.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Stops every task.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
