//! The one check of a signed request (SPEC A4, B5 to B7, B13), whichever door it came through:
//! the token endpoints' middleware calls it, and so will the gateway. It takes the parts of
//! the request as received and answers the token that signed it, or why not.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderMap, Method};
use lmts_core::signing::{check_signed_at, CanonicalMessage, VerifyError};

use crate::telemetry::{self, Outcome};

use super::{
    caches::CachedToken,
    derive::is_token_id_shaped,
    events::Failure,
    scheme::{signed_headers, SignedHeaderValues},
    Core, ServiceError,
};

/// The token that signed a request: its cached verification state (id, profile, scopes),
/// shared rather than copied per request.
#[derive(Debug, Clone)]
pub struct VerifiedToken(Arc<CachedToken>);

impl std::ops::Deref for VerifiedToken {
    type Target = CachedToken;

    fn deref(&self) -> &CachedToken {
        &self.0
    }
}

/// The head of a signed request, exactly as received: everything but the body.
#[derive(Debug, Clone, Copy)]
pub struct SignedHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target: path and query as sent on the wire, never decoded.
    pub target: &'a str,
    /// The request's headers, of which the three `lmts-*` ones are read.
    pub headers: &'a HeaderMap,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The time of arrival.
    pub now: DateTime<Utc>,
}

/// Verifies signed requests in two steps, [`Verifier::admit`] on the head and
/// [`Admitted::verify`] on the body: the client's failure budget, window, live token,
/// signature (constant time), the token's expiry and allowed addresses, rate limit and the
/// replay record. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier(pub(super) Arc<Core>);

/// The one answer for an id that names no live token and for a signature that does not match,
/// so that no one learns which ids are live.
const NOT_AUTHENTIC: &str =
    "API token unknown or revoked, or lmts-signature does not match the request";

impl Verifier {
    /// The first half, before a byte of body is read: the window and a live token (the
    /// client's failure budget before any lookup in the store). A request that cannot be valid
    /// is refused here, so its body need not be read at all.
    pub async fn admit<'a>(&self, head: SignedHead<'a>) -> Result<Admitted<'_, 'a>, ServiceError> {
        let values = signed_headers(head.headers)
            .map_err(|error| self.refused(&head, (Outcome::Malformed, error)))?;
        match self.find_token(&head, &values).await {
            Ok(token) => Ok(Admitted {
                verifier: self,
                head,
                values,
                token,
            }),
            Err(error) => Err(self.refused(&head, error)),
        }
    }

    /// The live token the headers name, inside the window. A token already cached costs
    /// nothing to find, so only a lookup in the store asks the client's failure budget first:
    /// a partner's bots keep working from an address someone else spent the budget of.
    async fn find_token(
        &self,
        head: &SignedHead<'_>,
        values: &SignedHeaderValues<'_>,
    ) -> Result<Arc<CachedToken>, (Outcome, ServiceError)> {
        let core = &self.0;
        if let Err(error) = check_signed_at(values.timestamp, head.now, core.settings.window) {
            if matches!(error, VerifyError::OutsideWindow { .. }) {
                self.note_stale(head, values).await;
            }
            return Err(refusal(error));
        }
        let not_authentic = || {
            (
                Outcome::NotAuthentic,
                ServiceError::unauthenticated(NOT_AUTHENTIC),
            )
        };
        let found = self.look_up(head, values.api_key).await;
        if matches!(found, Err((Outcome::RateLimited, _))) {
            telemetry::rate_limited("auth_failures");
        }
        found?.ok_or_else(not_authentic)
    }

    /// The live token `api_key` names, if any: from the cache, else from the store once the
    /// client's failure budget allows a lookup (refused otherwise).
    async fn look_up(
        &self,
        head: &SignedHead<'_>,
        api_key: &str,
    ) -> Result<Option<Arc<CachedToken>>, (Outcome, ServiceError)> {
        let core = &self.0;
        if !is_token_id_shaped(api_key) {
            return Ok(None);
        }
        let cached = core.caches.cached_token(core.store.as_ref(), api_key);
        telemetry::token_lookup(cached.is_some());
        if cached.is_some() {
            return Ok(cached);
        }
        core.failures
            .admit(head.client)
            .map_err(|refused| (Outcome::RateLimited, refused))?;
        core.caches
            .token(core.store.as_ref(), &core.keyring, api_key)
            .await
            .map_err(|error| (Outcome::Unavailable, error))
    }

    /// Writes `auth.failed` for a stale request whose token is live (SPEC C2): found in the
    /// cache, or in the store while the client's failure budget allows a lookup.
    async fn note_stale(&self, head: &SignedHead<'_>, values: &SignedHeaderValues<'_>) {
        let core = &self.0;
        let token = self.look_up(head, values.api_key).await.ok().flatten();
        if let Some(token) = token.filter(|token| token.validity.is_live_at(head.now)) {
            let seen = (head.client, head.now);
            core.events
                .failed(&core.store, &token, Failure::Window, seen);
        }
    }

    /// Counts and logs a refusal, and charges an authentication failure to the client's budget.
    fn refused(
        &self,
        head: &SignedHead<'_>,
        (outcome, error): (Outcome, ServiceError),
    ) -> ServiceError {
        telemetry::signed(outcome);
        tracing::debug!(client = ?head.client, target = head.target, %error, "signed request refused");
        match error {
            ServiceError::Unauthenticated(_) => self.0.failures.charge(head.client, error),
            other => other,
        }
    }
}

/// A signed request whose head passed [`Verifier::admit`]: its body may now be read.
#[derive(Debug)]
pub struct Admitted<'v, 'a> {
    verifier: &'v Verifier,
    head: SignedHead<'a>,
    values: SignedHeaderValues<'a>,
    token: Arc<CachedToken>,
}

impl Admitted<'_, '_> {
    /// The second half: the signature over the head and `body`, the token's expiry and
    /// allowed addresses ([`Validity`](super::validity::Validity)), its rate limit and, for a
    /// state-changing request, the replay record.
    pub async fn verify(self, body: &[u8]) -> Result<VerifiedToken, ServiceError> {
        let verifier = self.verifier;
        match self.check(body).await {
            Ok(token) => {
                telemetry::signed(Outcome::Accepted);
                Ok(token)
            }
            Err(refused) => Err(verifier.refused(&self.head, refused)),
        }
    }

    async fn check(&self, body: &[u8]) -> Result<VerifiedToken, (Outcome, ServiceError)> {
        let (core, head, token) = (&self.verifier.0, &self.head, &self.token);
        let message = CanonicalMessage::new(
            self.values.timestamp,
            head.method.as_str(),
            head.target,
            body,
        );
        let window = core.settings.window;
        let seen = (head.client, head.now);
        let verified = match token
            .signer
            .verify(&message, self.values.signature, head.now, window)
        {
            Ok(verified) => verified,
            Err(error) => {
                if token.validity.is_live_at(head.now) {
                    core.events
                        .failed(&core.store, token, Failure::Signature, seen);
                }
                return Err(refusal(error));
            }
        };
        // Only after the signature: nobody without the secret learns a token's expiry or blocks.
        if let Err(refused) = token.validity.check(head.now, head.client) {
            if matches!(refused, ServiceError::Forbidden(_)) {
                core.events
                    .failed(&core.store, token, Failure::Address, seen);
                return Err((Outcome::Address, refused));
            }
            return Err((Outcome::Expired, refused));
        }
        Core::check_rate(&core.token_rates, &token.token_id).map_err(|refused| {
            telemetry::rate_limited("token");
            (Outcome::RateLimited, refused)
        })?;
        if is_state_changing(head.method) {
            // A copy whose head arrived inside the window may finish its body up to the body
            // timeout later: the record outlives every such copy.
            let body_timeout =
                TimeDelta::from_std(core.settings.body_timeout).unwrap_or(TimeDelta::MAX);
            let expires_at = verified
                .signed_at()
                .checked_add_signed(window.checked_add(&body_timeout).unwrap_or(TimeDelta::MAX))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let fresh = core
                .store
                .record_signature(
                    token.token_id.as_str(),
                    verified.signature.as_bytes(),
                    expires_at,
                )
                .await
                .map_err(|error| (Outcome::Unavailable, error.into()))?;
            if !fresh {
                return Err((
                    Outcome::Replayed,
                    ServiceError::unauthenticated(
                        "replayed request: this signature was already accepted; sign each request afresh",
                    ),
                ));
            }
        }
        core.usage.record(&token.token_id, head.now);
        core.events.used_from(&core.store, token, seen);
        Ok(VerifiedToken(Arc::clone(token)))
    }
}

/// Whether a request changes state, so that its signature is remembered (SPEC B6).
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The refusal of a signature check, in words a client can act on, and its outcome.
fn refusal(error: VerifyError) -> (Outcome, ServiceError) {
    let outcome = match error {
        VerifyError::MalformedTimestamp | VerifyError::MalformedSignature => Outcome::Malformed,
        VerifyError::OutsideWindow { .. } => Outcome::Window,
        _ => Outcome::NotAuthentic,
    };
    (outcome, refusal_text(error))
}

/// [`refusal`]'s words.
fn refusal_text(error: VerifyError) -> ServiceError {
    let message = match error {
        VerifyError::MalformedTimestamp => {
            "lmts-timestamp is not an RFC 3339 date-time (e.g. 2026-03-23T12:34:56.789Z)".to_owned()
        }
        VerifyError::OutsideWindow { skew_ms, window_ms } => format!(
            "lmts-timestamp is {:.1} s {} server time, outside the window of {} s; check the client's clock",
            skew_ms.unsigned_abs() as f64 / 1000.0,
            if skew_ms > 0 { "ahead of" } else { "behind" },
            window_ms / 1000
        ),
        VerifyError::MalformedSignature => {
            "lmts-signature is not standard base64 (with padding) of an HMAC-SHA256".to_owned()
        }
        _ => NOT_AUTHENTIC.to_owned(),
    };
    ServiceError::Unauthenticated(message)
}
