//! Who may rotate what (SPEC C2). A rotation hands the caller the secret of a successor as
//! strong as the rotated token, so a token may rotate itself, or a token of its partner whose
//! reach it already has: every scope, no wider addresses, no longer life. (SPEC C2 says "any
//! live token of the same partner"; without this rule a trading-only token could rotate a
//! withdrawal token and keep its successor.)

use super::{caches::CachedToken, ServiceError};
use crate::store::TokenCredentials;

/// Refuses rotating `rotated` with `caller`: 409 when it was rotated already (its successor is
/// the one to rotate; another successor would only live as long as the overlap), 403 when the
/// caller's reach does not cover it.
pub(super) fn check_rotation(
    caller: &CachedToken,
    rotated: &TokenCredentials,
) -> Result<(), ServiceError> {
    if rotated.rotated {
        return Err(ServiceError::Conflict(
            "this token was rotated already; rotate its successor".into(),
        ));
    }
    if caller.token_id == rotated.token_id || covers(caller, rotated) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "a token may rotate itself, or a token of its partner whose scopes it holds, with no wider allowedIps and no later expiresAt"
                .into(),
        ))
    }
}

/// Whether `caller` reaches as far as `rotated`: all its scopes, its addresses (or any), its
/// lifetime (or longer).
fn covers(caller: &CachedToken, rotated: &TokenCredentials) -> bool {
    let scopes = rotated
        .scopes
        .iter()
        .all(|scope| caller.scopes.contains(scope));
    let own = &caller.validity;
    let addresses = own.allowed_ips.is_empty() || *own.allowed_ips == *rotated.allowed_ips;
    let lifetime = match (own.expires_at, rotated.expires_at) {
        (None, _) => true,
        (Some(own), Some(rotated)) => rotated <= own,
        (Some(_), None) => false,
    };
    scopes && addresses && lifetime
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use lmts_core::{Scope, Signer, TokenId, TokenSecret};

    use super::*;
    use crate::{crypto::SealedSecret, service::Validity, store::PartnerProfile};

    fn at(text: &str) -> DateTime<Utc> {
        lmts_core::signing::parse_timestamp(text).unwrap()
    }

    fn profile() -> PartnerProfile {
        PartnerProfile {
            id: 1,
            subject: "did:privy:a".into(),
            account: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
        }
    }

    fn caller(scopes: Vec<Scope>, validity: Validity) -> CachedToken {
        let secret = TokenSecret::from_bytes(vec![1; 32]).unwrap();
        CachedToken::new(
            TokenId::new("lmts_caller"),
            profile(),
            scopes,
            Signer::new(&secret),
            validity,
        )
    }

    fn rotated(scopes: Vec<Scope>, validity: Validity) -> TokenCredentials {
        TokenCredentials {
            token_id: TokenId::new("lmts_other"),
            profile: profile(),
            scopes,
            created_at: at("2027-01-01T00:00:00.000Z"),
            revoked: false,
            rotated: false,
            expires_at: validity.expires_at,
            allowed_ips: validity.allowed_ips.into_vec(),
            sealed: SealedSecret {
                key_id: "k".into(),
                sealed: Vec::new(),
            },
        }
    }

    #[test]
    fn a_token_rotates_only_what_it_already_reaches() {
        let trading = vec![Scope::Trading];
        let both = vec![Scope::Trading, Scope::Withdrawal];
        let open = Validity::default();
        let fenced = Validity {
            allowed_ips: vec!["203.0.113.0/24".parse().unwrap()].into(),
            ..Validity::default()
        };
        let brief = Validity {
            expires_at: Some(at("2027-02-01T00:00:00.000Z")),
            ..Validity::default()
        };
        assert!(check_rotation(
            &caller(both.clone(), open.clone()),
            &rotated(trading.clone(), fenced.clone())
        )
        .is_ok());
        for (caller, target) in [
            (
                caller(trading.clone(), open.clone()),
                rotated(both.clone(), open.clone()),
            ),
            (
                caller(both.clone(), fenced.clone()),
                rotated(both.clone(), open.clone()),
            ),
            (
                caller(both.clone(), brief.clone()),
                rotated(both.clone(), open.clone()),
            ),
        ] {
            assert!(matches!(
                check_rotation(&caller, &target),
                Err(ServiceError::Forbidden(_))
            ));
        }
        let mut already = rotated(trading.clone(), open.clone());
        already.rotated = true;
        assert!(matches!(
            check_rotation(&caller(both, open), &already),
            Err(ServiceError::Conflict(_))
        ));
    }
}
