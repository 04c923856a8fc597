//! The signer: one credential's keyed HMAC state, prepared once and cloned per request, that
//! signs a request into its three header values and verifies a received one (window first,
//! then the signature in constant time).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::Mac;

use super::{
    ascii_text,
    message::CanonicalMessage,
    signature::{macs_equal, Signature},
    timestamp::{check_signed_at, TimestampText},
    HmacSha256, VerifyError, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use crate::secret::{TokenSecret, REDACTED};

/// A signature that verified, and the time the request was signed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The decoded signature (what a replay record remembers).
    pub signature: Signature,
    /// The signing time in milliseconds since the epoch, rounded up when the timestamp was
    /// finer (so that a replay record kept until `signed_at + window` covers every replay).
    signed_at_ms: i64,
}

impl Verified {
    /// The request's signing time (see above), built only when asked for: most requests never
    /// need it.
    pub fn signed_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.signed_at_ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The three `lmts-*` header values of one signed request, without allocation: the token id
/// borrowed, the timestamp and the signature held inline as ASCII.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    api_key: &'a str,
    timestamp: TimestampText,
    signature: [u8; 44],
}

impl<'a> SignedHeaders<'a> {
    /// Value of `lmts-api-key`: the token id.
    pub fn api_key(&self) -> &'a str {
        self.api_key
    }

    /// Value of `lmts-timestamp`.
    pub fn timestamp(&self) -> &str {
        self.timestamp.as_str()
    }

    /// Value of `lmts-signature`.
    pub fn signature(&self) -> &str {
        ascii_text(&self.signature)
    }

    /// The headers as (name, value) pairs, ready to set on a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_API_KEY, self.api_key),
            (HEADER_TIMESTAMP, self.timestamp()),
            (HEADER_SIGNATURE, self.signature()),
        ]
    }
}

impl fmt::Debug for SignedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("api_key", &self.api_key)
            .field("timestamp", &self.timestamp())
            .field("signature", &self.signature())
            .finish()
    }
}

/// Signs and verifies requests with one credential's key, prepared once.
#[derive(Clone)]
pub struct Signer {
    keyed: HmacSha256,
}

impl Signer {
    /// Prepares the keyed HMAC state for `secret`.
    pub fn new(secret: &TokenSecret) -> Self {
        let keyed = <HmacSha256 as Mac>::new_from_slice(secret.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self { keyed }
    }

    /// The signature of `message`.
    pub fn sign(&self, message: &CanonicalMessage<'_>) -> Signature {
        let mut mac = self.keyed.clone();
        message.feed(&mut mac);
        Signature(mac.finalize().into_bytes().into())
    }

    /// Whether `signature` is the signature of `message`, compared in constant time.
    pub fn matches(&self, message: &CanonicalMessage<'_>, signature: &Signature) -> bool {
        let mut mac = self.keyed.clone();
        message.feed(&mut mac);
        macs_equal(&mac.finalize().into_bytes(), &signature.0)
    }

    /// The three headers for a request by `token_id` signed at `now`.
    pub fn sign_request<'a>(
        &self,
        token_id: &'a str,
        now: DateTime<Utc>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> SignedHeaders<'a> {
        let timestamp = TimestampText::new(now);
        let signature = self.sign(&CanonicalMessage::new(
            timestamp.as_str(),
            method,
            target,
            body,
        ));
        SignedHeaders {
            api_key: token_id,
            timestamp,
            signature: signature.base64(),
        }
    }

    /// Verifies a received request: its timestamp lies within `window` of `now` and
    /// `signature` (the header value) signs `message`.
    pub fn verify(
        &self,
        message: &CanonicalMessage<'_>,
        signature: &str,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> Result<Verified, VerifyError> {
        let signed_at_ms = check_signed_at(message.timestamp(), now, window)?;
        let signature = Signature::from_base64(signature)?;
        if self.matches(message, &signature) {
            Ok(Verified {
                signature,
                signed_at_ms,
            })
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signer").field(&REDACTED).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{check_window, parse_timestamp, DEFAULT_WINDOW};

    fn at(value: &str) -> DateTime<Utc> {
        parse_timestamp(value).unwrap()
    }

    #[test]
    fn verification_checks_the_window_exactly_on_either_timestamp_path() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        let nows = ["2026-03-23T12:00:00Z", "2026-03-23T12:00:00.0005Z"];
        let stamps = [
            "2026-03-23T12:00:30.000Z",
            "2026-03-23T12:00:30.001Z",
            "2026-03-23T11:59:30.000Z",
            "2026-03-23T11:59:29.999Z",
            "2026-03-23T12:00:30.0004Z",
            "2026-03-23T12:00:30.0006+00:00",
        ];
        for now in nows.map(at) {
            for stamp in stamps {
                let message = CanonicalMessage::new(stamp, "GET", "/x", b"");
                let signature = signer.sign(&message).to_base64();
                let verified = signer.verify(&message, &signature, now, DEFAULT_WINDOW);
                assert_eq!(
                    verified.map(drop),
                    check_window(at(stamp), now, DEFAULT_WINDOW),
                    "{stamp} at {now}"
                );
            }
        }
    }

    #[test]
    fn the_signing_time_is_rounded_up_to_the_millisecond() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        let now = at("2026-03-23T12:00:00Z");
        for (stamp, expected) in [
            ("2026-03-23T12:00:01.250Z", "2026-03-23T12:00:01.250Z"),
            ("2026-03-23T12:00:01.2501Z", "2026-03-23T12:00:01.251Z"),
            ("2026-03-23T14:00:01.25+02:00", "2026-03-23T12:00:01.250Z"),
        ] {
            let message = CanonicalMessage::new(stamp, "POST", "/x", b"{}");
            let signature = signer.sign(&message).to_base64();
            let verified = signer
                .verify(&message, &signature, now, DEFAULT_WINDOW)
                .unwrap();
            assert_eq!(verified.signed_at(), at(expected), "{stamp}");
        }
    }

    #[test]
    fn verify_checks_window_then_signature() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        let now = at("2026-03-30T12:00:10Z");
        let message = CanonicalMessage::new(
            "2026-03-30T12:00:00.000Z",
            "POST",
            "/orders",
            b"{\"foo\":\"bar\"}",
        );
        let good = "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=";
        assert!(signer.verify(&message, good, now, DEFAULT_WINDOW).is_ok());
        let tampered = CanonicalMessage::new(
            "2026-03-30T12:00:00.000Z",
            "POST",
            "/orders",
            b"{\"foo\":\"baz\"}",
        );
        assert_eq!(
            signer.verify(&tampered, good, now, DEFAULT_WINDOW),
            Err(VerifyError::BadSignature)
        );
        let late = at("2026-03-30T12:01:00Z");
        assert!(matches!(
            signer.verify(&message, good, late, DEFAULT_WINDOW),
            Err(VerifyError::OutsideWindow { .. })
        ));
    }

    #[test]
    fn signer_debug_is_redacted() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        assert_eq!(format!("{signer:?}"), "Signer(\"[redacted]\")");
    }
}
