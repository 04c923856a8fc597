//! The service's tunable limits.

use std::time::Duration;

use chrono::TimeDelta;
use lmts_core::signing::DEFAULT_WINDOW;

use super::{RateLimit, TrustedProxies};

/// The service's tunable limits.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How far a request's timestamp may be from server time, either way (SPEC B5).
    pub window: TimeDelta,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// The most request-body bytes held in memory at once, by all requests together.
    pub body_budget_bytes: usize,
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
    /// Authentication failures allowed per client address before it gets 429; `None` for no
    /// limit.
    pub auth_failure_limit: Option<RateLimit>,
    /// The load balancers whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: TrustedProxies,
    /// How long audit events are kept (SPEC C2), then pruned in the background.
    pub event_retention: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            max_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
            body_budget_bytes: 64 * 1024 * 1024,
            max_active_tokens: Some(100),
            usage_flush_interval: Duration::from_secs(1),
            token_cache_ttl: Duration::from_secs(5),
            token_cache_capacity: 1_000_000,
            rate_limit: Some(RateLimit::default()),
            auth_failure_limit: Some(RateLimit {
                per_minute: 60,
                burst: 30,
            }),
            trusted_proxies: TrustedProxies::default(),
            event_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

impl ServiceSettings {
    /// How long recent uses are remembered in memory: as long as a cached token list and a
    /// flush take together, and a second more.
    pub(super) fn usage_retention(&self) -> Duration {
        self.token_cache_ttl + self.usage_flush_interval + Duration::from_secs(1)
    }
}
