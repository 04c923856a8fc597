//! Who the client is behind a load balancer: the peer's address, unless the peer is a proxy
//! the operator trusts, in which case `X-Forwarded-For` is read from the right, past every
//! trusted hop, to the first address no trusted proxy vouches for.

use std::{net::IpAddr, str::FromStr};

use http::HeaderMap;
use ipnet::IpNet;
use lmts_core::addresses::{canonical_address, parse_block, BlockError};

/// The proxies whose `X-Forwarded-For` is believed (`--trusted-proxies`). Empty by default:
/// the client is the peer, whatever the headers say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `--trusted-proxies` entry that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct TrustedProxiesError(#[from] BlockError);

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// A comma-separated list of addresses and CIDR blocks.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| parse_block(entry).map_err(TrustedProxiesError::from))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical_address(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client of a request that arrived from `peer` with `headers`. A malformed entry
    /// stops the walk at the hop that wrote it: that hop is the client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical_address(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .rev();
        for hop in hops {
            match parse_hop(hop) {
                Some(address) if self.trusts(address) => client = address,
                Some(address) => return address,
                None => return client,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical_address(address));
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|address| canonical_address(address.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                value.parse().unwrap_or_else(|_| unreachable!()),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!())
    }

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies("10.0.0.0/8");
        let claims = headers(&["1.2.3.4"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &claims),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &claims),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let trusted = proxies("10.0.0.0/8, 192.168.1.1");
        // The client forged "6.6.6.6"; the first proxy appended the address it saw.
        let chain = headers(&["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(trusted.client(ip("10.1.2.3"), &chain), ip("198.51.100.7"));
    }

    #[test]
    fn ports_mapped_addresses_and_garbage_are_handled() {
        let trusted = proxies("127.0.0.1");
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["198.51.100.7:5000"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers(&["not-an-address"])),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn lists_parse_and_refuse_what_is_not_an_address() {
        let nets = |list: &[&str]| {
            list.iter()
                .map(|net| net.parse().unwrap_or_else(|_| unreachable!()))
                .collect()
        };
        assert_eq!(
            proxies("10.0.0.0/8, ::1"),
            TrustedProxies(nets(&["10.0.0.0/8", "::1/128"]))
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("nginx".parse::<TrustedProxies>().is_err());
        assert!(
            "::ffff:10.0.0.0/104".parse::<TrustedProxies>().is_err(),
            "a mapped block would never match: IPv4 is compared as IPv4"
        );
        assert_eq!(proxies(""), TrustedProxies::default());
    }
}
