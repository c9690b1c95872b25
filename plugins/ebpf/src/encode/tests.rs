#![allow(clippy::unwrap_used)]

use super::*;
use palisade_plugin_sdk::types::{PortRange, PortSpan, Rule, Tier, V4Prefix};

/// What the kernel does with the maps: longest prefix in `peers`, then in
/// `ports`, else the class's default; no entry: no policy (allow).
fn lookup(e: &Encoded, ep: u32, dir: u8, addr: u32, proto: u8, port: u16) -> u32 {
    let peer = (0..=32u8).rev().find_map(|len| e.peers.get(&peer_key(ep, dir, addr, len)));
    let Some(v) = peer else { return VERDICT_ALLOW };
    let class = u32::from_le_bytes(v[0..4].try_into().unwrap());
    let default = u32::from_le_bytes(v[4..8].try_into().unwrap());
    (0..=16u8)
        .rev()
        .find_map(|bits| e.ports.get(&port_key(ep, class, dir, proto, port, bits)))
        .map(|v| u32::from_le_bytes(*v))
        .unwrap_or(default)
}

/// The tier walk written out directly over the rules (as the reference
/// evaluator does it), for comparison.
fn reference(
    p: &EndpointPolicy,
    sets: &BTreeMap<u32, AddressSet>,
    addr: u32,
    proto: u8,
    port: u16,
) -> u32 {
    for tier in &p.tiers {
        let mut passed = false;
        let mut decided = None;
        for rule in &tier.rules {
            let peer = match rule.peer {
                Peer::Any => true,
                Peer::Set(id) => sets.get(&id).is_some_and(|s| {
                    s.v4.iter().any(|q| addr & mask(q.len) == q.addr & mask(q.len))
                }),
            };
            let ports = rule.ports.count == 0
                || rule_ports(p, rule).iter().any(|r| {
                    protocol_number(r.protocol) == proto && r.first <= port && port <= r.last
                });
            if !peer || !ports {
                continue;
            }
            match rule.action {
                Action::Log => {}
                Action::Pass => {
                    passed = true;
                    break;
                }
                Action::Allow => {
                    decided = Some(VERDICT_ALLOW);
                    break;
                }
                Action::Deny => {
                    decided = Some(VERDICT_DENY);
                    break;
                }
            }
        }
        if let Some(v) = decided {
            return v;
        }
        if !passed && tier.no_match == NoMatch::Deny {
            return VERDICT_DENY;
        }
    }
    VERDICT_ALLOW
}

fn set(id: u32, prefixes: &[(u32, u8)]) -> AddressSet {
    AddressSet {
        id,
        v4: prefixes.iter().map(|&(addr, len)| V4Prefix { addr, len }).collect(),
        v6: Vec::new(),
    }
}

fn rule(action: Action, peer: Peer, first: u32, count: u32) -> Rule {
    Rule { action, peer, ports: PortSpan { first, count }, origin: 0 }
}

#[test]
fn port_blocks_cover_exactly_the_range() {
    assert_eq!(port_blocks(80, 80), vec![(80, 16)]);
    assert_eq!(port_blocks(0, 65_535), vec![(0, 0)]);
    assert_eq!(port_blocks(1, 65_535).len(), 16);
    assert_eq!(port_blocks(8000, 8003), vec![(8000, 14)]);
    assert_eq!(port_blocks(8000, 8004), vec![(8000, 14), (8004, 16)]);
}

#[test]
fn an_except_allows_the_cidr_but_not_the_hole() {
    // ipBlock 10.0.0.0/8 except 10.1.0.0/16, as disjoint prefixes; port 80/TCP.
    let holed: Vec<(u32, u8)> = vec![
        (0x0a00_0000, 16),
        (0x0a02_0000, 15),
        (0x0a04_0000, 14),
        (0x0a08_0000, 13),
        (0x0a10_0000, 12),
        (0x0a20_0000, 11),
        (0x0a40_0000, 10),
        (0x0a80_0000, 9),
    ];
    let sets = BTreeMap::from([(1, set(1, &holed))]);
    let p = EndpointPolicy {
        endpoint: 7,
        direction: Direction::Ingress,
        tiers: vec![Tier {
            rules: vec![rule(Action::Allow, Peer::Set(1), 0, 1)],
            no_match: NoMatch::Deny,
        }],
        ports: vec![PortRange { protocol: Protocol::Tcp, first: 80, last: 80 }],
    };
    let e = encode(&p, &sets, None);
    assert_eq!(lookup(&e, 7, 0, 0x0a00_0001, 6, 80), VERDICT_ALLOW);
    assert_eq!(lookup(&e, 7, 0, 0x0a01_0001, 6, 80), VERDICT_DENY);
    assert_eq!(lookup(&e, 7, 0, 0x0a00_0001, 6, 81), VERDICT_DENY);
    assert_eq!(lookup(&e, 7, 0, 0x0a00_0001, 17, 80), VERDICT_DENY);
    assert_eq!(lookup(&e, 7, 0, 0x0b00_0001, 6, 80), VERDICT_DENY);
    // Another endpoint or direction has no policy here.
    assert_eq!(lookup(&e, 8, 0, 0x0a00_0001, 6, 81), VERDICT_ALLOW);
    assert_eq!(lookup(&e, 7, 1, 0x0a00_0001, 6, 81), VERDICT_ALLOW);
}

#[test]
fn pass_skips_to_the_next_tier_and_ranges_overlap() {
    // Tier 0: pass 10.0.0.0/24 on 1000-2000/TCP, deny any on 1500-1600/TCP,
    // no match: next tier. Tier 1: allow any on every port except... deny
    // 10.0.0.5 on everything, allow 1-65535/TCP, no match: deny.
    let sets =
        BTreeMap::from([(1, set(1, &[(0x0a00_0000, 24)])), (2, set(2, &[(0x0a00_0005, 32)]))]);
    let p = EndpointPolicy {
        endpoint: 1,
        direction: Direction::Egress,
        tiers: vec![
            Tier {
                rules: vec![
                    rule(Action::Log, Peer::Any, 0, 0),
                    rule(Action::Pass, Peer::Set(1), 0, 1),
                    rule(Action::Deny, Peer::Any, 1, 1),
                ],
                no_match: NoMatch::NextTier,
            },
            Tier {
                rules: vec![
                    rule(Action::Deny, Peer::Set(2), 0, 0),
                    rule(Action::Allow, Peer::Any, 2, 1),
                ],
                no_match: NoMatch::Deny,
            },
        ],
        ports: vec![
            PortRange { protocol: Protocol::Tcp, first: 1000, last: 2000 },
            PortRange { protocol: Protocol::Tcp, first: 1500, last: 1600 },
            PortRange { protocol: Protocol::Tcp, first: 1, last: 65_535 },
        ],
    };
    let e = encode(&p, &sets, None);
    let cases = [
        (0x0a00_0001, 1550, VERDICT_ALLOW), // passed, then allowed in tier 1
        (0x0b00_0001, 1550, VERDICT_DENY),  // not passed: denied in tier 0
        (0x0a00_0005, 1550, VERDICT_DENY),  // passed, then denied in tier 1
        (0x0b00_0001, 80, VERDICT_ALLOW),
    ];
    for (addr, port, want) in cases {
        assert_eq!(lookup(&e, 1, 1, addr, 6, port), want, "{addr:#x}:{port}");
    }
    assert_eq!(lookup(&e, 1, 1, 0x0b00_0001, 17, 53), VERDICT_DENY);
}

#[test]
fn random_policies_give_the_tier_walk_verdicts() {
    let mut seed: u64 = 0x5eed;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for _ in 0..200 {
        let mut sets = BTreeMap::new();
        for id in 0..4u32 {
            let prefixes: Vec<(u32, u8)> = (0..1 + rnd(3))
                .map(|_| {
                    let len = [8u8, 16, 24, 30, 32][rnd(5) as usize];
                    let addr =
                        0x0a00_0000 | (rnd(4) as u32) << 16 | (rnd(4) as u32) << 8 | rnd(8) as u32;
                    (addr & mask(len), len)
                })
                .collect();
            sets.insert(id, set(id, &prefixes));
        }
        let ports: Vec<PortRange> = (0..6)
            .map(|_| {
                let first = 1 + rnd(40) as u16;
                PortRange {
                    protocol: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][rnd(3) as usize],
                    first,
                    last: first + rnd(10) as u16,
                }
            })
            .collect();
        let tiers = (0..1 + rnd(3))
            .map(|_| Tier {
                rules: (0..rnd(5))
                    .map(|_| {
                        let action = [Action::Allow, Action::Deny, Action::Pass, Action::Log]
                            [rnd(4) as usize];
                        let peer = if rnd(4) == 0 { Peer::Any } else { Peer::Set(rnd(5) as u32) };
                        let (first, count) =
                            if rnd(4) == 0 { (0, 0) } else { (rnd(5) as u32, 1 + rnd(2) as u32) };
                        rule(action, peer, first, count)
                    })
                    .collect(),
                no_match: if rnd(2) == 0 { NoMatch::Deny } else { NoMatch::NextTier },
            })
            .collect();
        let p = EndpointPolicy { endpoint: 3, direction: Direction::Ingress, tiers, ports };
        let e = encode(&p, &sets, None);
        for _ in 0..200 {
            let addr = 0x0a00_0000 | (rnd(5) as u32) << 16 | (rnd(5) as u32) << 8 | rnd(9) as u32;
            let proto = [6u8, 17, 132][rnd(3) as usize];
            let port = rnd(55) as u16;
            assert_eq!(
                lookup(&e, 3, 0, addr, proto, port),
                reference(&p, &sets, addr, proto, port),
                "{p:?} {sets:?} {addr:#x} {proto} {port}"
            );
        }
    }
}

#[test]
fn unchanged_classes_keep_their_ids() {
    let sets =
        BTreeMap::from([(1, set(1, &[(0x0a00_0000, 24)])), (2, set(2, &[(0x0b00_0000, 24)]))]);
    let mut p = EndpointPolicy {
        endpoint: 1,
        direction: Direction::Ingress,
        tiers: vec![Tier {
            rules: vec![rule(Action::Allow, Peer::Set(2), 0, 0)],
            no_match: NoMatch::Deny,
        }],
        ports: vec![],
    };
    let before = encode(&p, &sets, None);
    p.tiers[0].rules.insert(0, rule(Action::Allow, Peer::Set(1), 0, 0));
    let after = encode(&p, &sets, Some(&before.classes));
    assert_eq!(after.classes.get(&vec![2]), before.classes.get(&vec![2]));
}
