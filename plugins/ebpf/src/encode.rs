//! Rule set → map contents: the tiers of one endpoint policy, precomputed
//! into verdicts keyed by peer class and port range.
//!
//! The remote address of a connection falls into exactly one *fragment*:
//! the longest of the prefixes the policy's address sets are made of (plus
//! `0.0.0.0/0`). Every address of a fragment lies in the same sets (a set
//! holds the address iff it holds a prefix covering the fragment), so the
//! fragment's *class* (the sorted ids of those sets) decides which rules
//! can match the peer. For a class, the tiers are walked once per stretch
//! of ports over which the set of matching rules does not change (a sweep
//! over the rules' range boundaries): the class's *default* verdict (no
//! ranged rule matches) goes to the `peers` entry of each fragment, the
//! stretches whose verdict differs go to `ports` as prefix blocks.
//!
//! Walking the tiers is the reference evaluator's: in order, the first
//! matching `allow`/`deny` decides, `pass` skips to the next tier, `log`
//! goes on, no match takes the tier's no-match (deny, or the next tier),
//! after the last tier: allow.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_plugin_sdk::rule_ports;
use palisade_plugin_sdk::types::{
    Action, AddressSet, Direction, EndpointPolicy, NoMatch, Peer, Protocol,
};

pub const VERDICT_ALLOW: u32 = 1;
pub const VERDICT_DENY: u32 = 2;

/// Bits of a `peers` key before the address (endpoint, direction, pad).
pub const PEER_FIXED_BITS: u32 = 64;
/// Bits of a `ports` key before the port (endpoint, class, direction, protocol).
pub const PORT_FIXED_BITS: u32 = 80;

pub type PeerKey = [u8; 16];
pub type PeerVal = [u8; 8];
pub type PortKey = [u8; 16];
pub type PortVal = [u8; 4];

pub fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

pub fn peer_key(endpoint: u32, direction: u8, addr: u32, len: u8) -> PeerKey {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&(PEER_FIXED_BITS + u32::from(len)).to_le_bytes());
    k[4..8].copy_from_slice(&endpoint.to_le_bytes());
    k[8] = direction;
    k[12..16].copy_from_slice(&(addr & mask(len)).to_be_bytes());
    k
}

pub fn peer_val(class: u32, verdict: u32) -> PeerVal {
    let mut v = [0u8; 8];
    v[0..4].copy_from_slice(&class.to_le_bytes());
    v[4..8].copy_from_slice(&verdict.to_le_bytes());
    v
}

pub fn port_key(
    endpoint: u32,
    class: u32,
    direction: u8,
    protocol: u8,
    port: u16,
    bits: u8,
) -> PortKey {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&(PORT_FIXED_BITS + u32::from(bits)).to_le_bytes());
    k[4..8].copy_from_slice(&endpoint.to_le_bytes());
    k[8..12].copy_from_slice(&class.to_le_bytes());
    k[12] = direction;
    k[13] = protocol;
    let m: u16 = if bits == 0 { 0 } else { u16::MAX << (16 - u32::from(bits.min(16))) };
    k[14..16].copy_from_slice(&(port & m).to_be_bytes());
    k
}

/// The map contents of one endpoint policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub peers: BTreeMap<PeerKey, PeerVal>,
    pub ports: BTreeMap<PortKey, PortVal>,
    /// Class ids by class (sorted set ids), kept so that a recomputation
    /// gives unchanged classes their old ids.
    pub classes: HashMap<Vec<u32>, u32>,
}

/// One rule, flattened: its tier, whether it matches every port, its action.
struct Flat {
    tier: usize,
    action: Action,
    all_ports: bool,
}

/// Splits `[first, last]` into prefix blocks (port, prefix bits).
pub fn port_blocks(first: u16, last: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let mut lo = u32::from(first);
    let hi = u32::from(last);
    while lo <= hi {
        let mut size = if lo == 0 { 1u32 << 16 } else { lo & lo.wrapping_neg() };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        let bits = 16 - size.trailing_zeros() as u8;
        out.push((lo as u16, bits));
        lo += size;
    }
    out
}

/// Encodes `policy`; `previous` gives the class ids to keep.
pub fn encode(
    policy: &EndpointPolicy,
    sets: &BTreeMap<u32, AddressSet>,
    previous: Option<&HashMap<Vec<u32>, u32>>,
) -> Encoded {
    let ep = policy.endpoint;
    let dir = direction_code(policy.direction);
    // Flatten the rules; index them by peer.
    let mut flat = Vec::new();
    let mut any_peer = Vec::new();
    let mut by_set: HashMap<u32, Vec<usize>> = HashMap::new();
    // Ranged rules' (protocol, first, last) by flat index.
    let mut ranges: Vec<Vec<(u8, u16, u16)>> = Vec::new();
    for (t, tier) in policy.tiers.iter().enumerate() {
        for rule in &tier.rules {
            let i = flat.len();
            let all_ports = rule.ports.count == 0;
            let r: Vec<(u8, u16, u16)> = if all_ports {
                Vec::new()
            } else {
                rule_ports(policy, rule)
                    .iter()
                    .filter(|p| p.first <= p.last)
                    .map(|p| (protocol_number(p.protocol), p.first, p.last))
                    .collect()
            };
            flat.push(Flat { tier: t, action: rule.action, all_ports });
            ranges.push(r);
            match rule.peer {
                Peer::Any => any_peer.push(i),
                Peer::Set(id) => by_set.entry(id).or_default().push(i),
            }
        }
    }
    // Fragments: the prefixes of the referenced sets, and 0.0.0.0/0.
    let mut containing: HashMap<(u32, u8), Vec<u32>> = HashMap::new();
    for id in by_set.keys() {
        if let Some(set) = sets.get(id) {
            for p in &set.v4 {
                let len = p.len.min(32);
                containing.entry((p.addr & mask(len), len)).or_default().push(*id);
            }
        }
    }
    let mut fragments: Vec<(u32, u8)> = containing.keys().copied().collect();
    if !containing.contains_key(&(0, 0)) {
        fragments.push((0, 0));
    }
    fragments.sort_unstable();
    // The class of each fragment.
    let mut class_of: BTreeMap<(u32, u8), Vec<u32>> = BTreeMap::new();
    for &(addr, len) in &fragments {
        let mut class = BTreeSet::new();
        for l in 0..=len {
            if let Some(ids) = containing.get(&(addr & mask(l), l)) {
                class.extend(ids.iter().copied());
            }
        }
        class_of.insert((addr, len), class.into_iter().collect());
    }
    // Class ids: keep the previous ones, number new ones after them.
    let wanted: BTreeSet<&Vec<u32>> = class_of.values().collect();
    let mut classes: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut next = 0;
    if let Some(prev) = previous {
        for (c, id) in prev {
            if wanted.contains(c) {
                classes.insert(c.clone(), *id);
                next = next.max(id + 1);
            }
        }
    }
    for c in &wanted {
        if !classes.contains_key(*c) {
            classes.insert((*c).clone(), next);
            next += 1;
        }
    }
    let mut out = Encoded::default();
    let mut defaults: HashMap<u32, u32> = HashMap::new();
    for c in wanted {
        let id = classes.get(c).copied().unwrap_or_default();
        let mut relevant: Vec<usize> = any_peer.clone();
        for s in c {
            relevant.extend(by_set.get(s).into_iter().flatten().copied());
        }
        relevant.sort_unstable();
        relevant.dedup();
        let default = sweep(policy, &flat, &ranges, &relevant, |proto, first, last, verdict| {
            for (port, bits) in port_blocks(first, last) {
                out.ports.insert(port_key(ep, id, dir, proto, port, bits), verdict.to_le_bytes());
            }
        });
        defaults.insert(id, default);
    }
    for (&(addr, len), c) in &class_of {
        let id = classes.get(c).copied().unwrap_or_default();
        let verdict = defaults.get(&id).copied().unwrap_or(VERDICT_DENY);
        out.peers.insert(peer_key(ep, dir, addr, len), peer_val(id, verdict));
    }
    out.classes = classes;
    out
}

/// Walks the tiers with the given active (matching, non-log) rules per tier.
fn walk(policy: &EndpointPolicy, active: &[BTreeSet<usize>], flat: &[Flat]) -> u32 {
    for (t, tier) in policy.tiers.iter().enumerate() {
        match active.get(t).and_then(|a| a.first()).map(|&i| flat[i].action) {
            Some(Action::Allow) => return VERDICT_ALLOW,
            Some(Action::Deny) => return VERDICT_DENY,
            Some(Action::Pass) => continue,
            Some(Action::Log) | None => {
                if tier.no_match == NoMatch::Deny {
                    return VERDICT_DENY;
                }
            }
        }
    }
    VERDICT_ALLOW
}

/// For the rules `relevant` to a class: the default verdict (returned), and
/// every port stretch whose verdict differs from it (to `emit`).
fn sweep(
    policy: &EndpointPolicy,
    flat: &[Flat],
    ranges: &[Vec<(u8, u16, u16)>],
    relevant: &[usize],
    mut emit: impl FnMut(u8, u16, u16, u32),
) -> u32 {
    let tiers = policy.tiers.len();
    let mut base: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tiers];
    for &i in relevant {
        if flat[i].all_ports && flat[i].action != Action::Log {
            base[flat[i].tier].insert(i);
        }
    }
    let default = walk(policy, &base, flat);
    for proto in [6u8, 17, 132] {
        // Boundary events: (position, +1/-1, rule).
        let mut events: Vec<(u32, bool, usize)> = Vec::new();
        for &i in relevant {
            if flat[i].action == Action::Log {
                continue;
            }
            for &(p, first, last) in &ranges[i] {
                if p == proto {
                    events.push((u32::from(first), true, i));
                    events.push((u32::from(last) + 1, false, i));
                }
            }
        }
        if events.is_empty() {
            continue;
        }
        events.sort_unstable();
        // Count of ranges of each rule covering the current position.
        let mut cover: HashMap<usize, u32> = HashMap::new();
        let mut active = base.clone();
        let mut k = 0;
        // Pending stretch with a non-default verdict: (start, verdict).
        let mut open: Option<(u32, u32)> = None;
        while k < events.len() {
            let pos = events[k].0;
            while k < events.len() && events[k].0 == pos {
                let (_, add, i) = events[k];
                let c = cover.entry(i).or_insert(0);
                if add {
                    *c += 1;
                    active[flat[i].tier].insert(i);
                } else {
                    *c = c.saturating_sub(1);
                    if *c == 0 && !(flat[i].all_ports) {
                        active[flat[i].tier].remove(&i);
                    }
                }
                k += 1;
            }
            let verdict = if pos > 65_535 { default } else { walk(policy, &active, flat) };
            match open {
                Some((_, v)) if v == verdict => {}
                Some((start, v)) => {
                    emit(proto, start as u16, (pos - 1) as u16, v);
                    open = (verdict != default).then_some((pos, verdict));
                }
                None => open = (verdict != default).then_some((pos, verdict)),
            }
        }
        if let Some((start, v)) = open {
            emit(proto, start as u16, 65_535, v);
        }
    }
    default
}

#[cfg(test)]
mod tests;
