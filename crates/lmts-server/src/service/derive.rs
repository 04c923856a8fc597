//! A derive request: its body validated (SPEC A2, B2, B3, C2) and its idempotency key; a
//! rotation's body (SPEC C2); and the fresh id and secret of the token either creates (SPEC B4).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use http::HeaderMap;
use ipnet::IpNet;
use lmts_core::{
    addresses::{parse_block, MAX_ALLOWED_IPS},
    scope::{canonical_scopes, check_scope_rules},
    signing::format_timestamp,
    wire::{latest_expiry, IDEMPOTENCY_KEY, MAX_LABEL_CHARS},
    Scope, TokenId, TokenSecret,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{validity::Validity, ServiceError};
use crate::{crypto::Keyring, store::DeriveKey};

/// A derive request that passed validation.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DeriveRequest {
    /// The label, if any.
    pub label: Option<String>,
    /// The requested scopes, merged and in the contract's order.
    pub scopes: Vec<Scope>,
    /// When and where the token may be used (SPEC C2).
    pub validity: Validity,
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

/// Validates a derive body received at `now` (SPEC A2, B2, B3, C2), listing every problem
/// found. An empty body is the same as `{}`; fields other than `label`, `scopes`, `expiresAt`
/// and `allowedIps` are ignored, unless they are one of those spelt otherwise.
pub(super) fn parse_derive_body(
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<DeriveRequest, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeriveRequest {
            label: None,
            scopes: canonical_scopes([]),
            validity: Validity::default(),
        });
    }
    let fields = json_object(bytes)?;
    let mut problems = misspelt_fields(&fields, &DERIVE_FIELDS);
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
    let validity = Validity {
        expires_at: parse_expiry(fields.get("expiresAt"), now, &mut problems),
        allowed_ips: parse_allowed_ips(fields.get("allowedIps"), &mut problems).into(),
    };
    if problems.is_empty() {
        Ok(DeriveRequest {
            label,
            scopes,
            validity,
        })
    } else {
        problems.dedup();
        Err(ServiceError::Invalid(problems))
    }
}

/// The fields a derive body may carry.
const DERIVE_FIELDS: [&str; 4] = ["label", "scopes", "expiresAt", "allowedIps"];

/// The field a rotation body may carry.
const ROTATE_FIELDS: [&str; 1] = ["overlapSeconds"];

/// A body that must be a JSON object with unique keys.
fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ServiceError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ServiceError::invalid("request body must be a JSON object"))?;
    let Value::Object(fields) = value else {
        return Err(ServiceError::invalid("request body must be a JSON object"));
    };
    if let Err(error) = serde_json::from_slice::<UniqueKeys>(bytes) {
        return Err(ServiceError::invalid(error.to_string()));
    }
    Ok(fields)
}

/// The refusals of keys that are one of `known` spelt otherwise (`expires_at`, `allowedIPs`):
/// ignored like other unknown keys, they would derive a token without what was meant.
fn misspelt_fields(fields: &serde_json::Map<String, Value>, known: &[&str]) -> Vec<String> {
    let plain = |text: &str| {
        text.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    fields
        .keys()
        .filter_map(|key| {
            known
                .iter()
                .find(|field| *field != key && plain(field) == plain(key))
                .map(|field| format!("unknown field \"{key}\": did you mean \"{field}\"?"))
        })
        .collect()
}

/// The default overlap of a rotation (SPEC C2).
const DEFAULT_OVERLAP_SECONDS: i64 = 3_600;
/// The longest overlap of a rotation (SPEC C2), in the service's arithmetic.
pub(super) const MAX_OVERLAP_SECONDS: i64 = lmts_core::wire::MAX_OVERLAP_SECONDS as i64;

/// Validates a rotation body (SPEC C2): `{"overlapSeconds": N}`, 0 to 604800, default 3600 (also
/// for an empty body); answers the overlap.
pub(super) fn parse_rotate_body(bytes: &[u8]) -> Result<TimeDelta, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(TimeDelta::seconds(DEFAULT_OVERLAP_SECONDS));
    }
    let fields = json_object(bytes)?;
    let problems = misspelt_fields(&fields, &ROTATE_FIELDS);
    if !problems.is_empty() {
        return Err(ServiceError::Invalid(problems));
    }
    match fields.get("overlapSeconds") {
        None | Some(Value::Null) => Ok(TimeDelta::seconds(DEFAULT_OVERLAP_SECONDS)),
        Some(value) => value
            .as_i64()
            .filter(|seconds| (0..=MAX_OVERLAP_SECONDS).contains(seconds))
            .map(TimeDelta::seconds)
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "overlapSeconds must be a whole number of seconds from 0 to {MAX_OVERLAP_SECONDS}"
                ))
            }),
    }
}

/// `expiresAt`: absent or null for never, else an RFC 3339 date-time after `now` and at most a
/// year ahead, kept to the millisecond the wire shows.
fn parse_expiry(
    value: Option<&Value>,
    now: DateTime<Utc>,
    problems: &mut Vec<String>,
) -> Option<DateTime<Utc>> {
    let text = match value {
        None | Some(Value::Null) => return None,
        Some(Value::String(text)) => text,
        Some(_) => {
            problems.push(EXPIRY_SHAPE.to_owned());
            return None;
        }
    };
    let Ok(parsed) = DateTime::parse_from_rfc3339(text) else {
        problems.push(EXPIRY_SHAPE.to_owned());
        return None;
    };
    let expires_at = parsed.with_timezone(&Utc).trunc_subsecs(3);
    let latest = latest_expiry(now);
    if expires_at <= now {
        problems.push("expiresAt must be in the future".to_owned());
    } else if expires_at > latest {
        problems.push(format!(
            "expiresAt must be at most one year ahead (no later than {})",
            format_timestamp(latest)
        ));
    }
    Some(expires_at)
}

const EXPIRY_SHAPE: &str = "expiresAt must be an RFC 3339 date-time (e.g. 2027-01-01T00:00:00Z)";

/// `allowedIps`: absent, null or an array of at most [`MAX_ALLOWED_IPS`] address blocks, read
/// canonically; a block given twice is kept once.
fn parse_allowed_ips(value: Option<&Value>, problems: &mut Vec<String>) -> Vec<IpNet> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_ALLOWED_IPS => items,
        Some(Value::Array(_)) => {
            problems.push(format!(
                "allowedIps must hold at most {MAX_ALLOWED_IPS} address blocks"
            ));
            return Vec::new();
        }
        Some(_) => {
            problems.push("allowedIps must be an array of CIDR strings".to_owned());
            return Vec::new();
        }
    };
    let mut blocks: Vec<IpNet> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str().map(parse_block) {
            Some(Ok(block)) if !blocks.contains(&block) => blocks.push(block),
            Some(Ok(_)) => {}
            Some(Err(error)) => problems.push(format!("allowedIps: {error}")),
            None => problems.push("allowedIps must be an array of CIDR strings".to_owned()),
        }
    }
    blocks
}

/// How long a derive's `Idempotency-Key` holds (SPEC C2).
pub(super) const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// The longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The derive's `Idempotency-Key` received at `now`, if sent, with the digest of its `body`:
/// 1 to 255 visible ASCII characters, once.
pub(super) fn idempotency_key(
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<DeriveKey>, ServiceError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let visible = |key: &&[u8]| {
        (1..=MAX_IDEMPOTENCY_KEY_CHARS).contains(&key.len()) && key.iter().all(u8::is_ascii_graphic)
    };
    let key = Some(value.as_bytes())
        .filter(visible)
        .filter(|_| values.next().is_none())
        .ok_or_else(|| {
            ServiceError::invalid(format!(
                "{IDEMPOTENCY_KEY} must be sent once, as 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
            ))
        })?;
    Ok(Some(DeriveKey {
        key: String::from_utf8_lossy(key).into_owned(),
        body_digest: Sha256::digest(body).into(),
        lapsed_before: now - IDEMPOTENCY_WINDOW,
    }))
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

    /// The instant the tests derive at.
    fn now() -> DateTime<Utc> {
        lmts_core::signing::parse_timestamp("2026-03-23T12:00:00.000Z").unwrap()
    }

    fn parse(body: &[u8]) -> Result<DeriveRequest, ServiceError> {
        parse_derive_body(body, now())
    }

    fn problems(body: &str) -> Vec<String> {
        match parse(body.as_bytes()) {
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
                parse(body.as_bytes()).unwrap(),
                DeriveRequest {
                    label: None,
                    scopes: vec![Scope::Trading],
                    validity: Validity::default(),
                },
                "{body}"
            );
        }
    }

    #[test]
    fn scopes_are_merged_ordered_and_checked() {
        let request = parse(
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
            parse(br#"{"label":{"x":1,"y":1}}"#).is_err(),
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
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!(r#"{{"label":"{}"}}"#, "é".repeat(129));
        assert_eq!(
            problems(&over),
            vec!["label must be at most 128 characters"]
        );
    }

    #[test]
    fn expiry_is_in_the_future_within_a_year_and_kept_to_the_millisecond() {
        let request = parse(br#"{"expiresAt":"2026-03-24T14:00:00.123456+02:00"}"#).unwrap();
        assert_eq!(
            request.validity.expires_at,
            Some(lmts_core::signing::parse_timestamp("2026-03-24T12:00:00.123Z").unwrap())
        );
        assert!(parse(br#"{"expiresAt":"2027-03-23T12:00:00Z"}"#).is_ok());
        assert_eq!(
            problems(r#"{"expiresAt":"2027-03-23T12:00:00.001Z"}"#),
            vec![
                "expiresAt must be at most one year ahead (no later than 2027-03-23T12:00:00.000Z)"
            ]
        );
        for past in ["2026-03-23T12:00:00Z", "2020-01-01T00:00:00Z"] {
            let body = format!(r#"{{"expiresAt":"{past}"}}"#);
            assert_eq!(problems(&body), vec!["expiresAt must be in the future"]);
        }
        for bad in [r#""tomorrow""#, "1774353600", r#""2026-03-24""#, "{}"] {
            let body = format!(r#"{{"expiresAt":{bad}}}"#);
            assert!(
                problems(&body)[0].starts_with("expiresAt must be an RFC 3339"),
                "{bad}"
            );
        }
        assert_eq!(
            parse(br#"{"expiresAt":null}"#).unwrap().validity.expires_at,
            None
        );
    }

    #[test]
    fn a_field_spelt_otherwise_is_refused_and_others_are_ignored() {
        assert_eq!(
            problems(r#"{"expires_at":"2026-04-01T00:00:00Z","allowedIPs":[],"Label":"x"}"#),
            vec![
                "unknown field \"Label\": did you mean \"label\"?",
                "unknown field \"allowedIPs\": did you mean \"allowedIps\"?",
                "unknown field \"expires_at\": did you mean \"expiresAt\"?",
            ]
        );
        assert!(parse(br#"{"profile":{"id":1},"expiry":"soon"}"#).is_ok());
    }

    #[test]
    fn a_rotation_overlaps_an_hour_by_default_and_a_week_at_most() {
        for body in ["", " ", "{}", r#"{"overlapSeconds":null}"#] {
            assert_eq!(
                parse_rotate_body(body.as_bytes()).unwrap(),
                TimeDelta::hours(1)
            );
        }
        assert_eq!(
            parse_rotate_body(br#"{"overlapSeconds":0}"#).unwrap(),
            TimeDelta::zero()
        );
        assert_eq!(
            parse_rotate_body(br#"{"overlapSeconds":604800}"#).unwrap(),
            TimeDelta::weeks(1)
        );
        for bad in ["-1", "604801", "1.5", "\"60\"", "1e3", "true"] {
            let body = format!(r#"{{"overlapSeconds":{bad}}}"#);
            let Err(ServiceError::Invalid(problems)) = parse_rotate_body(body.as_bytes()) else {
                panic!("{body} was accepted");
            };
            assert!(
                problems[0].starts_with("overlapSeconds must be"),
                "{problems:?}"
            );
        }
        let Err(ServiceError::Invalid(problems)) = parse_rotate_body(br#"{"overlap_seconds":0}"#)
        else {
            panic!("a misspelt overlap was ignored");
        };
        assert!(
            problems[0].contains("did you mean \"overlapSeconds\""),
            "{problems:?}"
        );
        assert!(parse_rotate_body(b"[]").is_err());
    }

    #[test]
    fn allowed_ips_are_canonical_bounded_and_named_when_wrong() {
        let request =
            parse(br#"{"allowedIps":["203.0.113.7/24","2001:db8::/32","203.0.113.0/24"]}"#)
                .unwrap();
        let shown: Vec<String> = request
            .validity
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["203.0.113.0/24", "2001:db8::/32"]);
        let found = problems(r#"{"allowedIps":["10.0.0.0/33","::ffff:10.0.0.1",7]}"#);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .all(|problem| problem.starts_with("allowedIps")),
            "{found:?}"
        );
        let many: Vec<String> = (0..33).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let body = format!(r#"{{"allowedIps":[{}]}}"#, many.join(","));
        assert_eq!(
            problems(&body),
            vec!["allowedIps must hold at most 32 address blocks"]
        );
        assert_eq!(
            problems(r#"{"allowedIps":"10.0.0.0/8"}"#),
            vec!["allowedIps must be an array of CIDR strings"]
        );
    }
}
