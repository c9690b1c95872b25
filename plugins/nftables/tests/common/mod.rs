//! Rule-set builders shared by the tests.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use palisade_plugin_sdk::types::{
    Action, AddressSet, Delta, Direction, Endpoint, EndpointPolicy, NoMatch, Origin, Peer,
    PortRange, PortSpan, Protocol, Rule, RuleSet, Tier, V4Prefix, V6Prefix,
};
use palisade_plugin_sdk::AppliedState;

pub fn ip4(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

pub fn ip6(s: &str, len: u8) -> V6Prefix {
    let a = u128::from(s.parse::<Ipv6Addr>().unwrap());
    V6Prefix { hi: (a >> 64) as u64, lo: a as u64, len }
}

pub fn p4(s: &str, len: u8) -> V4Prefix {
    V4Prefix { addr: ip4(s), len }
}

pub fn endpoint(id: u32, v4: &[&str], v6: &[&str]) -> Endpoint {
    Endpoint {
        id,
        name: format!("ns/pod{id}"),
        v4: v4.iter().map(|a| ip4(a)).collect(),
        v6: v6.iter().map(|a| ip6(a, 128)).collect(),
    }
}

pub fn set(id: u32, v4: &[(&str, u8)], v6: &[(&str, u8)]) -> AddressSet {
    AddressSet {
        id,
        v4: v4.iter().map(|&(a, l)| p4(a, l)).collect(),
        v6: v6.iter().map(|&(a, l)| ip6(a, l)).collect(),
    }
}

/// A rule for [`policy`]: action, peer, port ranges (empty: every port).
pub struct R(pub Action, pub Peer, pub Vec<(Protocol, u16, u16)>);

/// An endpoint policy from tiers of rules, building its port table.
pub fn policy(
    endpoint: u32,
    direction: Direction,
    tiers: Vec<(Vec<R>, NoMatch)>,
) -> EndpointPolicy {
    let mut ports = Vec::new();
    let mut out = Vec::new();
    for (rules, no_match) in tiers {
        let rules = rules
            .into_iter()
            .map(|R(action, peer, pr)| {
                let first = ports.len() as u32;
                ports.extend(pr.iter().map(|&(protocol, first, last)| PortRange {
                    protocol,
                    first,
                    last,
                }));
                Rule { action, peer, ports: PortSpan { first, count: pr.len() as u32 }, origin: 0 }
            })
            .collect();
        out.push(Tier { rules, no_match });
    }
    EndpointPolicy { endpoint, direction, tiers: out, ports }
}

pub fn origin() -> Origin {
    Origin {
        id: 0,
        kind: "networking.k8s.io/v1 NetworkPolicy".into(),
        namespace: "ns".into(),
        name: "web \"x\"".into(),
        rule: "ingress[0]".into(),
    }
}

/// The rule sets of the tests:
/// - e1 (10.0.0.1, fd00::1): isolated ingress, allow from set 1 on tcp 80 and
///   8000-8010 and udp 53, log from anyone on sctp 9999 then deny;
/// - e2 (10.0.0.2): egress tier 0 pass to set 2, deny tcp 22 to anyone, next
///   tier; tier 1 allow to set 1 on tcp 443 and sctp 5000, else deny;
/// - e3 (fd00::3, 10.0.0.3): ingress allow from set 3 (IPv6) on udp, deny;
/// - e4 (10.0.0.4): no policy.
pub fn rule_set() -> RuleSet {
    use Action::*;
    use Protocol::*;
    RuleSet {
        generation: 1,
        endpoints: vec![
            endpoint(1, &["10.0.0.1"], &["fd00::1"]),
            endpoint(2, &["10.0.0.2"], &[]),
            endpoint(3, &["10.0.0.3"], &["fd00::3"]),
            endpoint(4, &["10.0.0.4"], &[]),
        ],
        sets: vec![
            set(1, &[("10.0.0.0", 29), ("192.168.0.0", 16)], &[("fd00::", 64)]),
            set(2, &[("10.0.0.4", 32)], &[]),
            set(3, &[], &[("fd00::1", 128), ("2001:db8::", 32)]),
        ],
        policies: vec![
            policy(
                1,
                Direction::Ingress,
                vec![(
                    vec![
                        R(
                            Allow,
                            Peer::Set(1),
                            vec![(Tcp, 80, 80), (Tcp, 8000, 8010), (Udp, 53, 53)],
                        ),
                        R(Log, Peer::Any, vec![(Sctp, 9999, 9999)]),
                    ],
                    NoMatch::Deny,
                )],
            ),
            policy(
                2,
                Direction::Egress,
                vec![
                    (
                        vec![
                            R(Pass, Peer::Set(2), vec![]),
                            R(Deny, Peer::Any, vec![(Tcp, 22, 22)]),
                        ],
                        NoMatch::NextTier,
                    ),
                    (
                        vec![R(Allow, Peer::Set(1), vec![(Tcp, 443, 443), (Sctp, 5000, 5000)])],
                        NoMatch::Deny,
                    ),
                ],
            ),
            policy(
                3,
                Direction::Ingress,
                vec![(
                    vec![
                        R(Log, Peer::Set(1), vec![]),
                        R(Allow, Peer::Set(3), vec![(Udp, 1, 65535)]),
                    ],
                    NoMatch::Deny,
                )],
            ),
        ],
        origins: vec![origin()],
    }
}

pub fn state(rs: RuleSet) -> AppliedState {
    let mut s = AppliedState::default();
    s.apply(rs);
    s
}

pub fn empty_delta(base: u64) -> Delta {
    Delta {
        base,
        generation: base + 1,
        origins_added: vec![],
        sets_added: vec![],
        sets_changed: vec![],
        sets_removed: vec![],
        endpoints_upserted: vec![],
        endpoints_removed: vec![],
        policies_upserted: vec![],
        policies_removed: vec![],
    }
}

/// 200 endpoints with ingress and egress policies of 2 tiers x 25 rules
/// (10,000 rules), peers drawn from 1,000 address sets.
pub fn big_rule_set() -> RuleSet {
    use Action::*;
    let mut rs = rule_set();
    rs.endpoints = (1..=200)
        .map(|i| {
            endpoint(
                i,
                &[&format!("10.1.{}.{}", i / 250, i % 250 + 1)],
                &[&format!("fd00::1:{i:x}")],
            )
        })
        .collect();
    rs.sets = (1..=1000)
        .map(|i| {
            let (a, b) = (i / 250, i % 250);
            set(
                i,
                &[(&format!("10.{}.{b}.0", 100 + a), 24), (&format!("172.{}.{b}.7", 16 + a), 32)],
                &[(&format!("fd{a:02x}:{b:x}::"), 64)],
            )
        })
        .collect();
    rs.policies = (1..=200u32)
        .flat_map(|ep| {
            [Direction::Ingress, Direction::Egress].map(|dir| {
                let rule = |j: u32| {
                    let ports = vec![
                        (Protocol::Tcp, 80 + j as u16, 80 + j as u16),
                        (Protocol::Tcp, 8000, 8100),
                        (Protocol::Udp, 53, 53),
                    ];
                    R(
                        if j % 5 == 4 { Deny } else { Allow },
                        Peer::Set((ep * 7 + j) % 1000 + 1),
                        ports,
                    )
                };
                policy(
                    ep,
                    dir,
                    vec![
                        ((0..25).map(rule).collect(), NoMatch::NextTier),
                        ((25..50).map(rule).collect(), NoMatch::Deny),
                    ],
                )
            })
        })
        .take(200)
        .collect();
    rs
}
