//! The answer of `GET /auth/api-tokens`, rendered once per cached token list: everything but
//! each token's `lastUsedAt`, which moves with every signed request and is filled in per answer.

use chrono::{DateTime, Utc};
use lmts_core::{signing::format_timestamp_into, wire::ApiToken, TokenId};

use super::validity::is_live;
use crate::store::TokenRecord;

/// A partner's live tokens, oldest first, ready to answer a list request.
#[derive(Debug)]
pub struct TokenListing {
    tokens: Vec<ListedToken>,
    /// Bytes of every rendered head, to size an answer in one allocation.
    head_bytes: usize,
}

/// How a wire token's JSON ends when its last field, `lastUsedAt`, is null.
const NULL_LAST_FIELD: &str = "null}";

#[derive(Debug)]
struct ListedToken {
    token_id: TokenId,
    /// When it leaves the list.
    expires_at: Option<DateTime<Utc>>,
    /// `lastUsedAt` as stored.
    last_used_at: Option<DateTime<Utc>>,
    /// The token's JSON object up to the value of `lastUsedAt`, its last field.
    head: String,
}

impl TokenListing {
    /// Renders the unchanging part of each token.
    pub fn new(records: Vec<TokenRecord>) -> Result<Self, serde_json::Error> {
        let tokens = records
            .into_iter()
            .map(|record| {
                // The wire type itself, rendered with `lastUsedAt` (its last field) null; the
                // head is everything before that value, so a field added to the wire type is
                // listed without a change here.
                let last_used_at = record.last_used_at;
                let token = ApiToken {
                    last_used_at: None,
                    ..ApiToken::from(record)
                };
                let mut head = serde_json::to_string(&token)?;
                head.truncate(head.len().saturating_sub(NULL_LAST_FIELD.len()));
                Ok(ListedToken {
                    token_id: token.token_id,
                    expires_at: token.expires_at,
                    last_used_at,
                    head,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let head_bytes = tokens.iter().map(|token| token.head.len()).sum();
        Ok(Self { tokens, head_bytes })
    }

    /// The JSON array of the tokens still live at `now`; each `lastUsedAt` is the later of the
    /// stored value and `latest_use` (uses this instance saw but has not written yet).
    pub fn render(
        &self,
        now: DateTime<Utc>,
        latest_use: impl Fn(&TokenId) -> Option<DateTime<Utc>>,
    ) -> String {
        // Per token: a comma, a quoted 24-character timestamp and the closing brace.
        let mut body = String::with_capacity(self.head_bytes + self.tokens.len() * 28 + 2);
        body.push('[');
        let live = self
            .tokens
            .iter()
            .filter(|token| is_live(token.expires_at, now));
        for (index, token) in live.enumerate() {
            if index > 0 {
                body.push(',');
            }
            token.render_into(&mut body, &latest_use);
        }
        body.push(']');
        body
    }

    /// The JSON object of `token_id`, if it is listed and live at `now`.
    pub fn render_one(
        &self,
        token_id: &TokenId,
        now: DateTime<Utc>,
        latest_use: impl Fn(&TokenId) -> Option<DateTime<Utc>>,
    ) -> Option<String> {
        let token = self
            .tokens
            .iter()
            .find(|token| token.token_id == *token_id && is_live(token.expires_at, now))?;
        let mut body = String::with_capacity(token.head.len() + 28);
        token.render_into(&mut body, &latest_use);
        Some(body)
    }
}

impl ListedToken {
    /// Appends the token's JSON object, its `lastUsedAt` the later of the stored value and
    /// `latest_use`.
    fn render_into(
        &self,
        body: &mut String,
        latest_use: &impl Fn(&TokenId) -> Option<DateTime<Utc>>,
    ) {
        body.push_str(&self.head);
        match self.last_used_at.max(latest_use(&self.token_id)) {
            Some(at) => {
                body.push('"');
                format_timestamp_into(at, body);
                body.push('"');
            }
            None => body.push_str("null"),
        }
        body.push('}');
    }
}

#[cfg(test)]
mod tests {
    use lmts_core::Scope;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        lmts_core::signing::parse_timestamp(text).unwrap()
    }

    fn record(id: &str, label: Option<&str>, last_used: Option<&str>) -> TokenRecord {
        TokenRecord {
            token_id: TokenId::new(id),
            label: label.map(str::to_owned),
            scopes: vec![Scope::Trading, Scope::Withdrawal],
            created_at: at("2026-03-23T12:34:56.789Z"),
            expires_at: None,
            allowed_ips: Vec::new(),
            last_used_at: last_used.map(at),
        }
    }

    #[test]
    fn renders_exactly_what_serde_renders_for_the_wire_type() {
        let records = vec![
            record("lmts_a", None, None),
            TokenRecord {
                expires_at: Some(at("2026-03-24T00:00:00.000Z")),
                allowed_ips: vec!["203.0.113.0/24".parse().unwrap()],
                ..record("lmts_b", Some("quote \" back \\ slash \u{1F600} \n"), None)
            },
            record("lmts_c", Some("bot"), Some("2026-03-23T13:00:00.000Z")),
            record("lmts_d", Some(""), Some("2026-03-23T13:00:00.000Z")),
        ];
        let newer = at("2026-03-23T14:00:00.123Z");
        let latest_use = |id: &TokenId| match id.as_str() {
            "lmts_b" | "lmts_c" => Some(newer),
            "lmts_d" => Some(at("2026-03-23T12:59:59.999Z")),
            _ => None,
        };
        let expected: Vec<ApiToken> = records
            .iter()
            .map(|record| ApiToken {
                token_id: record.token_id.clone(),
                label: record.label.clone(),
                scopes: record.scopes.clone(),
                created_at: record.created_at,
                expires_at: record.expires_at,
                allowed_ips: record.allowed_ips.clone(),
                last_used_at: record.last_used_at.max(latest_use(&record.token_id)),
            })
            .collect();
        let listing = TokenListing::new(records).unwrap();
        assert_eq!(
            listing.render(at("2026-03-23T23:59:59.999Z"), latest_use),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn a_token_leaves_the_list_at_its_expiry() {
        let records = vec![
            TokenRecord {
                expires_at: Some(at("2026-03-24T00:00:00.000Z")),
                ..record("lmts_a", None, None)
            },
            record("lmts_b", None, None),
        ];
        let listing = TokenListing::new(records).unwrap();
        let ids = |now| {
            let listed: Vec<ApiToken> =
                serde_json::from_str(&listing.render(at(now), |_| None)).unwrap();
            listed
                .into_iter()
                .map(|token| token.token_id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("2026-03-23T23:59:59.999Z"), ["lmts_a", "lmts_b"]);
        assert_eq!(ids("2026-03-24T00:00:00.000Z"), ["lmts_b"]);
    }

    #[test]
    fn an_empty_list_is_an_empty_array() {
        assert_eq!(
            TokenListing::new(Vec::new())
                .unwrap()
                .render(at("2026-03-23T00:00:00Z"), |_| None),
            "[]"
        );
    }
}
