//! What an operator does from the command line, against the database (issue #15): every
//! partner with its settings and live tokens, a partner's tokens, and the emergency stop:
//! revoking one token, or every token of a partner. A revoke here is final on every instance
//! as any revoke is (PostgreSQL: acknowledged by each live instance; SQLite: found by other
//! processes within a second), and is an audit event naming the operator and the reason.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lmts_core::{wire::TokenEventType, TokenId};

use super::ServiceError;
use crate::store::{EventOf, NewEvent, PartnerProfile, PartnerSettings, Store, TokenRecord};

/// The longest reason an operator may give.
const MAX_REASON_CHARS: usize = 500;

/// Who revokes, and why: both in the audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The operator's name.
    pub name: String,
    /// Why.
    pub reason: String,
}

impl Operator {
    /// An operator with a name and a reason, both required (the reason at most 500 characters).
    pub fn new(name: &str, reason: &str) -> Result<Self, ServiceError> {
        let (name, reason) = (name.trim(), reason.trim());
        if name.is_empty() {
            return Err(ServiceError::invalid("the operator's name is empty"));
        }
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(ServiceError::invalid(format!(
                "give a reason of 1 to {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    }

    /// The audit event of revoking `token_id` of `profile_id` at `now`.
    fn revocation(&self, profile_id: i64, token_id: &TokenId, now: DateTime<Utc>) -> NewEvent {
        NewEvent {
            profile_id,
            at: now,
            kind: TokenEventType::Revoked,
            token_id: token_id.clone(),
            ip: None,
            detail: format!("revoked by operator {}: {}", self.name, self.reason),
        }
    }
}

/// A partner as `lmts partners list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerSummary {
    /// The profile.
    pub profile: PartnerProfile,
    /// The settings in force for it.
    pub settings: PartnerSettings,
    /// Its live tokens.
    pub live_tokens: usize,
}

/// Every partner seen, oldest first, with its settings and live token count at `now`.
pub async fn partners(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<PartnerSummary>, ServiceError> {
    let mut summaries = Vec::new();
    for profile in store.profiles().await? {
        let settings = store.partner_settings(&profile.account).await?;
        let live_tokens = store.active_tokens(profile.id, now).await?.len();
        summaries.push(PartnerSummary {
            profile,
            settings,
            live_tokens,
        });
    }
    Ok(summaries)
}

/// The partner whose wallet is `account`, with its live tokens at `now`.
pub async fn tokens(
    store: &dyn Store,
    account: &str,
    now: DateTime<Utc>,
) -> Result<(PartnerProfile, Vec<TokenRecord>), ServiceError> {
    let profile = partner(store, account).await?;
    let tokens = store.active_tokens(profile.id, now).await?;
    Ok((profile, tokens))
}

/// The partner whose wallet is `account`.
async fn partner(store: &dyn Store, account: &str) -> Result<PartnerProfile, ServiceError> {
    store
        .profile_by_account(account)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no partner with account {account}")))
}

/// Revokes the live token `token_id`, whoever holds it; 404 when there is none.
pub async fn revoke(
    store: &dyn Store,
    token_id: &str,
    operator: &Operator,
    now: DateTime<Utc>,
) -> Result<PartnerProfile, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("no live token {token_id}"));
    let token = store
        .token_credentials(token_id)
        .await?
        .ok_or_else(not_found)?;
    let event = operator.revocation(token.profile.id, &token.token_id, now);
    if store
        .revoke_token(token.profile.id, token_id, now, Some(&event))
        .await?
    {
        Ok(token.profile)
    } else {
        Err(not_found())
    }
}

/// Revokes every live token of the partner whose wallet is `account` (the emergency stop), in
/// one step: a rotation racing it either went first, and its successor is revoked with the
/// rest, or comes after and finds its token revoked. Answers the ids revoked.
pub async fn revoke_all(
    store: &dyn Store,
    account: &str,
    operator: &Operator,
    now: DateTime<Utc>,
) -> Result<Vec<TokenId>, ServiceError> {
    let profile = partner(store, account).await?;
    let operator = operator.clone();
    let event_of: EventOf =
        Arc::new(move |token_id| operator.revocation(profile.id, token_id, now));
    Ok(store.revoke_partner(profile.id, now, event_of).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_names_itself_and_a_reason() {
        let operator = Operator::new(" alice ", " leaked key ").unwrap();
        assert_eq!(
            (operator.name.as_str(), operator.reason.as_str()),
            ("alice", "leaked key")
        );
        assert!(Operator::new("", "why").is_err());
        assert!(Operator::new("alice", " ").is_err());
        assert!(Operator::new("alice", &"x".repeat(501)).is_err());
    }
}
