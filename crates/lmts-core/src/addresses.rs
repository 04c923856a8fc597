//! Address blocks as the contract writes them: the `allowedIps` of a token (SPEC C2) and the
//! trusted proxies of a gateway, each an IPv4 or IPv6 CIDR block or a single address.

use std::net::IpAddr;

/// An address block: `ipnet`'s, which the wire types carry.
pub use ipnet::IpNet;

/// The most blocks a token's `allowedIps` may hold.
pub const MAX_ALLOWED_IPS: usize = 32;

/// Why a text is not an address block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Neither an address nor a CIDR block.
    #[error("{0:?} is not an IP address or CIDR block (e.g. 203.0.113.0/24, 2001:db8::/32 or 198.51.100.7)")]
    Malformed(String),
    /// An IPv4-mapped IPv6 block: clients are compared as IPv4, so it would never match.
    #[error("{0:?} is an IPv4-mapped IPv6 block; write it as IPv4")]
    Mapped(String),
}

/// Reads one block: a CIDR block (its host bits cleared: `203.0.113.7/24` is
/// `203.0.113.0/24`) or one address (`/32`, `/128`). Surrounding whitespace is ignored.
pub fn parse_block(text: &str) -> Result<IpNet, BlockError> {
    let trimmed = text.trim();
    let net = trimmed
        .parse::<IpNet>()
        .or_else(|_| trimmed.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| BlockError::Malformed(text.to_owned()))?;
    match net {
        IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() => {
            Err(BlockError::Mapped(text.to_owned()))
        }
        net => Ok(net.trunc()),
    }
}

/// An address as blocks are compared with it: an IPv4-mapped IPv6 address (a dual-stack
/// listener's view of an IPv4 client) as the IPv4 address it maps.
pub fn canonical_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `address` falls in one of `blocks`; an empty list allows every address.
pub fn allows(blocks: &[IpNet], address: IpAddr) -> bool {
    let address = canonical_address(address);
    blocks.is_empty() || blocks.iter().any(|block| block.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_read_canonically() {
        assert_eq!(
            parse_block(" 203.0.113.7/24 ").unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            parse_block("198.51.100.7").unwrap().to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            parse_block("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_block("::1").unwrap().to_string(), "::1/128");
        assert!(matches!(
            parse_block("::ffff:10.0.0.0/104"),
            Err(BlockError::Mapped(_))
        ));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "10.0.0.1:80",
            "1.2.3.4/-1",
        ] {
            assert!(
                matches!(parse_block(bad), Err(BlockError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_list_allows_all_and_mapped_clients_match_ipv4_blocks() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        let blocks = [parse_block("203.0.113.0/24").unwrap()];
        assert!(allows(&[], v4));
        assert!(allows(&blocks, v4));
        assert!(allows(&blocks, mapped));
        assert!(!allows(&blocks, "203.0.114.1".parse().unwrap()));
        assert!(!allows(&blocks, "2001:db8::1".parse().unwrap()));
    }
}
