//! The OpenAPI 3.1 document of the service, served at `/openapi.json`, true to SPEC A1/A2/B1/B2.
//!
//! The schemas are derived from the wire types of `lmts-core` (its `openapi` feature, utoipa's
//! `ToSchema`), so the document describes exactly what serde reads and writes; the operations,
//! their responses and security are declared here with utoipa's builders. The document is built
//! once and served as JSON.

use std::sync::OnceLock;

use axum::Json;
use lmts_core::wire::{
    ApiErrorBody, ApiToken, DeriveApiTokenInput, DeriveApiTokenResponse, PartnerCapabilities,
    RevokeApiTokenResponse, RotateApiTokenInput, TokenEventPage, IDEMPOTENCY_KEY,
};
use serde_json::Value;
use utoipa::{
    openapi::{
        path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
        schema::{ArrayBuilder, ObjectBuilder, Schema, Type},
        security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme},
        Components, ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi,
        OpenApiBuilder, PathItem, Paths, Ref, RefOr, Required, Response, ResponseBuilder,
        Responses, ResponsesBuilder,
    },
    ToSchema,
};

/// The security scheme of capabilities and derive: the Privy identity token.
const IDENTITY_SCHEME: &str = "identity";

/// The security schemes of list and revoke, all three required together, with their headers.
const HMAC_SCHEMES: [(&str, &str); 3] = [
    ("lmtsApiKey", "lmts-api-key"),
    ("lmtsTimestamp", "lmts-timestamp"),
    ("lmtsSignature", "lmts-signature"),
];

/// The answers the token endpoints share: (status, description).
const RATE_LIMITED: (&str, &str) = ("429", "rate limited");
/// See [`RATE_LIMITED`].
const UNAVAILABLE: (&str, &str) = ("503", "a dependency is unavailable");
/// See [`RATE_LIMITED`].
const TOO_LARGE: (&str, &str) = ("413", "body over the limit");
/// The 401 of every HMAC-authenticated operation.
const HMAC_REFUSED: (&str, &str) = ("401", "HMAC authentication missing or refused");
/// The 403 of HMAC-authenticated operations that check nothing else.
const HMAC_FORBIDDEN: (&str, &str) = (
    "403",
    "token management disabled, or a client outside allowedIps",
);

/// A `$ref` to the component schema of `T`.
fn schema_ref<T: ToSchema>() -> Ref {
    Ref::from_schema_name(T::name())
}

/// A JSON response with the given body schema.
fn json_response(description: &str, schema: impl Into<RefOr<Schema>>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

/// An error response (SPEC A5); 429 and 503 also say when to come back.
fn error_response(status: &str, description: &str) -> Response {
    let response = json_response(description, schema_ref::<ApiErrorBody>());
    if !matches!(status, "429" | "503") {
        return response;
    }
    let retry_after = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some("seconds to wait"))
        .build();
    let mut response = response;
    response
        .headers
        .insert("Retry-After".to_owned(), retry_after);
    response
}

/// The success response and the documented errors of one operation.
fn responses(success_status: &str, success: Response, errors: &[(&str, &str)]) -> Responses {
    errors
        .iter()
        .fold(
            ResponsesBuilder::new().response(success_status, success),
            |builder, (status, description)| {
                builder.response(*status, error_response(status, description))
            },
        )
        .build()
}

/// The requirement of capabilities and derive.
fn identity() -> SecurityRequirement {
    SecurityRequirement::new(IDENTITY_SCHEME, Vec::<String>::new())
}

/// The requirement of list and revoke: the three `lmts-*` headers together.
fn hmac() -> SecurityRequirement {
    HMAC_SCHEMES.iter().fold(
        SecurityRequirement::default(),
        |requirement, (scheme, _)| requirement.add(*scheme, Vec::<String>::new()),
    )
}

/// `GET /auth/api-tokens/capabilities`.
fn capabilities() -> PathItem {
    let success = json_response(
        "what the partner may do",
        schema_ref::<PartnerCapabilities>(),
    );
    let operation = OperationBuilder::new()
        .operation_id(Some("getCapabilities"))
        .security(identity())
        .responses(responses(
            "200",
            success,
            &[
                ("401", "identity token missing or refused"),
                ("403", "no wallet to map to a profile"),
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Get, operation)
}

/// `POST /auth/api-tokens/derive`.
fn derive() -> PathItem {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::False))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref::<DeriveApiTokenInput>()))
                .build(),
        )
        .build();
    let success = json_response(
        "the new token; its secret is never shown again",
        schema_ref::<DeriveApiTokenResponse>(),
    );
    let idempotency_key = ParameterBuilder::new()
        .name(IDEMPOTENCY_KEY)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "the same key from the same partner within 24 hours answers the first derive again",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[!-~]{1,255}$")),
        ));
    let operation = OperationBuilder::new()
        .operation_id(Some("deriveToken"))
        .security(identity())
        .parameter(idempotency_key)
        .request_body(Some(body))
        .responses(responses(
            "201",
            success,
            &[
                ("400", "invalid body"),
                ("401", "identity token missing or refused"),
                (
                    "403",
                    "scope not allowed, token management disabled, or no wallet",
                ),
                (
                    "409",
                    "the partner holds the maximum of active tokens, or the idempotency key came with another body",
                ),
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Post, operation)
}

/// `GET /auth/api-tokens/self` (SPEC C2).
fn current() -> PathItem {
    let success = json_response("the calling token", schema_ref::<ApiToken>());
    let operation = OperationBuilder::new()
        .operation_id(Some("currentToken"))
        .security(hmac())
        .responses(responses(
            "200",
            success,
            &[
                HMAC_REFUSED,
                HMAC_FORBIDDEN,
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Get, operation)
}

/// `GET /auth/api-tokens/events` (SPEC C2).
fn events() -> PathItem {
    let query = |name: &str, schema: ObjectBuilder, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
    };
    let after = query(
        "after",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9]{1,18}$")),
        "the next of an earlier answer (default: from the first event)",
    );
    let limit = query(
        "limit",
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(500)),
        "at most this many events (default 100)",
    );
    let success = json_response(
        "the partner's events after the cursor, oldest first",
        schema_ref::<TokenEventPage>(),
    );
    let operation = OperationBuilder::new()
        .operation_id(Some("tokenEvents"))
        .security(hmac())
        .parameter(after)
        .parameter(limit)
        .responses(responses(
            "200",
            success,
            &[
                ("400", "a malformed cursor or limit"),
                HMAC_REFUSED,
                HMAC_FORBIDDEN,
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Get, operation)
}

/// `POST /auth/api-tokens/{tokenId}/rotate` (SPEC C2).
fn rotate() -> PathItem {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::False))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref::<RotateApiTokenInput>()))
                .build(),
        )
        .build();
    let success = json_response(
        "the successor; its secret is never shown again",
        schema_ref::<DeriveApiTokenResponse>(),
    );
    let operation = OperationBuilder::new()
        .operation_id(Some("rotateToken"))
        .security(hmac())
        .parameter(token_id_parameter())
        .request_body(Some(body))
        .responses(responses(
            "201",
            success,
            &[
                ("400", "invalid body"),
                HMAC_REFUSED,
                (
                    "403",
                    "token management disabled, a client outside allowedIps, a scope no longer allowed, or a token the caller does not cover",
                ),
                ("404", "no such live token of this partner"),
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Post, operation)
}

/// The `{tokenId}` of revoke and rotate.
fn token_id_parameter() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("tokenId")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        ))
}

/// `GET /auth/api-tokens`.
fn list() -> PathItem {
    let success = json_response(
        "the partner's live tokens",
        ArrayBuilder::new().items(schema_ref::<ApiToken>()),
    );
    let operation = OperationBuilder::new()
        .operation_id(Some("listTokens"))
        .security(hmac())
        .responses(responses(
            "200",
            success,
            &[
                HMAC_REFUSED,
                HMAC_FORBIDDEN,
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Get, operation)
}

/// `DELETE /auth/api-tokens/{tokenId}`.
fn revoke() -> PathItem {
    let success = json_response("revoked", schema_ref::<RevokeApiTokenResponse>());
    let operation = OperationBuilder::new()
        .operation_id(Some("revokeToken"))
        .security(hmac())
        .parameter(token_id_parameter())
        .responses(responses(
            "200",
            success,
            &[
                HMAC_REFUSED,
                HMAC_FORBIDDEN,
                ("404", "no such live token of this partner"),
                TOO_LARGE,
                RATE_LIMITED,
                UNAVAILABLE,
            ],
        ));
    PathItem::new(HttpMethod::Delete, operation)
}

/// `GET /health` (`with_database: false`) or `GET /ready` (`true`): `{"status": "..."}`.
fn probe(operation_id: &str, description: &str, with_database: bool) -> PathItem {
    let status = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("status", ObjectBuilder::new().schema_type(Type::String))
        .required("status");
    let errors: &[(&str, &str)] = if with_database {
        &[("503", "the database is unavailable")]
    } else {
        &[]
    };
    let operation = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .securities(Some(Vec::new()))
        .responses(responses("200", json_response(description, status), errors));
    PathItem::new(HttpMethod::Get, operation)
}

/// Every path the service documents.
fn paths() -> Paths {
    Paths::builder()
        .path("/auth/api-tokens/capabilities", capabilities())
        .path("/auth/api-tokens/derive", derive())
        .path("/auth/api-tokens", list())
        .path("/auth/api-tokens/self", current())
        .path("/auth/api-tokens/events", events())
        .path("/auth/api-tokens/{tokenId}", revoke())
        .path("/auth/api-tokens/{tokenId}/rotate", rotate())
        .path("/health", probe("health", "the process answers", false))
        .path("/ready", probe("ready", "the database answers", true))
        .build()
}

/// Adds the schema of `T` and of every type it refers to.
fn collect<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// The wire types' schemas and the security schemes.
fn components() -> Components {
    let mut schemas = Vec::new();
    collect::<PartnerCapabilities>(&mut schemas);
    collect::<DeriveApiTokenInput>(&mut schemas);
    collect::<DeriveApiTokenResponse>(&mut schemas);
    collect::<ApiToken>(&mut schemas);
    collect::<RevokeApiTokenResponse>(&mut schemas);
    collect::<RotateApiTokenInput>(&mut schemas);
    collect::<TokenEventPage>(&mut schemas);
    collect::<ApiErrorBody>(&mut schemas);
    let identity = ApiKeyValue::with_description("identity", "Bearer <Privy identity token>");
    let builder = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            IDENTITY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(identity)),
        );
    HMAC_SCHEMES
        .iter()
        .fold(builder, |builder, (scheme, header)| {
            builder.security_scheme(
                *scheme,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(*header))),
            )
        })
        .build()
}

/// The document, as utoipa's model.
pub fn api() -> OpenApi {
    let info = InfoBuilder::new()
        .title("lmts: Limitless Exchange scoped API tokens")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Partner self-service API tokens: capabilities, derive, list, revoke, and SPEC C2's rotation and introspection.",
        ))
        .build();
    OpenApiBuilder::new()
        .info(info)
        .paths(paths())
        .components(Some(components()))
        .build()
}

/// The document as JSON, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::to_value(api()).unwrap_or_else(|error| {
            // Cannot happen (every map key of the model is a string); answer `null` rather
            // than take the service down.
            tracing::error!(%error, "the OpenAPI document does not serialise");
            Value::Null
        })
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<&'static Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use lmts_core::{
        wire::{ErrorMessage, ProfileRef, MAX_LABEL_CHARS},
        Scope, TokenId, TokenSecret,
    };
    use serde_json::{json, Value};

    use super::*;

    fn schema(name: &str) -> &'static Value {
        &document()["components"]["schemas"][name]
    }

    /// Follows a `$ref` to its component.
    fn resolve(schema: &'static Value) -> &'static Value {
        match schema["$ref"].as_str() {
            Some(target) => self::schema(target.trim_start_matches("#/components/schemas/")),
            None => schema,
        }
    }

    /// Whether `value` fits the JSON type(s) `schema` names (types, `oneOf`, `enum`, arrays and
    /// objects, recursively): enough to catch a wire type and its schema drifting apart.
    fn fits(schema: &'static Value, value: &Value) -> bool {
        let schema = resolve(schema);
        if let Some(choices) = schema["oneOf"].as_array() {
            return choices.iter().any(|choice| fits(choice, value));
        }
        if let Some(allowed) = schema["enum"].as_array() {
            return allowed.contains(value);
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => panic!("schema without a type: {schema}"),
        };
        types.into_iter().any(|kind| match (kind, value) {
            ("null", Value::Null) | ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => {
                true
            }
            ("integer", Value::Number(number)) => number.is_i64() || number.is_u64(),
            ("array", Value::Array(items)) => items.iter().all(|item| fits(&schema["items"], item)),
            ("object", Value::Object(_)) => object_fits(schema, value),
            _ => false,
        })
    }

    /// An object fits when it has every required property and only documented ones, each fitting.
    fn object_fits(schema: &'static Value, value: &Value) -> bool {
        let (Some(properties), Some(fields)) =
            (schema["properties"].as_object(), value.as_object())
        else {
            return false;
        };
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        required
            .iter()
            .all(|name| fields.contains_key(name.as_str().unwrap_or_default()))
            && fields.iter().all(|(name, field)| {
                properties
                    .get(name)
                    .is_some_and(|property| fits(property, field))
            })
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn assert_fits<T: ToSchema + serde::Serialize>(value: &T) {
        let value = serde_json::to_value(value).unwrap();
        assert!(
            fits(schema(&T::name()), &value),
            "{} does not fit: {value}",
            T::name()
        );
    }

    #[test]
    fn what_serde_writes_fits_the_schemas() {
        let token = ApiToken {
            token_id: TokenId::new("tok_1"),
            label: None,
            scopes: Scope::KNOWN.to_vec(),
            created_at: at("2026-03-23T12:34:56.789Z"),
            expires_at: None,
            allowed_ips: Vec::new(),
            last_used_at: None,
        };
        assert_fits(&token);
        let blocks = vec![
            "203.0.113.0/24".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ];
        assert_fits(&ApiToken {
            label: Some("l".repeat(MAX_LABEL_CHARS)),
            expires_at: Some(at("2027-03-23T00:00:00Z")),
            allowed_ips: blocks.clone(),
            last_used_at: Some(at("2026-03-24T00:00:00Z")),
            ..token
        });
        assert_fits(&DeriveApiTokenResponse {
            api_key: TokenId::new("tok_1"),
            secret: TokenSecret::from_bytes(vec![7; TokenSecret::ISSUED_LEN]).unwrap(),
            token_id: TokenId::new("tok_1"),
            created_at: at("2026-03-23T12:34:56.789Z"),
            scopes: vec![Scope::Trading],
            expires_at: Some(at("2027-03-23T00:00:00Z")),
            allowed_ips: blocks.clone(),
            profile: ProfileRef {
                id: i64::from(i32::MAX),
                account: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            },
        });
        assert_fits(&PartnerCapabilities {
            partner_profile_id: 1,
            token_management_enabled: true,
            allowed_scopes: vec![Scope::Trading],
        });
        assert_fits(&RevokeApiTokenResponse {
            message: "revoked".into(),
        });
        for message in [
            ErrorMessage::One("no".into()),
            ErrorMessage::Many(vec!["a".into()]),
        ] {
            assert_fits(&ApiErrorBody {
                status_code: 400,
                message,
                error: "Bad Request".into(),
            });
        }
        assert_fits(&DeriveApiTokenInput::default());
        assert_fits(&DeriveApiTokenInput {
            label: Some("bot".into()),
            scopes: vec![Scope::Withdrawal],
            expires_at: Some(at("2027-03-23T00:00:00Z")),
            allowed_ips: blocks,
        });
    }

    #[test]
    fn the_schemas_state_the_limits_and_catch_drift() {
        let input = schema("DeriveApiTokenInput");
        assert!(fits(input, &json!({ "label": null, "scopes": null })));
        assert!(!fits(input, &json!({ "scopes": ["root"] })));
        assert!(!fits(input, &json!({ "label": 5 })));
        let token = json!({
            "tokenId": "tok_1", "label": null, "scopes": ["trading"],
            "createdAt": "2026-03-23T12:34:56.789Z", "expiresAt": null, "allowedIps": [],
            "lastUsedAt": null
        });
        assert!(fits(schema("ApiToken"), &token));
        for field in ["expiresAt", "allowedIps"] {
            let mut without = token.clone();
            without.as_object_mut().unwrap().remove(field);
            assert!(
                !fits(schema("ApiToken"), &without),
                "{field} is always answered"
            );
        }
        let mut missing = token.clone();
        missing.as_object_mut().unwrap().remove("lastUsedAt");
        assert!(!fits(schema("ApiToken"), &missing));
        let mut snake_case = missing;
        snake_case["last_used_at"] = Value::Null;
        assert!(!fits(schema("ApiToken"), &snake_case));
        for schema in [input, schema("ApiToken")] {
            assert_eq!(
                schema["properties"]["label"]["maxLength"],
                json!(MAX_LABEL_CHARS)
            );
        }
        let known: Vec<&str> = Scope::KNOWN.iter().map(Scope::as_str).collect();
        assert_eq!(schema("Scope")["enum"], json!(known));
        let capabilities = &schema("PartnerCapabilities")["properties"]["partnerProfileId"];
        assert_eq!(capabilities["maximum"], json!(i32::MAX));
        assert_eq!(
            resolve(&schema("DeriveApiTokenResponse")["properties"]["profile"])["properties"]["id"]
                ["maximum"],
            json!(i32::MAX)
        );
    }

    #[test]
    fn every_route_of_the_contract_is_described() {
        let paths = &document()["paths"];
        for (path, method, operation_id, security) in [
            (
                "/auth/api-tokens/capabilities",
                "get",
                "getCapabilities",
                json!([{ "identity": [] }]),
            ),
            (
                "/auth/api-tokens/derive",
                "post",
                "deriveToken",
                json!([{ "identity": [] }]),
            ),
            (
                "/auth/api-tokens",
                "get",
                "listTokens",
                json!([{ "lmtsApiKey": [], "lmtsTimestamp": [], "lmtsSignature": [] }]),
            ),
            (
                "/auth/api-tokens/{tokenId}",
                "delete",
                "revokeToken",
                json!([{ "lmtsApiKey": [], "lmtsTimestamp": [], "lmtsSignature": [] }]),
            ),
            ("/health", "get", "health", json!([])),
            ("/ready", "get", "ready", json!([])),
        ] {
            let operation = &paths[path][method];
            assert_eq!(operation["operationId"], operation_id, "{method} {path}");
            assert_eq!(operation["security"], security, "{method} {path}");
        }
        assert!(paths["/auth/api-tokens/derive"]["post"]["responses"]["201"].is_object());
        let derive_body = &paths["/auth/api-tokens/derive"]["post"]["requestBody"];
        assert_eq!(derive_body["required"], false);
        let parameter = &paths["/auth/api-tokens/{tokenId}"]["delete"]["parameters"][0];
        assert_eq!(
            (&parameter["name"], &parameter["in"]),
            (&json!("tokenId"), &json!("path"))
        );
        let schemes = &document()["components"]["securitySchemes"];
        assert_eq!(schemes["identity"]["name"], "identity");
        for (scheme, header) in HMAC_SCHEMES {
            assert_eq!(
                schemes[scheme],
                json!({ "type": "apiKey", "in": "header", "name": header })
            );
        }
    }

    #[test]
    fn every_error_has_the_error_body_and_429_503_say_when_to_retry() {
        let mut errors = 0;
        for item in document()["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('2') {
                        continue;
                    }
                    errors += 1;
                    let body = &response["content"]["application/json"]["schema"];
                    assert_eq!(body["$ref"], "#/components/schemas/Error", "{status}");
                    let retry = response["headers"].get("Retry-After").is_some();
                    assert_eq!(retry, matches!(status.as_str(), "429" | "503"), "{status}");
                }
            }
        }
        assert_eq!(errors, 4 + 7 + 5 + 5 + 6 + 6 + 7 + 1);
    }
}
