//! Addresses, prefixes and protocols.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol a policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The Kubernetes spelling: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Parses the exact Kubernetes spelling (`TCP`, `UDP`, `SCTP`).
    pub fn parse_exact(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Parses any letter case (`tcp`, `Tcp`); the caller decides whether a
    /// non-canonical spelling deserves a warning.
    pub fn parse_any_case(s: &str) -> Option<Protocol> {
        Protocol::parse_exact(&s.to_ascii_uppercase())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an address/prefix-length pair")]
    Syntax(String),
    #[error("`{0}` has a prefix length beyond the address width")]
    PrefixLength(String),
}

/// An IP prefix in canonical form (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A prefix; host bits beyond `len` are cleared. `len` is clamped to the
    /// address width.
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        let max = Self::width_of(&addr);
        let len = len.min(max);
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(a), len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(a), len))),
        };
        Cidr { addr, len }
    }

    /// The prefix holding exactly one address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr::new(addr, Self::width_of(&addr))
    }

    fn width_of(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Address width: 32 or 128.
    pub fn width(&self) -> u8 {
        Self::width_of(&self.addr)
    }

    /// True if `ip` lies inside this prefix.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(*ip), self.len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(*ip), self.len) == u128::from(net)
            }
            _ => false,
        }
    }

    /// True if `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(&other.addr)
    }

    /// `self` minus `hole`, as disjoint prefixes (empty if `hole` covers
    /// `self`; `self` unchanged if they are disjoint).
    pub fn subtract(&self, hole: &Cidr) -> Vec<Cidr> {
        if hole.covers(self) {
            return Vec::new();
        }
        if !self.covers(hole) {
            return vec![*self];
        }
        // Walk down from self to hole; at each level keep the sibling half.
        let mut out = Vec::with_capacity(usize::from(hole.len - self.len));
        for len in self.len + 1..=hole.len {
            let on_path = Cidr::new(hole.addr, len);
            out.push(on_path.sibling());
        }
        out
    }

    /// The other half of this prefix's parent. Undefined for length 0
    /// (returns self).
    fn sibling(&self) -> Cidr {
        if self.len == 0 {
            return *self;
        }
        match self.addr {
            IpAddr::V4(a) => {
                let bit = 1u32 << (32 - u32::from(self.len));
                Cidr::new(IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ bit)), self.len)
            }
            IpAddr::V6(a) => {
                let bit = 1u128 << (128 - u32::from(self.len));
                Cidr::new(IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ bit)), self.len)
            }
        }
    }
}

fn mask_v4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask_v6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n` or `x::y/n`; host bits are cleared, as Kubernetes
    /// accepts `10.0.0.1/24` meaning `10.0.0.0/24`. A bare address is a host
    /// prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax(s.to_string()))?;
        let width = Self::width_of(&addr);
        let len = match len {
            Some(l) => l.parse::<u8>().map_err(|_| CidrError::Syntax(s.to_string()))?,
            None => width,
        };
        if len > width {
            return Err(CidrError::PrefixLength(s.to_string()));
        }
        Ok(Cidr::new(addr, len))
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Normalizes prefixes into a sorted list of disjoint prefixes, dropping
/// those covered by another. Adjacent siblings are merged.
pub fn normalize(mut prefixes: Vec<Cidr>) -> Vec<Cidr> {
    prefixes.sort_by_key(|a| (a.is_v6_key(), a.addr, a.len));
    let mut out: Vec<Cidr> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        if let Some(last) = out.last() {
            if last.covers(&p) {
                continue;
            }
        }
        out.push(p);
        // Merge siblings bottom-up.
        while out.len() >= 2 {
            let b = out[out.len() - 1];
            let a = out[out.len() - 2];
            if a.len == b.len && a.len > 0 && a.sibling() == b {
                out.pop();
                out.pop();
                out.push(Cidr::new(a.addr, a.len - 1));
            } else {
                break;
            }
        }
    }
    out
}

impl Cidr {
    fn is_v6_key(&self) -> bool {
        !self.is_v4()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parse_clears_host_bits_and_rejects_bad_lengths() {
        assert_eq!(c("10.0.0.1/24").to_string(), "10.0.0.0/24");
        assert_eq!(c("10.0.0.1").to_string(), "10.0.0.1/32");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert_eq!(c("fd00::1/64").to_string(), "fd00::/64");
    }

    #[test]
    fn subtract_yields_disjoint_cover_of_the_rest() {
        let rest = c("10.0.0.0/24").subtract(&c("10.0.0.128/25"));
        assert_eq!(rest, vec![c("10.0.0.0/25")]);
        let rest = c("10.0.0.0/24").subtract(&c("10.0.0.5/32"));
        assert_eq!(rest.len(), 8);
        let inside = |ip: &str| rest.iter().any(|p| p.contains(&ip.parse().unwrap()));
        assert!(!inside("10.0.0.5"));
        assert!(inside("10.0.0.4"));
        assert!(inside("10.0.0.6"));
        assert!(inside("10.0.0.255"));
        assert!(inside("10.0.0.0"));
        assert!(c("10.0.0.0/24").subtract(&c("10.0.0.0/16")).is_empty());
        assert_eq!(c("10.0.0.0/24").subtract(&c("10.1.0.0/16")), vec![c("10.0.0.0/24")]);
    }

    #[test]
    fn normalize_drops_covered_and_merges_siblings() {
        let n = normalize(vec![c("10.0.0.0/25"), c("10.0.0.128/25"), c("10.0.0.7/32")]);
        assert_eq!(n, vec![c("10.0.0.0/24")]);
        let n = normalize(vec![c("fd00::/64"), c("10.0.0.0/8"), c("10.1.0.0/16")]);
        assert_eq!(n, vec![c("10.0.0.0/8"), c("fd00::/64")]);
    }

    #[test]
    fn protocol_parsing() {
        assert_eq!(Protocol::parse_exact("TCP"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse_exact("tcp"), None);
        assert_eq!(Protocol::parse_any_case("sctp"), Some(Protocol::Sctp));
        assert_eq!(Protocol::parse_any_case("icmp"), None);
    }
}
