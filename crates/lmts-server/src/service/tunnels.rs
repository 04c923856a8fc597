//! WebSocket tunnels open through the gateway, by the token that opened them: revoking the
//! token closes them, as it refuses the token's next request (SPEC B13), and so does its
//! expiry (SPEC C2). Rotating it moves their end to the end of its overlap, when the rotated
//! token stops working too: a client moves to the successor without its tunnels dropping at
//! the rotation. A tunnel is authenticated once, at its handshake; without this it would
//! outlive the revoke.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use lmts_core::TokenId;
use tokio::{sync::watch, time::Instant};

/// What a token's tunnels are told: how long they may stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Open, until this time if the token was rotated (else until each tunnel's own deadline).
    Open(Option<Instant>),
    /// Closed: the token was revoked (or the service can no longer tell it was not).
    Closed,
}

/// The tokens with tunnels open, each with the signal that ends them.
#[derive(Debug, Default)]
pub(super) struct OpenTunnels {
    by_token: Mutex<HashMap<TokenId, watch::Sender<Signal>>>,
}

/// A tunnel's hold on the token that opened it.
#[derive(Debug)]
pub struct TunnelGuard {
    signal: watch::Receiver<Signal>,
    /// When the token expires (SPEC C2), fixed as the tunnel registers; `None`: no expiry.
    deadline: Option<Instant>,
}

impl TunnelGuard {
    /// A guard whose tunnel is closed from the start.
    fn closed_from_the_start() -> Self {
        Self {
            signal: watch::channel(Signal::Closed).1,
            deadline: None,
        }
    }

    /// Completes once the token is revoked (or the service can no longer tell it is not),
    /// expires, or reaches the end of the overlap of its rotation.
    pub async fn closed(&mut self) {
        loop {
            let end = match *self.signal.borrow_and_update() {
                Signal::Closed => return,
                Signal::Open(rotated) => earliest(self.deadline, rotated),
            };
            let ended = async {
                match end {
                    Some(end) => tokio::time::sleep_until(end).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.signal.changed() => {
                    if changed.is_err() {
                        // The registry forgot the token: only a revoke or a loss does that.
                        return;
                    }
                }
                () = ended => return,
            }
        }
    }
}

/// The earlier of two ends, either of which may be absent.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl OpenTunnels {
    /// Registers a tunnel opened by `token`, which expires at `deadline`, if it does, unless
    /// `still_valid` (asked once the tunnel is registered) says the check of the token may be
    /// older than its revocation: then the tunnel is closed from the start.
    pub(super) fn open(
        &self,
        token: &TokenId,
        deadline: Option<Instant>,
        still_valid: impl FnOnce() -> bool,
    ) -> TunnelGuard {
        let guard = self.register(token, deadline);
        if still_valid() {
            guard
        } else {
            TunnelGuard::closed_from_the_start()
        }
    }

    /// Adds a tunnel of `token` to the registry.
    fn register(&self, token: &TokenId, deadline: Option<Instant>) -> TunnelGuard {
        let mut by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let signal = by_token
            .entry(token.clone())
            .or_insert_with(|| watch::channel(Signal::Open(None)).0);
        TunnelGuard {
            signal: signal.subscribe(),
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
            let _ = signal.send(Signal::Closed);
        }
    }

    /// Ends every tunnel `token` opened at `end` at the latest (its rotation's overlap ends
    /// then): an end only ever moves earlier, and a revoke still closes them at once.
    pub(super) fn end_at(&self, token: &TokenId, end: Instant) {
        let by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = by_token.get(token) {
            signal.send_if_modified(|signal| match *signal {
                Signal::Open(until) if until.is_none_or(|until| end < until) => {
                    *signal = Signal::Open(Some(end));
                    true
                }
                _ => false,
            });
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
            let _ = signal.send(Signal::Closed);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether `guard`'s tunnel is still open after `wait`.
    async fn open_after(guard: &mut TunnelGuard, wait: Duration) -> bool {
        tokio::time::timeout(wait, guard.closed()).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotation_ends_the_tunnels_with_its_overlap_and_a_revoke_still_closes_them() {
        let tunnels = OpenTunnels::default();
        let token = TokenId::new("lmts_rotated");
        let mut first = tunnels.open(&token, None, || true);
        let mut second = tunnels.open(
            &token,
            Some(Instant::now() + Duration::from_secs(5)),
            || true,
        );

        tunnels.end_at(&token, Instant::now() + Duration::from_secs(60));
        // A later end changes nothing: ends only move earlier.
        tunnels.end_at(&token, Instant::now() + Duration::from_secs(600));
        assert!(open_after(&mut first, Duration::from_secs(59)).await);
        assert!(
            !open_after(&mut first, Duration::from_secs(2)).await,
            "open past the overlap"
        );
        // The other tunnel's own expiry came first, and still counts.
        assert!(!open_after(&mut second, Duration::ZERO).await);

        let revoked = TokenId::new("lmts_rotated_then_revoked");
        let mut third = tunnels.open(&revoked, None, || true);
        tunnels.end_at(&revoked, Instant::now() + Duration::from_secs(60));
        assert!(open_after(&mut third, Duration::from_secs(30)).await);
        tunnels.close(&revoked);
        assert!(
            !open_after(&mut third, Duration::ZERO).await,
            "a revoke during the overlap"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotation_leaves_other_tokens_tunnels_alone() {
        let tunnels = OpenTunnels::default();
        let mut other = tunnels.open(&TokenId::new("lmts_other"), None, || true);
        tunnels.end_at(&TokenId::new("lmts_rotated"), Instant::now());
        assert!(open_after(&mut other, Duration::from_secs(3600)).await);
    }
}
