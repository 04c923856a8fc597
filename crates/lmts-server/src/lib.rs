//! The lmts API-token service: capabilities, derive, list and revoke (SPEC A1) over HTTP.
//!
//! The rules live in the domain layer, [`service`]: the [`TokenService`] (capabilities, derive,
//! list, revoke, partner settings) and its [`Verifier`] of signed requests, over a [`store`]
//! (SQLite or PostgreSQL). [`http`] adapts them to axum: [`app`] builds the router from a
//! service. [`server::Server`] prepares a data directory (database, master key, dev issuer
//! key), binds and serves with graceful shutdown. Partners prove who they are with a Privy
//! identity token ([`identity`]) and sign later requests with their token's HMAC key.
//!
//! [`Verifier`]: service::Verifier
//!
//! ```no_run
//! use lmts_server::server::{shutdown_signal, Server, ServerConfig};
//!
//! # async fn run() -> Result<(), lmts_server::server::ServeError> {
//! let mut config = ServerConfig::new("./lmts-data");
//! config.dev = true;
//! Server::bind(config).await?.run(shutdown_signal()).await
//! # }
//! ```

pub mod account;
pub mod backup;
pub mod clock;
pub mod connections;
pub mod crypto;
pub mod http;
pub mod identity;
pub mod keys;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use http::app;
pub use service::{ServiceSettings, TokenService};
