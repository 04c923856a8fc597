//! The signature and its header text: 32 bytes of HMAC-SHA256, written and read as the
//! 44 characters of padded standard base64 (RFC 4648) by a codec for exactly that form, and the
//! constant-time comparison of two MACs.

use std::fmt;

use subtle::ConstantTimeEq;

use super::{ascii_text, VerifyError};

/// An HMAC-SHA256 request signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub(super) [u8; 32]);

impl Signature {
    /// Decodes the `lmts-signature` header: standard base64 with padding of exactly 32 bytes
    /// (44 characters, the last one `=`), in canonical form.
    pub fn from_base64(encoded: &str) -> Result<Self, VerifyError> {
        decode_signature(encoded.as_bytes())
            .map(Self)
            .ok_or(VerifyError::MalformedSignature)
    }

    /// The header value: standard base64 with padding.
    pub fn to_base64(&self) -> String {
        ascii_text(&self.base64()).to_owned()
    }

    /// The header value's 44 ASCII bytes.
    pub(super) fn base64(&self) -> [u8; 44] {
        let char_of = |bits: u32| BASE64_ALPHABET[(bits & 0x3F) as usize];
        let mut encoded = [b'='; 44];
        let bytes = &self.0;
        for triple in 0..10 {
            let [a, b, c] = [0, 1, 2].map(|at| u32::from(bytes[3 * triple + at]));
            let bits = a << 16 | b << 8 | c;
            for (at, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                encoded[4 * triple + at] = char_of(bits >> shift);
            }
        }
        let bits = u32::from(bytes[30]) << 16 | u32::from(bytes[31]) << 8;
        encoded[40] = char_of(bits >> 18);
        encoded[41] = char_of(bits >> 12);
        encoded[42] = char_of(bits >> 6);
        encoded
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

/// The standard base64 alphabet (RFC 4648), by value.
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Values of the standard base64 alphabet; 0xFF for any other byte.
const BASE64_VALUES: [u8; 256] = {
    let mut table = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        table[BASE64_ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly 44 characters of padded standard base64 into 32 bytes, refusing any other
/// length, alphabet, padding or a non-canonical last character. (Signature verification is on
/// every request's path; this is a fraction of a general decoder's cost.)
fn decode_signature(encoded: &[u8]) -> Option<[u8; 32]> {
    let Some((quads, [c0, c1, c2, b'='])) = encoded.split_last_chunk::<4>() else {
        return None;
    };
    if quads.len() != 40 {
        return None;
    }
    let value = |byte: &u8| BASE64_VALUES[usize::from(*byte)];
    let mut bytes = [0u8; 32];
    let mut invalid = 0u8;
    for (quad, triple) in quads.chunks_exact(4).zip(bytes.chunks_exact_mut(3)) {
        let [a, b, c, d] = [
            value(&quad[0]),
            value(&quad[1]),
            value(&quad[2]),
            value(&quad[3]),
        ];
        invalid |= a | b | c | d;
        let bits = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        triple.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    // The last three characters carry 18 bits: two bytes, then two bits that must be zero in
    // canonical form.
    let [a, b, c] = [value(c0), value(c1), value(c2)];
    invalid |= a | b | c;
    if invalid & 0xC0 != 0 || c & 0b11 != 0 {
        return None;
    }
    let bits = u32::from(a) << 12 | u32::from(b) << 6 | u32::from(c);
    bytes[30] = (bits >> 10) as u8;
    bytes[31] = (bits >> 2) as u8;
    Some(bytes)
}

/// Whether two MACs are equal, in time that does not depend on where they differ: every byte
/// is compared, and only the folded difference meets a branch (through `subtle`'s barrier).
pub(super) fn macs_equal(a: &[u8], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && bool::from(difference.ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_must_be_padded_standard_base64_of_32_bytes() {
        let good = "+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=";
        assert!(Signature::from_base64(good).is_ok());
        for bad in [
            "+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs",
            "-hEey-b2RTdi7km3zB9tt-xQ2XYz_XI0DT2XxgGStJs=",
            " +hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=",
            "c2VjcmV0",
            "",
        ] {
            assert_eq!(
                Signature::from_base64(bad),
                Err(VerifyError::MalformedSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_signature_coder_agrees_with_the_base64_crate() {
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        for seed in 0u8..=255 {
            let bytes: [u8; 32] =
                std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let encoded = STANDARD.encode(bytes);
            assert_eq!(Signature(bytes).to_base64(), encoded);
            assert_eq!(
                decode_signature(encoded.as_bytes()),
                Some(bytes),
                "{encoded}"
            );
            // The last data character with its two spare bits set is not canonical.
            let mut tampered = encoded.into_bytes();
            let last = BASE64_VALUES[tampered[42] as usize];
            if last & 0b11 == 0 {
                tampered[42] = BASE64_ALPHABET[(last | 1) as usize];
                assert_eq!(decode_signature(&tampered), None);
            }
        }
        assert_eq!(
            decode_signature(b"+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs"),
            None
        );
        assert_eq!(
            decode_signature(b"+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=="),
            None
        );
        assert_eq!(
            decode_signature(b"+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGSt\0s="),
            None
        );
    }
}
