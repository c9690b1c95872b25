//! Names of the nftables objects the backend generates, and the text form of
//! addresses. Every object lives in the one table of the plugin.

use std::net::{Ipv4Addr, Ipv6Addr};

use palisade_plugin_sdk::types::Direction;

/// The regular chain holding the whole policy dispatch; every base chain
/// jumps to it. (Not `policy`: that is a keyword of nft's text syntax, and a
/// listing of the table must read back with `nft -f`.)
pub const DISPATCH: &str = "dispatch";

/// The base chains (hook names): forwarded traffic (pod to pod, pod to the
/// outside), traffic to the node itself, and traffic the node sends.
pub const BASE_CHAINS: [&str; 3] = ["forward", "input", "output"];

/// An address family of the rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    pub const BOTH: [Fam; 2] = [Fam::V4, Fam::V6];

    /// The payload protocol of the address (`ip` / `ip6`).
    pub fn payload(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }

    /// The nftables data type of an address.
    pub fn addr_type(self) -> &'static str {
        match self {
            Fam::V4 => "ipv4_addr",
            Fam::V6 => "ipv6_addr",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    }
}

/// Short form of a direction used in chain names and log prefixes.
pub fn dir_tag(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "in",
        Direction::Egress => "eg",
    }
}

/// The `AppliedState` key of a direction.
pub fn dir_key(d: Direction) -> u8 {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// The direction of an `AppliedState` key.
pub fn key_dir(k: u8) -> Direction {
    if k == 0 {
        Direction::Ingress
    } else {
        Direction::Egress
    }
}

/// The verdict map dispatching one direction of one family by endpoint
/// address: `ingress4` (keyed by destination), `egress6` (keyed by source)...
pub fn vmap(d: Direction, f: Fam) -> String {
    let dir = match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    format!("{dir}{}", f.suffix())
}

/// The nft set of one family of an address set: `s12_4`, `s12_6`.
pub fn set(id: u32, f: Fam) -> String {
    format!("s{id}_{}", f.suffix())
}

/// The chain of one tier of one endpoint policy: `e7_in_t0`. Tier 0 is the
/// entry the verdict map jumps to.
pub fn tier_chain(endpoint: u32, d: Direction, tier: usize) -> String {
    format!("e{endpoint}_{}_t{tier}", dir_tag(d))
}

/// An IPv4 address (host byte order) as text.
pub fn v4(addr: u32) -> String {
    Ipv4Addr::from(addr).to_string()
}

/// An IPv6 address as text.
pub fn v6(addr: u128) -> String {
    Ipv6Addr::from(addr).to_string()
}

/// The IPv6 address of two 64-bit halves.
pub fn v6_join(hi: u64, lo: u64) -> u128 {
    (u128::from(hi) << 64) | u128::from(lo)
}

/// Longest log prefix the kernel keeps (NF_LOG_PREFIXLEN minus the NUL).
const LOG_PREFIX_MAX: usize = 127;

/// The log prefix of a `log` rule: `palisade e7 in ns/name ingress[0]: `,
/// restricted to a safe character set and the kernel's length limit.
pub fn log_prefix(endpoint: u32, d: Direction, origin: Option<String>) -> String {
    let mut s = format!("palisade e{endpoint} {}", dir_tag(d));
    if let Some(o) = origin {
        s.push(' ');
        s.extend(o.chars().map(|c| {
            if c.is_ascii_alphanumeric() || "._-/[]:=,@ ".contains(c) {
                c
            } else {
                '_'
            }
        }));
    }
    s.truncate(LOG_PREFIX_MAX - 2);
    s.push_str(": ");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(tier_chain(7, Direction::Egress, 2), "e7_eg_t2");
        assert_eq!(set(3, Fam::V6), "s3_6");
        assert_eq!(vmap(Direction::Ingress, Fam::V4), "ingress4");
        assert_eq!(v4(0x0a00_0001), "10.0.0.1");
        assert_eq!(v6(v6_join(0x2001_0db8_0000_0000, 1)), "2001:db8::1");
    }

    #[test]
    fn log_prefix_is_sanitized_and_bounded() {
        let p = log_prefix(1, Direction::Ingress, Some("a\"b $x\n".repeat(40)));
        assert!(p.len() <= LOG_PREFIX_MAX);
        assert!(p.starts_with("palisade e1 in a_b _x_"));
        assert!(p.ends_with(": "));
        assert!(!p.contains('"') && !p.contains('$'));
    }
}
