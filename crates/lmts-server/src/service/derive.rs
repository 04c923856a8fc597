//! A derive request: its body validated (SPEC A2, B2, B3), and the fresh id and secret of the
//! token it creates (SPEC B4).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use lmts_core::{
    scope::{canonical_scopes, check_scope_rules},
    wire::MAX_LABEL_CHARS,
    Scope, TokenId, TokenSecret,
};
use serde_json::Value;

use super::ServiceError;
use crate::crypto::Keyring;

/// A derive request that passed validation.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DeriveRequest {
    /// The label, if any.
    pub label: Option<String>,
    /// The requested scopes, merged and in the contract's order.
    pub scopes: Vec<Scope>,
}

/// A JSON object whose keys are unique: `{"label":"a","label":"b"}` is ambiguous (parsers
/// disagree on which wins), so it is refused rather than guessed at.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key \"{key}\" in the request body"
                        )));
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UniqueKeys)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Validates a derive body (SPEC A2, B2, B3), listing every problem found. An empty body is
/// the same as `{}`; fields other than `label` and `scopes` are ignored.
pub(super) fn parse_derive_body(bytes: &[u8]) -> Result<DeriveRequest, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeriveRequest {
            label: None,
            scopes: canonical_scopes([]),
        });
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ServiceError::invalid("request body must be a JSON object"))?;
    let Value::Object(fields) = value else {
        return Err(ServiceError::invalid("request body must be a JSON object"));
    };
    if let Err(error) = serde_json::from_slice::<UniqueKeys>(bytes) {
        return Err(ServiceError::invalid(error.to_string()));
    }
    let mut problems = Vec::new();
    let label = match fields.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(label)) if label.chars().count() > MAX_LABEL_CHARS => {
            problems.push(format!(
                "label must be at most {MAX_LABEL_CHARS} characters"
            ));
            None
        }
        Some(Value::String(label)) if label.contains('\0') => {
            problems.push("label must not contain NUL characters".to_owned());
            None
        }
        Some(Value::String(label)) => Some(label.clone()),
        Some(_) => {
            problems.push("label must be a string".to_owned());
            None
        }
    };
    let mut requested = Vec::new();
    match fields.get("scopes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str().map(Scope::from) {
                    Some(scope) if scope.is_known() => requested.push(scope),
                    Some(unknown) => problems.push(format!(
                        "unknown scope \"{unknown}\"; known scopes: {}",
                        Scope::KNOWN.map(|s| s.to_string()).join(", ")
                    )),
                    None => problems.push("scopes must be an array of strings".to_owned()),
                }
            }
        }
        Some(_) => problems.push("scopes must be an array of strings".to_owned()),
    }
    let scopes = canonical_scopes(requested);
    if let Err(rule) = check_scope_rules(&scopes) {
        problems.push(rule.to_owned());
    }
    if problems.is_empty() {
        Ok(DeriveRequest { label, scopes })
    } else {
        problems.dedup();
        Err(ServiceError::Invalid(problems))
    }
}

/// The longest token id any version issued or could store.
const MAX_TOKEN_ID_CHARS: usize = 128;

/// Whether `text` could be a token id at all: 1 to 128 characters of the URL-safe alphabet.
/// Anything else names no token, so it is answered without asking the store.
pub(super) fn is_token_id_shaped(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TOKEN_ID_CHARS
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// A fresh token id: `lmts_` and 144 random bits, URL-safe.
pub(super) fn new_token_id(keyring: &Keyring) -> Result<TokenId, ServiceError> {
    let mut bytes = [0u8; 18];
    keyring.fill_random(&mut bytes)?;
    Ok(TokenId::new(format!(
        "lmts_{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// A fresh secret of 32 random bytes.
pub(super) fn new_secret(keyring: &Keyring) -> Result<TokenSecret, ServiceError> {
    let mut bytes = vec![0u8; TokenSecret::ISSUED_LEN];
    keyring.fill_random(&mut bytes)?;
    TokenSecret::from_bytes(bytes).map_err(|_| ServiceError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(body: &str) -> Vec<String> {
        match parse_derive_body(body.as_bytes()) {
            Err(ServiceError::Invalid(problems)) => problems,
            other => panic!("expected 400 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_official_sdk_body() {
        for body in [
            "",
            "{}",
            r#"{"label":null,"scopes":[]}"#,
            r#"{"scopes":null}"#,
        ] {
            assert_eq!(
                parse_derive_body(body.as_bytes()).unwrap(),
                DeriveRequest {
                    label: None,
                    scopes: vec![Scope::Trading]
                },
                "{body}"
            );
        }
    }

    #[test]
    fn scopes_are_merged_ordered_and_checked() {
        let request = parse_derive_body(
            br#"{"label":"bot","scopes":["delegated_signing","trading","trading"],"profile":{"id":1}}"#,
        )
        .unwrap();
        assert_eq!(request.label.as_deref(), Some("bot"));
        assert_eq!(
            request.scopes,
            vec![Scope::Trading, Scope::DelegatedSigning]
        );
        assert_eq!(problems(r#"{"scopes":["delegated_signing"]}"#).len(), 1);
        assert!(problems(r#"{"scopes":["root"]}"#)[0].contains("unknown scope \"root\""));
    }

    #[test]
    fn every_problem_is_listed() {
        let found = problems(r#"{"label":5,"scopes":["x",3]}"#);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(problems("[]"), vec!["request body must be a JSON object"]);
        assert_eq!(problems("{"), vec!["request body must be a JSON object"]);
        assert_eq!(
            problems(r#"{"scopes":"trading"}"#),
            vec!["scopes must be an array of strings"]
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let found = problems(r#"{"label":"a","scopes":["trading"],"label":"b"}"#);
        assert!(found[0].starts_with("duplicate key \"label\""), "{found:?}");
        assert!(
            parse_derive_body(br#"{"label":{"x":1,"y":1}}"#).is_err(),
            "nested objects are not labels"
        );
    }

    #[test]
    fn only_url_safe_ids_are_looked_up() {
        assert!(is_token_id_shaped("lmts_AAAAAAAAAAAAAAAAAAAAAAAA"));
        assert!(is_token_id_shaped("tok_m"));
        for text in ["", "tok/with spaces", "a\0b", "é", &"a".repeat(129)] {
            assert!(!is_token_id_shaped(text), "{text:?}");
        }
    }

    #[test]
    fn a_nul_in_a_label_is_refused() {
        assert_eq!(
            problems(r#"{"label":"a\u0000b"}"#),
            vec!["label must not contain NUL characters"]
        );
    }

    #[test]
    fn label_limit_counts_characters_not_bytes() {
        let at_limit = format!(r#"{{"label":"{}"}}"#, "é".repeat(128));
        assert!(parse_derive_body(at_limit.as_bytes()).is_ok());
        let over = format!(r#"{{"label":"{}"}}"#, "é".repeat(129));
        assert_eq!(
            problems(&over),
            vec!["label must be at most 128 characters"]
        );
    }
}
