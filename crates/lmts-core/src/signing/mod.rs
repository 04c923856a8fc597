//! HMAC-SHA256 request signing (SPEC A4).
//!
//! A request is signed over its [`CanonicalMessage`]: `{timestamp}\n{METHOD}\n{target}\n{body}`,
//! where the target is the path with its query exactly as sent on the wire and the body is the
//! exact bytes sent. A [`Signer`] prepares the keyed HMAC state once per credential and clones
//! it for each request. Verification takes `now` and the window as arguments.

use chrono::TimeDelta;
use hmac::Hmac;
use sha2::Sha256;

// One concern a file: the message that is signed, the signature and its base64 text, the
// timestamp text and the window, and the signer that puts them together.
mod message;
mod signature;
mod signer;
mod timestamp;

pub use message::CanonicalMessage;
pub use signature::Signature;
pub use signer::{SignedHeaders, Signer, Verified};
pub use timestamp::{
    check_signed_at, check_window, format_timestamp, format_timestamp_into, parse_timestamp,
};

/// Header carrying the token id.
pub const HEADER_API_KEY: &str = "lmts-api-key";
/// Header carrying the signing time.
pub const HEADER_TIMESTAMP: &str = "lmts-timestamp";
/// Header carrying the base64 HMAC-SHA256 signature.
pub const HEADER_SIGNATURE: &str = "lmts-signature";
/// Header carrying the Privy identity token, as `Bearer <token>`.
pub const HEADER_IDENTITY: &str = "identity";
/// The default acceptance window, on either side of the server's clock.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::seconds(30);

/// The scheme's MAC.
type HmacSha256 = Hmac<Sha256>;

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The timestamp is not an RFC 3339 date-time.
    #[error("timestamp is not an RFC 3339 date-time")]
    MalformedTimestamp,
    /// The timestamp is further from the verifier's clock than the window allows.
    #[error(
        "timestamp is {skew_ms} ms away from server time, outside the window of {window_ms} ms"
    )]
    OutsideWindow {
        /// Signing time minus verifier time, in milliseconds.
        skew_ms: i64,
        /// The window, in milliseconds.
        window_ms: i64,
    },
    /// The signature is not standard base64 with padding of a 32-byte HMAC.
    #[error("signature is not standard base64 of an HMAC-SHA256")]
    MalformedSignature,
    /// The signature does not match the request.
    #[error("signature does not match the request")]
    BadSignature,
}

/// Bytes the signing modules wrote from ASCII tables and digits, as text (always valid UTF-8).
fn ascii_text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}
