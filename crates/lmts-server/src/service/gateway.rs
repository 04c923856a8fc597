//! The front door of the APIs behind lmts (SPEC C1): what the route policy asks of a request,
//! whether the token that signed it holds that, and the headers that tell the upstream who
//! called. The three doors (`/ext-authz`, `/forward-auth` and the reverse proxy) all decide
//! here; reading bodies and talking to upstreams is the HTTP adapter's.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use lmts_core::{scope::join_scopes, Scope, TokenId};

use super::policy::path_of;
use crate::store::PartnerProfile;

use super::{
    policy::{Decision, RoutePolicy},
    ServiceError, VerifiedToken,
};

/// The header naming the token that signed the request.
pub const TOKEN_ID_HEADER: HeaderName = HeaderName::from_static("x-lmts-token-id");
/// The header carrying the caller's profile id (decimal).
pub const PROFILE_ID_HEADER: HeaderName = HeaderName::from_static("x-lmts-profile-id");
/// The header carrying the caller's account (EIP-55).
pub const ACCOUNT_HEADER: HeaderName = HeaderName::from_static("x-lmts-account");
/// The header carrying the token's scopes (comma separated, in the contract's order).
pub const SCOPES_HEADER: HeaderName = HeaderName::from_static("x-lmts-scopes");

/// The headers lmts sets for the upstream; any copy a client sent is removed first.
pub const GRANT_HEADERS: [HeaderName; 4] = [
    TOKEN_ID_HEADER,
    PROFILE_ID_HEADER,
    ACCOUNT_HEADER,
    SCOPES_HEADER,
];

/// The route policy applied: cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    policy: Arc<RoutePolicy>,
}

/// What a request must show to pass, as the policy decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage<'p> {
    /// Anyone: no signature is checked and no grant headers are set.
    Public,
    /// A valid signature by a token holding all of these scopes (none: any valid token).
    Signed(&'p [Scope]),
}

/// What passed: nothing to tell the upstream, or the token that signed.
#[derive(Debug, Clone)]
pub enum Grant {
    /// A public route.
    Public,
    /// A signed request whose token holds the route's scopes.
    Token(VerifiedToken),
}

impl Gateway {
    /// The gateway of `policy`.
    pub fn new(policy: RoutePolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// What `method` on `target` (path and query as received) must show; refused outright when
    /// no rule matches under `default = "deny"`, before any signature is looked at.
    pub fn passage(&self, method: &str, target: &str) -> Result<Passage<'_>, ServiceError> {
        check_canonical(method, target)?;
        match self.policy.decide(method, target) {
            Decision::Public { .. } => Ok(Passage::Public),
            Decision::Requires { scopes, .. } => Ok(Passage::Signed(scopes)),
            Decision::Deny => Err(ServiceError::Forbidden(format!(
                "no route rule allows {method} {}",
                path_of(target)
            ))),
        }
    }

    /// The grant of a verified `token` on a route that requires `scopes`: refused (403) when
    /// the token lacks one of them, naming what is missing.
    pub fn authorize(token: VerifiedToken, scopes: &[Scope]) -> Result<Grant, ServiceError> {
        let missing: Vec<&str> = scopes
            .iter()
            .filter(|scope| !token.scopes.contains(scope))
            .map(Scope::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(Grant::Token(token));
        }
        Err(ServiceError::Forbidden(format!(
            "this route requires scope(s) {} that the API token does not hold",
            missing.join(", ")
        )))
    }
}

impl Grant {
    /// Removes every grant header from `headers` (in any spelling, see [`is_grant_header`]),
    /// then sets this grant's: what the upstream reads is lmts's word, never the client's.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|name| is_grant_header(name))
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
        let Grant::Token(token) = self else {
            return;
        };
        let values = token
            .grant_values
            .get_or_init(|| Box::new(grant_values(&token.token_id, &token.profile, &token.scopes)));
        for (name, value) in GRANT_HEADERS.into_iter().zip(values.iter()) {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
    }
}

/// The values of [`GRANT_HEADERS`] for a token, made once per cached token rather than on
/// every request. Ids are URL-safe, accounts hexadecimal and scopes
/// known words: always valid header values; one that somehow is not is left out, not guessed.
fn grant_values(
    token_id: &TokenId,
    profile: &PartnerProfile,
    scopes: &[Scope],
) -> [Option<HeaderValue>; 4] {
    [
        token_id.as_str().to_owned(),
        profile.id.to_string(),
        profile.account.clone(),
        join_scopes(scopes),
    ]
    .map(|value| HeaderValue::try_from(value).ok())
}

/// `x-envoy-auth-headers-to-remove` on a public route: the grant headers in both spellings
/// (CGI-style servers read `x_lmts_account` as `x-lmts-account`).
pub const GRANT_HEADERS_BOTH_SPELLINGS: &str = "x-lmts-token-id,x_lmts_token_id,x-lmts-profile-id,x_lmts_profile_id,x-lmts-account,x_lmts_account,x-lmts-scopes,x_lmts_scopes";

/// Refuses a request an upstream could read as another route than the policy did: a method
/// not in upper case (the signature upper-cases it, the policy does not) or `CONNECT`; a target
/// not starting with `/` (absolute form, `*`); a path with empty or dot segments, `;`
/// parameters, backslashes, or percent-encoded characters that decoders turn back into
/// ordinary ones (unreserved characters, `/`, `\`).
fn check_canonical(method: &str, target: &str) -> Result<(), ServiceError> {
    if method.is_empty() || !method.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(ServiceError::invalid(
            "the method must be an upper-case HTTP method",
        ));
    }
    if method == "CONNECT" {
        return Err(ServiceError::invalid("CONNECT is not forwarded"));
    }
    let path = path_of(target);
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ServiceError::invalid(
            "the request target must start with /",
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let ambiguous = path.contains(['\\', ';'])
        || path.contains("//")
        || (!rest.is_empty()
            && rest
                .split('/')
                .any(|segment| matches!(segment, "" | "." | "..")))
        || encodes_an_ordinary_character(path);
    if ambiguous {
        return Err(ServiceError::invalid(
            "the request path is not in canonical form (empty or dot segments, ';', '\\', or a percent-encoded character that needs no encoding): send it as the API names it",
        ));
    }
    Ok(())
}

/// Whether `path` percent-encodes a character that needs no encoding, a separator (`/`, `\`,
/// `;`), a `%` (double encoding) or a control character: what some servers decode before they
/// route.
fn encodes_an_ordinary_character(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(at, byte)| {
        *byte == b'%'
            && bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|decoded| {
                    decoded.is_ascii_alphanumeric()
                        || decoded.is_ascii_control()
                        || b"-._~/\\;%".contains(&decoded)
                })
    })
}

/// Whether `name` is a grant header in any spelling a server could map to it: case aside,
/// `_` for `-` (CGI-style servers read `x_lmts_account` as `HTTP_X_LMTS_ACCOUNT`).
fn is_grant_header(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    name.len() > 7
        && name[..7]
            .iter()
            .zip(b"x-lmts-")
            .all(|(byte, wanted)| byte == wanted || *byte == b'_' && *wanted == b'-')
}
