//! When and from where a token may be used (SPEC C2): its expiry and its allowed address
//! blocks. The [`Verifier`](super::Verifier) asks it for every signed request, whichever door
//! the request came through.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use lmts_core::addresses;

use super::ServiceError;

/// A token's expiry and allowed addresses; the default allows any time and any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validity {
    /// When the token stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from; empty: any.
    pub allowed_ips: Box<[IpNet]>,
}

impl Validity {
    /// Whether the token still works at `now`.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        is_live(self.expires_at, now)
    }

    /// Refuses a request at `now` from `client` that the token does not allow: 401 once it
    /// expired, 403 from outside its blocks (also when the client's address is unknown).
    pub fn check(&self, now: DateTime<Utc>, client: Option<IpAddr>) -> Result<(), ServiceError> {
        if !self.is_live_at(now) {
            return Err(ServiceError::unauthenticated("API token expired"));
        }
        if self.allowed_ips.is_empty() {
            return Ok(());
        }
        match client {
            Some(client) if addresses::allows(&self.allowed_ips, client) => Ok(()),
            Some(client) => Err(ServiceError::Forbidden(format!(
                "requests from {} are not allowed for this API token (see its allowedIps)",
                addresses::canonical_address(client)
            ))),
            None => Err(ServiceError::Forbidden(
                "this API token is held to allowedIps, and the client's address is unknown".into(),
            )),
        }
    }
}

/// Whether a token expiring at `expires_at` still works at `now`: up to, not including, that
/// instant; always, without an expiry.
pub(super) fn is_live(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_none_or(|expires_at| now < expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        lmts_core::signing::parse_timestamp(text).unwrap()
    }

    #[test]
    fn a_token_expires_at_the_instant() {
        let validity = Validity {
            expires_at: Some(at("2027-01-01T00:00:00.000Z")),
            ..Validity::default()
        };
        assert!(validity.check(at("2026-12-31T23:59:59.999Z"), None).is_ok());
        for now in ["2027-01-01T00:00:00.000Z", "2027-01-01T00:00:00.001Z"] {
            assert!(matches!(
                validity.check(at(now), None),
                Err(ServiceError::Unauthenticated(message)) if message == "API token expired"
            ));
        }
        assert!(Validity::default()
            .check(DateTime::<Utc>::MAX_UTC, None)
            .is_ok());
    }

    #[test]
    fn addresses_outside_the_blocks_are_forbidden() {
        let validity = Validity {
            allowed_ips: vec!["203.0.113.0/24".parse().unwrap()].into(),
            ..Validity::default()
        };
        let now = at("2027-01-01T00:00:00.000Z");
        assert!(validity
            .check(now, Some("203.0.113.200".parse().unwrap()))
            .is_ok());
        assert!(validity
            .check(now, Some("::ffff:203.0.113.1".parse().unwrap()))
            .is_ok());
        for client in [Some("198.51.100.1".parse().unwrap()), None] {
            assert!(matches!(
                validity.check(now, client),
                Err(ServiceError::Forbidden(_))
            ));
        }
    }
}
