//! Wallet addresses in their EIP-55 checksummed form.

use sha3::{Digest, Keccak256};

/// The EIP-55 form of a `0x`-prefixed 20-byte hex address in any case; `None` when `address`
/// is not one.
pub fn checksum_address(address: &str) -> Option<String> {
    let hex = address
        .strip_prefix("0x")
        .or_else(|| address.strip_prefix("0X"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::checksum_address;

    #[test]
    fn eip55_examples() {
        // The examples of EIP-55 itself.
        for expected in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(
                checksum_address(&expected.to_lowercase()).as_deref(),
                Some(expected)
            );
            assert_eq!(checksum_address(expected).as_deref(), Some(expected));
        }
    }

    #[test]
    fn non_addresses_are_refused() {
        for bad in [
            "",
            "0x",
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
            "0xZZAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ] {
            assert_eq!(checksum_address(bad), None, "{bad}");
        }
    }
}
