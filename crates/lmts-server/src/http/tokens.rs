//! The four endpoints of the API-token lifecycle (SPEC A1).

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    Extension, Json,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use lmts_core::{
    scope::{canonical_scopes, check_scope_rules},
    wire::{
        DeriveApiTokenResponse, PartnerCapabilities, ProfileRef, RevokeApiTokenResponse,
        MAX_LABEL_CHARS,
    },
    Scope, TokenId, TokenSecret,
};
use serde_json::Value;

use super::{body::read_body, error::ApiError, extract::CallerProfile};
use crate::{
    auth::hmac::VerifiedToken,
    state::AppState,
    store::{Invalidation, NewToken, PartnerProfile, PartnerSettings, StoreError},
};

/// `GET /auth/api-tokens/capabilities`.
pub async fn capabilities(
    State(state): State<AppState>,
    CallerProfile(profile): CallerProfile,
) -> Result<Json<PartnerCapabilities>, ApiError> {
    let settings = state.partner_settings(&profile.account).await?;
    Ok(Json(PartnerCapabilities {
        partner_profile_id: profile.id,
        token_management_enabled: settings.token_management_enabled,
        allowed_scopes: settings.allowed_scopes.clone(),
    }))
}

/// A derive request that passed validation.
#[derive(Debug, PartialEq, Eq)]
struct DeriveRequest {
    label: Option<String>,
    scopes: Vec<Scope>,
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
fn parse_derive_body(bytes: &[u8]) -> Result<DeriveRequest, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeriveRequest {
            label: None,
            scopes: canonical_scopes([]),
        });
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::bad_request("request body must be a JSON object"))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    if let Err(error) = serde_json::from_slice::<UniqueKeys>(bytes) {
        return Err(ApiError::bad_request(error.to_string()));
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
        Err(ApiError::BadRequest(problems))
    }
}

fn require_token_management(settings: &PartnerSettings) -> Result<(), ApiError> {
    if settings.token_management_enabled {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "token management is disabled for this partner".into(),
        ))
    }
}

/// A fresh token id: `lmts_` and 144 random bits, URL-safe.
fn new_token_id(state: &AppState) -> Result<TokenId, ApiError> {
    let mut bytes = [0u8; 18];
    state.keyring.fill_random(&mut bytes)?;
    Ok(TokenId::new(format!(
        "lmts_{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// A fresh secret of 32 random bytes.
fn new_secret(state: &AppState) -> Result<TokenSecret, ApiError> {
    let mut bytes = vec![0u8; TokenSecret::ISSUED_LEN];
    state.keyring.fill_random(&mut bytes)?;
    TokenSecret::from_bytes(bytes).map_err(|_| ApiError::Internal)
}

/// `POST /auth/api-tokens/derive`: answers 201 with the secret, shown this once.
pub async fn derive(
    State(state): State<AppState>,
    CallerProfile(profile): CallerProfile,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DeriveApiTokenResponse>), ApiError> {
    let bytes = read_body(&headers, body, state.settings.max_body_bytes).await?;
    let request = parse_derive_body(&bytes)?;
    let settings = state.partner_settings(&profile.account).await?;
    require_token_management(&settings)?;
    let refused: Vec<&str> = request
        .scopes
        .iter()
        .filter(|scope| !settings.allowed_scopes.contains(scope))
        .map(Scope::as_str)
        .collect();
    if !refused.is_empty() {
        let allowed: Vec<&str> = settings.allowed_scopes.iter().map(Scope::as_str).collect();
        return Err(ApiError::Forbidden(format!(
            "scopes not allowed for this partner: {}; allowed scopes: {}",
            refused.join(", "),
            allowed.join(", ")
        )));
    }

    let token_id = new_token_id(&state)?;
    let secret = new_secret(&state)?;
    let created_at = state.clock.now();
    let token = NewToken {
        token_id: token_id.clone(),
        profile_id: profile.id,
        label: request.label,
        scopes: request.scopes,
        created_at,
        sealed: state.keyring.seal(token_id.as_str(), &secret)?,
    };
    match state
        .store
        .insert_token(&token, state.settings.max_active_tokens)
        .await
    {
        Ok(()) => {}
        Err(StoreError::LimitReached { limit }) => {
            return Err(ApiError::Conflict(format!(
                "this partner already holds the maximum of {limit} active tokens; revoke one first"
            )))
        }
        Err(other) => return Err(other.into()),
    }
    state.invalidate(Invalidation::Profile(profile.id));
    tracing::info!(token_id = %token_id, profile_id = profile.id, "derived API token");
    Ok((
        StatusCode::CREATED,
        Json(DeriveApiTokenResponse {
            api_key: token_id.clone(),
            secret,
            token_id,
            created_at,
            scopes: token.scopes,
            profile: profile_ref(&profile),
        }),
    ))
}

fn profile_ref(profile: &PartnerProfile) -> ProfileRef {
    ProfileRef {
        id: profile.id,
        account: profile.account.clone(),
    }
}

/// `GET /auth/api-tokens`: the caller's live tokens, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<VerifiedToken>,
) -> Result<impl IntoResponse, ApiError> {
    let settings = state.partner_settings(&caller.profile.account).await?;
    require_token_management(&settings)?;
    let listing = state.token_listing(caller.profile.id).await?;
    let body = listing.render(|token_id| state.usage.latest(token_id));
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `DELETE /auth/api-tokens/{tokenId}`: revokes a live token of the caller's partner. An
/// unknown id, another partner's token and a revoked one get the same 404 (SPEC B2).
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<VerifiedToken>,
    token_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RevokeApiTokenResponse>, ApiError> {
    let settings = state
        .store
        .partner_settings(&caller.profile.account)
        .await?;
    require_token_management(&settings)?;
    let not_found = || ApiError::NotFound("API token not found".into());
    let Ok(Path(token_id)) = token_id else {
        return Err(not_found());
    };
    let now = state.clock.now();
    if !state
        .store
        .revoke_token(caller.profile.id, &token_id, now)
        .await?
    {
        return Err(not_found());
    }
    let token_id = TokenId::new(token_id);
    state.invalidate(Invalidation::Token(token_id.clone()));
    state.invalidate(Invalidation::Profile(caller.profile.id));
    tracing::info!(token_id = %token_id, by = %caller.token_id, "revoked API token");
    Ok(Json(RevokeApiTokenResponse {
        message: "API token revoked".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(body: &str) -> Vec<String> {
        match parse_derive_body(body.as_bytes()) {
            Err(ApiError::BadRequest(problems)) => problems,
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
