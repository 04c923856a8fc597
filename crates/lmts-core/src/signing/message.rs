//! The canonical message, the exact bytes a request signature covers, in its three renderings:
//! fed into a MAC piece by piece (what signing uses, nothing built in memory), as bytes, and as
//! text (`Display`). They must agree byte for byte; the tests check that they do.

use std::fmt;

use hmac::Mac;

use super::HmacSha256;

/// The exact bytes a request signature covers.
///
/// `Display` writes the message as it is signed (a body that is not UTF-8 is shown lossily;
/// signing always uses its raw bytes).
#[derive(Debug, Clone, Copy)]
pub struct CanonicalMessage<'a> {
    timestamp: &'a str,
    method: &'a str,
    target: &'a str,
    body: &'a [u8],
}

impl<'a> CanonicalMessage<'a> {
    /// A message for `method` on `target` (path and query as sent) with the body's raw bytes.
    pub fn new(timestamp: &'a str, method: &'a str, target: &'a str, body: &'a [u8]) -> Self {
        Self {
            timestamp,
            method,
            target,
            body,
        }
    }

    /// The signing time, as given.
    pub(super) fn timestamp(&self) -> &'a str {
        self.timestamp
    }

    /// Feeds the message into a MAC without building it in memory.
    pub(super) fn feed(&self, mac: &mut HmacSha256) {
        mac.update(self.timestamp.as_bytes());
        mac.update(b"\n");
        if self.method.bytes().any(|b| b.is_ascii_lowercase()) {
            mac.update(self.method.to_ascii_uppercase().as_bytes());
        } else {
            mac.update(self.method.as_bytes());
        }
        mac.update(b"\n");
        mac.update(self.target.as_bytes());
        mac.update(b"\n");
        mac.update(self.body);
    }

    /// The message as the bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(
            self.timestamp.len() + self.method.len() + self.target.len() + self.body.len() + 3,
        );
        bytes.extend_from_slice(self.timestamp.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(self.method.to_ascii_uppercase().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(self.target.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(self.body);
        bytes
    }
}

impl fmt::Display for CanonicalMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n{}\n{}\n{}",
            self.timestamp,
            self.method.to_ascii_uppercase(),
            self.target,
            String::from_utf8_lossy(self.body)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{signing::Signer, TokenSecret};

    #[test]
    fn large_and_small_messages_sign_alike() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        for size in [0usize, 400, 480, 481, 600, 5000] {
            let body = vec![b'y'; size];
            let message =
                CanonicalMessage::new("2026-03-30T12:00:00.000Z", "post", "/orders", &body);
            let mut reference = <HmacSha256 as Mac>::new_from_slice(b"secret").unwrap();
            reference.update(&message.to_bytes());
            let expected: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(signer.sign(&message).as_bytes(), &expected, "{size}");
        }
    }

    #[test]
    fn lower_case_methods_sign_as_upper_case() {
        let signer = Signer::new(&TokenSecret::from_base64("c2VjcmV0").unwrap());
        let lower = CanonicalMessage::new("t", "post", "/x", b"");
        let upper = CanonicalMessage::new("t", "POST", "/x", b"");
        assert_eq!(signer.sign(&lower), signer.sign(&upper));
        assert_eq!(lower.to_string(), "t\nPOST\n/x\n");
        assert_eq!(lower.to_bytes(), b"t\nPOST\n/x\n");
    }
}
