//! WebSocket tunnels open through the gateway, by the token that opened them: revoking the
//! token closes them, as it refuses the token's next request (SPEC B13), and so does its
//! expiry (SPEC C2). A tunnel is
//! authenticated once, at its handshake; without this it would outlive the revoke.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use lmts_core::TokenId;
use tokio::{sync::watch, time::Instant};

/// The tokens with tunnels open, each with the signal that closes them.
#[derive(Debug, Default)]
pub(super) struct OpenTunnels {
    by_token: Mutex<HashMap<TokenId, watch::Sender<bool>>>,
}

/// A tunnel's hold on the token that opened it.
#[derive(Debug)]
pub struct TunnelGuard {
    closed: watch::Receiver<bool>,
    /// When the token expires (SPEC C2), fixed as the tunnel registers; `None`: no expiry.
    deadline: Option<Instant>,
}

impl TunnelGuard {
    /// A guard whose tunnel is closed from the start.
    fn closed_from_the_start() -> Self {
        Self {
            closed: watch::channel(true).1,
            deadline: None,
        }
    }

    /// Completes once the token is revoked (or the service can no longer tell it is not), or
    /// expires.
    pub async fn closed(&mut self) {
        let expired = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.closed.wait_for(|closed| *closed) => {}
            () = expired => {}
        }
    }
}

impl OpenTunnels {
    /// Registers a tunnel opened by `token`, which expires after `expires_in`, if it does,
    /// unless `still_valid` (asked once the tunnel is registered) says the check of the token
    /// may be older than its revocation: then the tunnel is closed from the start.
    pub(super) fn open(
        &self,
        token: &TokenId,
        expires_in: Option<Duration>,
        still_valid: impl FnOnce() -> bool,
    ) -> TunnelGuard {
        let guard = self.register(token, expires_in);
        if still_valid() {
            guard
        } else {
            TunnelGuard::closed_from_the_start()
        }
    }

    /// Adds a tunnel of `token` to the registry.
    fn register(&self, token: &TokenId, expires_in: Option<Duration>) -> TunnelGuard {
        let deadline = expires_in.map(|left| Instant::now() + left);
        let mut by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let signal = by_token
            .entry(token.clone())
            .or_insert_with(|| watch::channel(false).0);
        TunnelGuard {
            closed: signal.subscribe(),
            deadline,
        }
    }

    /// Closes every tunnel `token` opened.
    pub(super) fn close(&self, token: &TokenId) {
        let removed = self
            .by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
        if let Some(signal) = removed {
            let _ = signal.send(true);
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
            let _ = signal.send(true);
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
