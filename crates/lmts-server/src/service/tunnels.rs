//! WebSocket tunnels open through the gateway, by the token that opened them: revoking the
//! token closes them, as it refuses the token's next request (SPEC B13), and so does its
//! expiry (SPEC C2). A tunnel is authenticated once, at its handshake; without this it would
//! outlive the revoke. A rotation moves the rotated token's expiry to the end of its overlap
//! rather than ending it, so a change to a token is looked at again in the store
//! ([`super::caches::Caches`]): its tunnels close, or live on to the expiry it has now.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use lmts_core::TokenId;
use tokio::{sync::watch, time::Instant};

/// Whether a token's tunnels may stay open, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// Open until this instant (`None`: the token does not expire).
    Open(Option<Instant>),
    /// Closed.
    Closed,
}

impl Standing {
    /// The standing of a live token that expires at `expires_at` (if it does), at `now`.
    pub(super) fn of(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match expires_at {
            None => Standing::Open(None),
            Some(at) => match (at - now).to_std() {
                Ok(left) if !left.is_zero() => Standing::Open(Some(Instant::now() + left)),
                _ => Standing::Closed,
            },
        }
    }
}

/// The tokens with tunnels open, each with the standing its tunnels follow.
#[derive(Debug, Default)]
pub(super) struct OpenTunnels {
    by_token: Mutex<HashMap<TokenId, watch::Sender<Standing>>>,
}

/// A tunnel's hold on the token that opened it.
#[derive(Debug)]
pub struct TunnelGuard {
    standing: watch::Receiver<Standing>,
}

impl TunnelGuard {
    /// Completes once the token is revoked (or the service can no longer tell it is not), or
    /// expires.
    pub async fn closed(&mut self) {
        loop {
            let until = match *self.standing.borrow_and_update() {
                Standing::Closed => return,
                Standing::Open(until) => until,
            };
            let expired = async move {
                match until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.standing.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = expired => return,
            }
        }
    }
}

impl OpenTunnels {
    /// Registers a tunnel opened by `token`, whose tunnels stand as `standing` unless others
    /// are open already (they share one standing).
    pub(super) fn open(&self, token: &TokenId, standing: Standing) -> TunnelGuard {
        let mut by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let signal = by_token
            .entry(token.clone())
            .or_insert_with(|| watch::channel(standing).0);
        TunnelGuard {
            standing: signal.subscribe(),
        }
    }

    /// Whether `token` has tunnels open.
    pub(super) fn has(&self, token: &TokenId) -> bool {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(token)
    }

    /// Sets the standing of `token`'s tunnels: closed, or open until another time.
    pub(super) fn settle(&self, token: &TokenId, standing: Standing) {
        let mut by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        match standing {
            Standing::Closed => {
                if let Some(signal) = by_token.remove(token) {
                    let _ = signal.send(Standing::Closed);
                }
            }
            Standing::Open(_) => {
                if let Some(signal) = by_token.get(token) {
                    signal.send_replace(standing);
                }
            }
        }
    }

    /// Closes every tunnel (an invalidation of everything: a listener was lost).
    pub(super) fn close_all(&self) {
        let all: Vec<_> = self
            .by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (_, signal) in all {
            let _ = signal.send(Standing::Closed);
        }
    }

    /// Forgets the tokens whose tunnels have all ended.
    pub(super) fn forget_ended(&self) {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, signal| signal.receiver_count() > 0);
    }
}
