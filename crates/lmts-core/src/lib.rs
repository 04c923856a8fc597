//! The lmts wire contract, shared by the SDK, the server and the CLI.
//!
//! `lmts-core` holds what both ends of the wire must agree on, and nothing else: the
//! [`Scope`]s a token can carry, the JSON shapes of the API ([`wire`]), the secret newtypes
//! ([`secret`]) and HMAC request signing ([`signing`]). It never reads the clock: time is always
//! an argument. It does no IO either, unless the `files` feature (off by default) adds `files`,
//! the private-file helpers the server and the command line share. [`error_chain`] prints an
//! error with its causes, for both of them.
//!
//! Signing a request, as a client does:
//!
//! ```
//! use lmts_core::{signing::{CanonicalMessage, Signer}, TokenSecret};
//!
//! let secret = TokenSecret::from_base64("c3VwZXItc2VjcmV0LWtleQ==")?;
//! let signer = Signer::new(&secret);
//! let message = CanonicalMessage::new("2026-03-23T12:34:56.789Z", "GET", "/auth/api-tokens", b"");
//! assert_eq!(signer.sign(&message).to_base64(), "+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=");
//! # Ok::<(), lmts_core::secret::SecretError>(())
//! ```

pub mod addresses;
#[cfg(feature = "clock")]
pub mod clock;
pub mod credentials;
pub mod error_chain;
#[cfg(feature = "files")]
pub mod files;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod wire;

pub use credentials::HmacCredentials;
pub use scope::{
    Scope, SCOPE_ACCOUNT_CREATION, SCOPE_DELEGATED_SIGNING, SCOPE_TRADING, SCOPE_WITHDRAWAL,
};
pub use secret::TokenSecret;
pub use signing::{CanonicalMessage, Signature, SignedHeaders, Signer};
pub use wire::TokenId;
