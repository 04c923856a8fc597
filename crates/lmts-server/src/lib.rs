//! The lmts API-token service: capabilities, derive, list and revoke (SPEC A1) over HTTP.
//!
//! [`app`] builds the router from an [`AppState`]; [`server::Server`] prepares a data
//! directory (SQLite database, master key, dev issuer key), binds and serves with graceful
//! shutdown. Partners prove who they are with a Privy identity token ([`auth::identity`]) and
//! sign later requests with their token's HMAC key ([`auth::hmac`]).
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
pub mod auth;
pub mod clock;
pub mod crypto;
pub mod files;
pub mod http;
pub mod listing;
pub mod rate_limit;
pub mod server;
pub mod state;
pub mod store;
pub mod token_cache;
pub mod usage;

pub use http::app;
pub use state::{AppState, ServiceSettings};
