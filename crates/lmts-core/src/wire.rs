//! The JSON shapes of the API (SPEC A2) and its error body (SPEC A5), with exact field names.

use std::fmt;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{scope::Scope, secret::TokenSecret};

/// The longest label a token may carry, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// The header that makes a derive idempotent (SPEC C2): the same key from the same partner
/// within 24 hours answers the first derive again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The response header in which lmts names the extensions it implements (a comma-separated
/// list); an SDK learns from it that a derive may be repeated under its `Idempotency-Key`.
pub const FEATURES_HEADER: &str = "lmts-features";

/// The feature of [`FEATURES_HEADER`] that SPEC C2's idempotent derive is.
pub const IDEMPOTENT_DERIVE: &str = "idempotent-derive";

/// The latest `expiresAt` a token derived at `now` may carry: one year ahead (SPEC C2).
pub fn latest_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_months(chrono::Months::new(12))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An API token's id: the `lmts-api-key` header value and the `{tokenId}` of revoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Wraps an id as received or issued.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for TokenId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TokenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What a partner may do: answer of `GET /auth/api-tokens/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerCapabilities {
    /// The partner's profile id.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = i32, minimum = 1, maximum = 2147483647)
    )]
    pub partner_profile_id: i64,
    /// Whether the partner may derive, list and revoke tokens.
    pub token_management_enabled: bool,
    /// The scopes the partner may request.
    pub allowed_scopes: Vec<Scope>,
}

/// Request body of `POST /auth/api-tokens/derive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeriveApiTokenInput {
    /// A name for the token, at most 128 characters (`MAX_LABEL_CHARS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // utoipa takes only a literal here: 128 is `MAX_LABEL_CHARS` (the server's document test
    // checks that they agree), as in `ApiToken::label`.
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub label: Option<String>,
    /// The scopes requested; none means `[trading]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(nullable))]
    pub scopes: Vec<Scope>,
    /// When the token stops working (SPEC C2): in the future, at most a year ahead
    /// ([`latest_expiry`]); none: never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_millis::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DateTimeSchema>))]
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from (SPEC C2), at most
    /// [`MAX_ALLOWED_IPS`](crate::addresses::MAX_ALLOWED_IPS); empty: any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<String>, max_items = 32, nullable)
    )]
    pub allowed_ips: Vec<IpNet>,
}

/// The partner profile a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileRef {
    /// The profile id.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = i32, minimum = 1, maximum = 2147483647)
    )]
    pub id: i64,
    /// The partner's EIP-55 wallet address.
    #[cfg_attr(feature = "openapi", schema(pattern = "^0x[0-9a-fA-F]{40}$"))]
    pub account: String,
}

/// Answer of `POST /auth/api-tokens/derive`; the only time the secret is ever shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeriveApiTokenResponse {
    /// The token id again, under the name the `lmts-api-key` header uses.
    pub api_key: TokenId,
    /// The HMAC key, standard base64 on the wire.
    // Documented as the wire string only: `TokenSecret` has no schema of its own, and the
    // pattern is that of the secrets lmts issues (`TokenSecret::ISSUED_LEN` bytes).
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, content_encoding = "base64", pattern = "^[A-Za-z0-9+/]{43}=$")
    )]
    pub secret: TokenSecret,
    /// The token id.
    pub token_id: TokenId,
    /// When the token was created.
    #[serde(with = "rfc3339_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = DateTimeSchema))]
    pub created_at: DateTime<Utc>,
    /// The scopes granted.
    pub scopes: Vec<Scope>,
    /// When the token expires (SPEC C2); null: never. Absent from answers of services
    /// without the extension, read as null.
    #[serde(default, with = "rfc3339_millis::option")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<DateTimeSchema>, required = true)
    )]
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from (SPEC C2); empty: any address.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, required = true))]
    pub allowed_ips: Vec<IpNet>,
    /// The partner profile the token belongs to.
    pub profile: ProfileRef,
}

/// One live token, as `GET /auth/api-tokens` lists it. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// The token id.
    pub token_id: TokenId,
    /// The label given at derive, if any.
    #[cfg_attr(feature = "openapi", schema(required = true, max_length = 128))]
    pub label: Option<String>,
    /// The scopes the token holds.
    pub scopes: Vec<Scope>,
    /// When the token was created.
    #[serde(with = "rfc3339_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = DateTimeSchema))]
    pub created_at: DateTime<Utc>,
    /// When the token expires (SPEC C2); null: never.
    #[serde(default, with = "rfc3339_millis::option")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<DateTimeSchema>, required = true)
    )]
    pub expires_at: Option<DateTime<Utc>>,
    /// The address blocks requests may come from (SPEC C2); empty: any address.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, required = true))]
    pub allowed_ips: Vec<IpNet>,
    /// When the token last authenticated a request; null (`None`) before its first use.
    #[serde(with = "rfc3339_millis::option")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<DateTimeSchema>, required = true)
    )]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The longest overlap a rotation may ask for, in seconds: a week (SPEC C2).
pub const MAX_OVERLAP_SECONDS: u32 = 604_800;

/// Request body of `POST /auth/api-tokens/{tokenId}/rotate` (SPEC C2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotateApiTokenInput {
    /// How long the rotated token keeps working, in seconds: 0 to 604800 (a week); none means
    /// 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604800, nullable))]
    pub overlap_seconds: Option<u32>,
}

/// What an audit event records (SPEC C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TokenEventType {
    /// A token was derived.
    #[serde(rename = "token.derived")]
    Derived,
    /// A token was rotated: its successor named in the detail, its overlap's end too.
    #[serde(rename = "token.rotated")]
    Rotated,
    /// A token was revoked.
    #[serde(rename = "token.revoked")]
    Revoked,
    /// A token's expiry passed.
    #[serde(rename = "token.expired")]
    Expired,
    /// A request with a live token failed its signature, window or address check.
    #[serde(rename = "auth.failed")]
    AuthFailed,
    /// A token was used from an address it had not been used from.
    #[serde(rename = "token.new_address")]
    NewAddress,
    /// A type this version does not know (read from a later service).
    #[serde(other, rename = "unknown")]
    #[cfg_attr(feature = "openapi", schema(rename = "unknown"))]
    Unknown,
}

impl TokenEventType {
    /// Every type this version knows.
    pub const KNOWN: [TokenEventType; 6] = [
        TokenEventType::Derived,
        TokenEventType::Rotated,
        TokenEventType::Revoked,
        TokenEventType::Expired,
        TokenEventType::AuthFailed,
        TokenEventType::NewAddress,
    ];

    /// The type [`TokenEventType::as_str`] writes as `text`; `Unknown` for any other.
    pub fn parse(text: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .unwrap_or(TokenEventType::Unknown)
    }

    /// The type as the wire and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEventType::Derived => "token.derived",
            TokenEventType::Rotated => "token.rotated",
            TokenEventType::Revoked => "token.revoked",
            TokenEventType::Expired => "token.expired",
            TokenEventType::AuthFailed => "auth.failed",
            TokenEventType::NewAddress => "token.new_address",
            TokenEventType::Unknown => "unknown",
        }
    }
}

/// One audit event (SPEC C2). Never carries a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEvent {
    /// Its id, which is also the cursor that follows it.
    pub id: String,
    /// When it happened.
    #[serde(with = "rfc3339_millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = DateTimeSchema))]
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: TokenEventType,
    /// The token it happened to.
    pub token_id: TokenId,
    /// The client's address, when a request made it happen.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = true))]
    pub ip: Option<std::net::IpAddr>,
    /// What else there is to say, in words.
    pub detail: String,
}

/// Answer of `GET /auth/api-tokens/events` (SPEC C2): oldest first, and the cursor to poll with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEventPage {
    /// The events after the cursor given, oldest first.
    pub events: Vec<TokenEvent>,
    /// The cursor after the last event returned (the one given, when none was).
    pub next: String,
}

/// Answer of `DELETE /auth/api-tokens/{tokenId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeApiTokenResponse {
    /// A human-readable confirmation; clients should not parse it.
    pub message: String,
}

/// The `message` of an error body: one text or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorMessage {
    /// A single message.
    One(String),
    /// Several messages, as validation failures list them.
    Many(Vec<String>),
}

impl ErrorMessage {
    /// The messages as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            ErrorMessage::One(text) => vec![text.clone()],
            ErrorMessage::Many(texts) => texts.clone(),
        }
    }
}

impl fmt::Display for ErrorMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorMessage::One(text) => f.write_str(text),
            ErrorMessage::Many(texts) => f.write_str(&texts.join("; ")),
        }
    }
}

/// The error body every failure answers with, in the NestJS shape (SPEC A5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Error))]
pub struct ApiErrorBody {
    /// The HTTP status code, repeated.
    pub status_code: u16,
    /// What went wrong, in plain words.
    pub message: ErrorMessage,
    /// The status's reason phrase, e.g. `Unauthorized`.
    pub error: String,
}

/// The schema of a date-time as [`rfc3339_millis`] writes it, the `DateTime` of the OpenAPI
/// document: RFC 3339 UTC with milliseconds (SPEC B8).
#[cfg(feature = "openapi")]
pub struct DateTimeSchema;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for DateTimeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 UTC with milliseconds."))
            .pattern(Some(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for DateTimeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("DateTime")
    }
}

/// Serde for date-times as RFC 3339 UTC with milliseconds (`2026-03-23T12:34:56.789Z`).
pub mod rfc3339_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::signing::format_timestamp;

    /// Writes `at` with milliseconds and `Z`.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_timestamp(*at))
    }

    /// Reads any RFC 3339 date-time.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// The same for optional date-times, `null` when absent.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `at` with milliseconds, or `null`.
        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Reads an RFC 3339 date-time or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|at| at.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn event_types_read_and_write_as_the_wire_does() {
        for kind in TokenEventType::KNOWN {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(TokenEventType::parse(kind.as_str()), kind);
        }
        assert_eq!(
            TokenEventType::parse("token.later"),
            TokenEventType::Unknown
        );
        let later: TokenEventType = serde_json::from_value(json!("token.later")).unwrap();
        assert_eq!(later, TokenEventType::Unknown);
    }

    #[test]
    fn api_token_serialises_nulls_and_milliseconds() {
        let token = ApiToken {
            token_id: TokenId::new("tok_1"),
            label: None,
            scopes: vec![Scope::Trading],
            created_at: DateTime::parse_from_rfc3339("2026-03-23T12:34:56.789Z")
                .unwrap()
                .with_timezone(&Utc),
            expires_at: None,
            allowed_ips: Vec::new(),
            last_used_at: None,
        };
        let value: Value = serde_json::to_value(&token).unwrap();
        assert_eq!(
            value,
            json!({
                "tokenId": "tok_1",
                "label": null,
                "scopes": ["trading"],
                "createdAt": "2026-03-23T12:34:56.789Z",
                "expiresAt": null,
                "allowedIps": [],
                "lastUsedAt": null
            })
        );
        let back: ApiToken = serde_json::from_value(value).unwrap();
        assert_eq!(back, token);
    }

    #[test]
    fn lifecycle_fields_are_written_canonically_and_read_when_absent() {
        let input = DeriveApiTokenInput {
            expires_at: Some(
                DateTime::parse_from_rfc3339("2026-04-01T00:00:00+02:00")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            allowed_ips: vec![
                "203.0.113.0/24".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ],
            ..DeriveApiTokenInput::default()
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({
                "expiresAt": "2026-03-31T22:00:00.000Z",
                "allowedIps": ["203.0.113.0/24", "::1/128"]
            })
        );
        // A list item of a service without the extension (the published API).
        let plain: ApiToken = serde_json::from_value(json!({
            "tokenId": "tok_1", "label": null, "scopes": ["trading"],
            "createdAt": "2026-03-23T12:34:56.789Z", "lastUsedAt": null
        }))
        .unwrap();
        assert_eq!((plain.expires_at, plain.allowed_ips), (None, Vec::new()));
    }

    #[test]
    fn the_latest_expiry_is_a_calendar_year_ahead() {
        let at = |text| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(
            latest_expiry(at("2027-02-28T10:00:00Z")),
            at("2028-02-28T10:00:00Z")
        );
        assert_eq!(
            latest_expiry(at("2028-02-29T10:00:00Z")),
            at("2029-02-28T10:00:00Z")
        );
    }

    #[test]
    fn derive_response_parses_and_hides_the_secret_in_debug() {
        let body = json!({
            "apiKey": "tok_1",
            "secret": "c3VwZXItc2VjcmV0LWtleQ==",
            "tokenId": "tok_1",
            "createdAt": "2026-03-23T12:34:56.789Z",
            "scopes": ["trading", "withdrawal"],
            "profile": {"id": 7, "account": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}
        });
        let parsed: DeriveApiTokenResponse = serde_json::from_value(body).unwrap();
        assert_eq!(parsed.secret.expose_secret(), b"super-secret-key");
        assert_eq!(parsed.profile.id, 7);
        let printed = format!("{parsed:?}");
        assert!(!printed.contains("c3VwZXI"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn error_body_reads_one_message_or_many() {
        let one: ApiErrorBody = serde_json::from_value(
            json!({"statusCode": 401, "message": "no", "error": "Unauthorized"}),
        )
        .unwrap();
        assert_eq!(one.message, ErrorMessage::One("no".into()));
        let many: ApiErrorBody = serde_json::from_value(
            json!({"statusCode": 400, "message": ["a", "b"], "error": "Bad Request"}),
        )
        .unwrap();
        assert_eq!(many.message.to_vec(), vec!["a", "b"]);
        assert_eq!(many.message.to_string(), "a; b");
    }

    #[test]
    fn derive_input_omits_absent_fields() {
        assert_eq!(
            serde_json::to_string(&DeriveApiTokenInput::default()).unwrap(),
            "{}"
        );
        let official: DeriveApiTokenInput =
            serde_json::from_str(r#"{"label":null,"scopes":[]}"#).unwrap();
        assert_eq!(official, DeriveApiTokenInput::default());
    }
}
