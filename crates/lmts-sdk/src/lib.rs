//! Rust client for the Limitless Exchange scoped API-token service, and for any service behind
//! lmts that takes its signed requests.
//!
//! A partner proves who they are with a Privy identity token, checks what they may do, derives
//! a scoped HMAC token (its secret shown once), signs every later request with it, lists its
//! live tokens and revokes them. The flow of the published TypeScript and Python SDKs, in Rust,
//! and then a signed request to another path:
//!
//! ```no_run
//! use lmts_sdk::{Client, DeriveApiTokenInput, Scope};
//!
//! # async fn run(identity_token: String) -> Result<(), lmts_sdk::Error> {
//! let client = Client::new("http://127.0.0.1:8080")?; // default: https://api.limitless.exchange
//! let caps = client.api_tokens().get_capabilities(&identity_token).await?;
//! println!("{} {:?}", caps.token_management_enabled, caps.allowed_scopes);
//!
//! let derived = client
//!     .api_tokens()
//!     .derive_token(&identity_token, DeriveApiTokenInput {
//!         label: Some("production-bot".into()),
//!         scopes: vec![Scope::Trading, Scope::AccountCreation, Scope::DelegatedSigning],
//!         expires_at: Some(chrono::Utc::now() + chrono::TimeDelta::days(90)),
//!         ..Default::default()
//!     })
//!     .await?; // derived.secret is a TokenSecret: redacted in Debug, zeroized on drop
//!
//! let scoped = client.with_credentials(derived.credentials()); // shares the connection pool
//! for t in scoped.api_tokens().list_tokens().await? {
//!     println!("{} {:?} {:?} {:?}", t.token_id, t.label, t.scopes, t.last_used_at);
//! }
//!
//! // Any path, signed over the exact target and body bytes sent: an order API behind lmts.
//! let order = serde_json::json!({ "market": "btc", "side": "buy", "size": 1 });
//! let answer = scoped.post("/orders").json(&order).send().await?; // Ok whatever the status
//! println!("{} {}", answer.status(), answer.text());
//! let placed: serde_json::Value = answer.error_for_status()?.json()?; // non-2xx: Error::Api
//! # let _ = placed;
//!
//! let message = scoped.api_tokens().revoke_token(&derived.token_id).await?;
//! # let _ = message;
//! # Ok(())
//! # }
//! ```
//!
//! Beyond the published SDKs: input is checked before any request; errors say how far the
//! request got and keep the status, messages, raw body and `Retry-After`; retries back off
//! with jitter and never repeat a request that may have taken effect (a derive, a revoke, any
//! state-changing [`Client::request`]); a timestamp refused for clock skew teaches the client
//! the server's clock from its `Date` header; every call has a `*_with_response` twin exposing
//! status and headers. The token endpoints and [`Client::request`] share one path: build,
//! sign each attempt afresh, send, classify, retry. Redirects are not followed (a signed
//! request is answered to the caller, never re-sent elsewhere).
//!
//! For another HTTP client: [`signing`] computes the three `lmts-*` headers, and with the
//! `middleware` feature `HmacSigning` signs every request of a
//! `reqwest_middleware::ClientWithMiddleware`.

mod api_tokens;
mod client;
pub mod clock;
mod error;
#[cfg(feature = "middleware")]
mod middleware;
mod request;
mod response;
mod retry;

pub use api_tokens::ApiTokens;
pub use bytes::Bytes;
pub use client::{
    root_certificates, Client, ClientBuilder, DEFAULT_BASE_URL, ENV_API_URL, ENV_TOKEN_ID,
    ENV_TOKEN_SECRET,
};
pub use error::{ApiError, Error};
pub use lmts_core::{
    addresses::IpNet,
    signing,
    wire::{
        ApiToken, DeriveApiTokenInput, DeriveApiTokenResponse, PartnerCapabilities, ProfileRef,
        RotateApiTokenInput, TokenEvent, TokenEventPage, TokenEventType,
    },
    HmacCredentials, Scope, TokenId, TokenSecret, SCOPE_ACCOUNT_CREATION, SCOPE_DELEGATED_SIGNING,
    SCOPE_TRADING, SCOPE_WITHDRAWAL,
};
#[cfg(feature = "middleware")]
pub use middleware::HmacSigning;
pub use request::RequestBuilder;
pub use reqwest::{header, Method, StatusCode};
pub use response::{ApiResponse, SignedResponse};
pub use retry::RetryPolicy;
