//! Which address a request comes from (pure). The TCP peer, unless the peer is a trusted
//! proxy (`TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the right (the entry the
//! nearest proxy appended) and the first address that is not itself a trusted proxy is the
//! client. Entries further left were written by the client or by untrusted hops and could be
//! anything, so they are never believed.
//!
//! Limits count per *key*: an IPv4 address, or the /64 network of an IPv6 address (one
//! machine usually has a whole /64 and could otherwise take a fresh address per request).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

/// An address range: `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(net)), self.prefix, 32)
                    == mask(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), self.prefix, 128) == mask(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit number.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network =
            normalize(addr.parse::<IpAddr>().map_err(|_| {
                format!("{s:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8)")
            })?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {width}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `TRUSTED_PROXIES`: the ranges whose `X-Forwarded-For` is believed. Empty: none is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(ranges: Vec<Cidr>) -> Self {
        TrustedProxies(ranges)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.is_empty() {
            return normalize(peer);
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        choose_client(peer, &entries, |ip| self.contains(ip))
    }
}

/// The client among `peer` and the `X-Forwarded-For` entries (in header order, left to
/// right): walking from the peer leftwards through trusted hops, the first untrusted address.
/// An entry that is not an address stops the walk at the last trusted hop; if every hop is
/// trusted, the left-most one is the client.
pub fn choose_client(peer: IpAddr, entries: &[&str], trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let mut client = normalize(peer);
    for entry in entries.iter().rev() {
        if !trusted(client) {
            break;
        }
        match parse_forwarded(entry) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:5678`.
pub fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| normalize(ip.into()));
    }
    let (addr, port) = entry.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    s.parse::<u16>().is_ok()
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The key limits count under: the address for IPv4, its /64 network for IPv6.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match normalize(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!(
            " 127.0.0.1/32 ".parse::<Cidr>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "abc",
            "10.0.0.0/x",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_entries() {
        assert_eq!(parse_forwarded(" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_forwarded("1.2.3.4:8080"), Some(ip("1.2.3.4")));
        assert_eq!(parse_forwarded("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_forwarded("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(
            parse_forwarded("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_forwarded("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        for bad in [
            "",
            "unknown",
            "_hidden",
            "1.2.3.4:x",
            "[::1]x",
            "1.2.3.4:99999",
            "[1.2.3.4]",
        ] {
            assert_eq!(parse_forwarded(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = |ip: IpAddr| proxies(&["10.0.0.0/8", "127.0.0.1"]).contains(ip);
        let peer = ip("10.0.0.2");
        // The client's own claims on the left are never believed.
        assert_eq!(
            choose_client(peer, &["6.6.6.6", "203.0.113.9", "10.0.0.1"], trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            choose_client(peer, &["203.0.113.9"], trusted),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(choose_client(peer, &[], trusted), peer);
        // Every hop trusted: the left-most.
        assert_eq!(
            choose_client(peer, &["10.1.1.1", "10.0.0.1"], trusted),
            ip("10.1.1.1")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            choose_client(peer, &["1.1.1.1", "junk", "10.0.0.1"], trusted),
            ip("10.0.0.1")
        );
        // An untrusted peer's header is ignored entirely.
        assert_eq!(
            choose_client(ip("198.51.100.1"), &["1.2.3.4"], trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn headers_are_read_in_order_across_lines() {
        let p = proxies(&["127.0.0.1"]);
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 192.0.2.1"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.77"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.77"));
        assert_eq!(p.client_ip(ip("127.0.0.2"), &h), ip("127.0.0.2"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("::ffff:127.0.0.1"), &h),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(limit_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(limit_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }
}
