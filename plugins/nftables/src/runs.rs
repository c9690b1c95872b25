//! Runs: consecutive rules of one tier with the same terminal action
//! (`allow`, `deny` or `pass`), matched through named sets instead of one nft
//! rule each.
//!
//! Inside a run the order of the rules does not matter (whichever matches,
//! the verdict is the same), so a run is the union of its rules' matches:
//! - rules with ports: one concatenated interval set per family,
//!   `ADDR . PROTO . PORT` (`ip saddr . meta l4proto . th dport @e7_in_t0_r0_p4`);
//! - rules with a set peer and no ports (every protocol, every port, ICMP
//!   included): one address interval set per family (`ip saddr @..._a4`);
//! - a rule with peer `any` and no ports: the bare verdict.
//!
//! A `log` rule ends a run (it must see exactly the packets that reach it)
//! and keeps the per-rule encoding of `render`.
//!
//! A run set exists only while it has elements, and its lookup rule only
//! while the set exists: an IPv4-only cluster has no `p6`/`a6` sets, and a
//! peer selecting nobody costs no set. Every set in the table costs every
//! later nft command (libnftables reads all set definitions before an
//! element or rule command), so the sets the kernel never needs are left
//! out. A membership change is element deletes and adds, except where a run
//! set empties or fills: then the policy's chains are rewritten (`delta`).
//!
//! The elements of a set are canonical (a function of the union only):
//! disjoint boxes, as the kernel's concatenated interval sets need (they
//! refuse an element starting inside another one), and so that a change is
//! the exact difference of two element lists.

use std::collections::{BTreeMap, BTreeSet};

use palisade_plugin_sdk::types::{Action, AddressSet, EndpointPolicy, Peer, Protocol, Rule, Tier};
use serde_json::{json, Value};

use crate::names::{self, Fam};
use crate::nft;
use crate::render;

/// What the elements of a run set are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `ADDR . PROTO . PORT` boxes.
    Ports,
    /// Address prefixes.
    Addrs,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Ports => "p",
            Kind::Addrs => "a",
        }
    }
}

/// One element: a prefix, and for [`Kind::Ports`] a protocol (its IP
/// number) and an inclusive port range (zero for [`Kind::Addrs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Elem {
    pub addr: u128,
    pub len: u8,
    pub proto: u8,
    pub first: u16,
    pub last: u16,
}

/// A named set of one run, with its canonical elements (sorted, disjoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSet {
    pub fam: Fam,
    pub kind: Kind,
    pub elems: Vec<Elem>,
}

/// One step of a tier chain.
pub enum Step<'a> {
    /// A `log` rule, rendered on its own.
    Log(&'a Rule),
    /// A run of rules with one terminal action.
    Run(Run<'a>),
}

/// A run: its index among the tier's runs, its action, its rules and which
/// matches it needs.
pub struct Run<'a> {
    pub index: usize,
    pub action: Action,
    pub rules: Vec<&'a Rule>,
    /// Some rule has ports: the `p4`/`p6` sets.
    pub ports: bool,
    /// Some rule has a set peer and no ports: the `a4`/`a6` sets.
    pub addrs: bool,
    /// Some rule has peer `any` and no ports: the bare verdict.
    pub always: bool,
}

/// The steps of a tier, in order.
pub fn steps(tier: &Tier) -> Vec<Step<'_>> {
    let mut out: Vec<Step<'_>> = Vec::new();
    let mut runs = 0;
    for r in &tier.rules {
        if r.action == Action::Log {
            out.push(Step::Log(r));
            continue;
        }
        let extend = matches!(out.last(), Some(Step::Run(run)) if run.action == r.action);
        if !extend {
            out.push(Step::Run(Run {
                index: runs,
                action: r.action,
                rules: Vec::new(),
                ports: false,
                addrs: false,
                always: false,
            }));
            runs += 1;
        }
        if let Some(Step::Run(run)) = out.last_mut() {
            match (r.peer, r.ports.count) {
                (_, n) if n > 0 => run.ports = true,
                (Peer::Set(_), _) => run.addrs = true,
                (Peer::Any, _) => run.always = true,
            }
            run.rules.push(r);
        }
    }
    out
}

/// The name of one set of a run: `e7_in_t0_r1_p4`.
pub fn set_name(p: &EndpointPolicy, tier: usize, run: usize, kind: Kind, fam: Fam) -> String {
    format!(
        "{}_r{run}_{}{}",
        names::tier_chain(p.endpoint, p.direction, tier),
        kind.tag(),
        match fam {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    )
}

fn bits(fam: Fam) -> u32 {
    match fam {
        Fam::V4 => 32,
        Fam::V6 => 128,
    }
}

/// The normalized prefixes of one family of an address set.
fn prefixes(s: &AddressSet, fam: Fam) -> Vec<(u128, u8)> {
    match fam {
        Fam::V4 => {
            render::normalize_v4(&s.v4).into_iter().map(|(a, l)| (u128::from(a), l)).collect()
        }
        Fam::V6 => render::normalize_v6(&s.v6),
    }
}

/// The union of prefix lists (each masked), as sorted disjoint prefixes:
/// prefixes nest or are disjoint, so dropping the covered ones is exact.
fn union(fam: Fam, mut v: Vec<(u128, u8)>) -> Vec<(u128, u8)> {
    let bits = bits(fam);
    let mask = |l: u8| if l == 0 { 0 } else { u128::MAX << (bits - u32::from(l).min(bits)) };
    v.sort_unstable();
    let mut out: Vec<(u128, u8)> = Vec::with_capacity(v.len());
    for (a, l) in v {
        if let Some(&(la, ll)) = out.last() {
            if a & mask(ll) == la && l >= ll {
                continue;
            }
        }
        out.push((a, l));
    }
    out
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn proto_name(n: u8) -> &'static str {
    match n {
        6 => "tcp",
        17 => "udp",
        _ => "sctp",
    }
}

/// The addresses a peer stands for in one family (`None`: the set does not
/// exist, the rule never matches).
fn peer_prefixes<'s>(
    peer: Peer,
    fam: Fam,
    sets: &dyn Fn(u32) -> Option<&'s AddressSet>,
) -> Option<Vec<(u128, u8)>> {
    match peer {
        Peer::Any => Some(vec![(0, 0)]),
        Peer::Set(id) => sets(id).map(|s| prefixes(s, fam)),
    }
}

/// The canonical `ADDR . PROTO . PORT` elements of the port rules of a run,
/// for one family: per protocol, the ports are cut where any rule's range
/// starts or ends; each piece gets the union of the addresses of the rules
/// covering it (disjoint prefixes); each prefix gets the maximal port ranges
/// of the pieces it is in. Two elements with overlapping port ranges share
/// a piece, where their prefixes are disjoint: the elements are disjoint.
fn port_elems<'s>(
    p: &EndpointPolicy,
    rules: &[&Rule],
    fam: Fam,
    sets: &dyn Fn(u32) -> Option<&'s AddressSet>,
) -> Vec<Elem> {
    // Addresses per peer (`None` key: any), computed once.
    let mut addrs: BTreeMap<Option<u32>, Vec<(u128, u8)>> = BTreeMap::new();
    // Per protocol: (port, +1 start / -1 end, peer key) events.
    let mut events: BTreeMap<u8, Vec<(u32, i32, Option<u32>)>> = BTreeMap::new();
    for r in rules.iter().filter(|r| r.ports.count > 0) {
        let key = match r.peer {
            Peer::Any => None,
            Peer::Set(id) => Some(id),
        };
        if let std::collections::btree_map::Entry::Vacant(slot) = addrs.entry(key) {
            match peer_prefixes(r.peer, fam, sets) {
                Some(v) => slot.insert(v),
                None => continue,
            };
        }
        for (proto, ranges) in render::port_groups(p, r).unwrap_or_default() {
            let ev = events.entry(proto_number(proto)).or_default();
            for (a, b) in ranges {
                ev.push((u32::from(a), 1, key));
                ev.push((u32::from(b) + 1, -1, key));
            }
        }
    }
    let mut out = Vec::new();
    for (proto, mut ev) in events {
        ev.sort_unstable();
        let mut active: BTreeMap<Option<u32>, i32> = BTreeMap::new();
        // Per prefix, the port range it has had up to the current piece.
        let mut open: BTreeMap<(u128, u8), (u32, u32)> = BTreeMap::new();
        let close = |open: &mut BTreeMap<(u128, u8), (u32, u32)>,
                     keep: &dyn Fn(&(u128, u8), u32) -> bool,
                     out: &mut Vec<Elem>| {
            open.retain(|&(addr, len), &mut (a, b)| {
                if keep(&(addr, len), b) {
                    return true;
                }
                out.push(Elem {
                    addr,
                    len,
                    proto,
                    first: u16::try_from(a).unwrap_or(u16::MAX),
                    last: u16::try_from(b).unwrap_or(u16::MAX),
                });
                false
            });
        };
        let mut i = 0;
        while i < ev.len() {
            let at = ev[i].0;
            while i < ev.len() && ev[i].0 == at {
                let (_, d, k) = ev[i];
                let c = active.entry(k).or_insert(0);
                *c += d;
                if *c == 0 {
                    active.remove(&k);
                }
                i += 1;
            }
            // The piece [at, next event - 1] has the active peers.
            let Some(&(next, _, _)) = ev.get(i) else { break };
            let list = if active.contains_key(&None) {
                vec![(0, 0)]
            } else {
                union(
                    fam,
                    active
                        .keys()
                        .flat_map(|k| addrs.get(k).into_iter().flatten().copied())
                        .collect(),
                )
            };
            // A prefix's range ends where the prefix is not in the piece.
            let set: BTreeSet<(u128, u8)> = list.iter().copied().collect();
            close(&mut open, &|p, end| set.contains(p) && end + 1 == at, &mut out);
            for p in list {
                open.entry(p).and_modify(|r| r.1 = next - 1).or_insert((at, next - 1));
            }
        }
        close(&mut open, &|_, _| false, &mut out);
    }
    out.sort_unstable();
    out
}

/// The address elements of the port-less set-peer rules of a run.
fn addr_elems<'s>(
    rules: &[&Rule],
    fam: Fam,
    sets: &dyn Fn(u32) -> Option<&'s AddressSet>,
) -> Vec<Elem> {
    let mut all = Vec::new();
    let mut seen = BTreeSet::new();
    for r in rules.iter().filter(|r| r.ports.count == 0) {
        if let Peer::Set(id) = r.peer {
            if seen.insert(id) {
                all.extend(peer_prefixes(r.peer, fam, sets).unwrap_or_default());
            }
        }
    }
    union(fam, all)
        .into_iter()
        .map(|(addr, len)| Elem { addr, len, proto: 0, first: 0, last: 0 })
        .collect()
}

/// The sets of one run, by name: those its shape needs, without the empty
/// ones (an empty set matches nothing: neither it nor its rule is made).
pub fn run_sets<'s>(
    p: &EndpointPolicy,
    tier: usize,
    run: &Run<'_>,
    sets: &dyn Fn(u32) -> Option<&'s AddressSet>,
) -> Vec<(String, RunSet)> {
    let mut out = Vec::new();
    for fam in Fam::BOTH {
        if run.ports {
            let elems = port_elems(p, &run.rules, fam, sets);
            if !elems.is_empty() {
                out.push((
                    set_name(p, tier, run.index, Kind::Ports, fam),
                    RunSet { fam, kind: Kind::Ports, elems },
                ));
            }
        }
        if run.addrs {
            let elems = addr_elems(&run.rules, fam, sets);
            if !elems.is_empty() {
                out.push((
                    set_name(p, tier, run.index, Kind::Addrs, fam),
                    RunSet { fam, kind: Kind::Addrs, elems },
                ));
            }
        }
    }
    out
}

/// Every run set of an endpoint policy, by name (the non-empty ones: the
/// ones the table has).
pub fn policy_sets<'s>(
    p: &EndpointPolicy,
    sets: &dyn Fn(u32) -> Option<&'s AddressSet>,
) -> BTreeMap<String, RunSet> {
    let mut out = BTreeMap::new();
    for (ti, tier) in p.tiers.iter().enumerate() {
        for step in steps(tier) {
            if let Step::Run(run) = step {
                out.extend(run_sets(p, ti, &run, sets));
            }
        }
    }
    out
}

/// The address sets the `log` rules of `p` name (a `log` rule matches
/// through the address set itself, `@s7_4`, not through a run set).
pub fn log_refs(p: &EndpointPolicy) -> impl Iterator<Item = u32> + '_ {
    p.tiers.iter().flat_map(|t| &t.rules).filter_map(|r| match (r.action, r.peer) {
        (Action::Log, Peer::Set(id)) => Some(id),
        _ => None,
    })
}

/// Whether any non-log rule of `p` has peer `set(id)` for an id in `ids`.
pub fn references(p: &EndpointPolicy, ids: &BTreeSet<u32>) -> bool {
    p.tiers
        .iter()
        .flat_map(|t| &t.rules)
        .any(|r| r.action != Action::Log && matches!(r.peer, Peer::Set(id) if ids.contains(&id)))
}

/// The libnftables JSON of an element.
pub fn elem_json(fam: Fam, kind: Kind, e: &Elem) -> Value {
    let addr = match fam {
        Fam::V4 => nft::v4_elem(u32::try_from(e.addr).unwrap_or(u32::MAX), e.len),
        Fam::V6 => nft::v6_elem(e.addr, e.len),
    };
    match kind {
        Kind::Addrs => nft::addr_elem(addr),
        Kind::Ports => {
            let port = if e.first == e.last {
                json!(e.first)
            } else {
                json!({"range": [e.first, e.last]})
            };
            nft::object([("concat", Value::Array(vec![addr, json!(proto_name(e.proto)), port]))])
        }
    }
}

/// The elements' JSON.
pub fn elems_json(fam: Fam, kind: Kind, elems: &[Elem]) -> Vec<Value> {
    elems.iter().map(|e| elem_json(fam, kind, e)).collect()
}

/// `add set` of a run set with its elements.
pub fn add_set(t: &nft::Table, name: &str, s: &RunSet) -> Value {
    let ty = match s.kind {
        Kind::Addrs => json!([s.fam.addr_type(), "inet_proto"]),
        Kind::Ports => json!([s.fam.addr_type(), "inet_proto", "inet_service"]),
    };
    t.add_typed_set(name, ty, elems_json(s.fam, s.kind, &s.elems))
}

/// The match of a run set: `ip saddr . meta l4proto . th dport @NAME` or
/// `ip saddr . meta l4proto @NAME` (an address set, see
/// [`nft::Table::add_set`]; `daddr` for egress).
pub fn set_match(fam: Fam, kind: Kind, field: &str, name: &str) -> Value {
    let left = match kind {
        Kind::Addrs => nft::addr_key(fam, field),
        Kind::Ports => nft::object([(
            "concat",
            Value::Array(vec![
                nft::addr(fam, field),
                json!({"meta": {"key": "l4proto"}}),
                json!({"payload": {"protocol": "th", "field": "dport"}}),
            ]),
        )]),
    };
    nft::eq(left, json!(format!("@{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_plugin_sdk::types::{Direction, PortRange, PortSpan, V4Prefix};

    /// A small deterministic generator (tests must be reproducible).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn contains(p: &V4Prefix, a: u32) -> bool {
        let m = if p.len == 0 { 0 } else { u32::MAX << (32 - u32::from(p.len)) };
        a & m == p.addr & m
    }

    /// Random runs of allow rules over 10.0.0.0/28 and ports 0-12: the
    /// elements are pairwise disjoint, and an (address, protocol, port) is in
    /// them exactly when some rule of the run matches it, checked point by
    /// point against the rules themselves.
    #[test]
    fn elements_are_disjoint_and_match_exactly_the_rules() {
        let mut g = Lcg(7);
        let base = 0x0a00_0000u32;
        for _ in 0..300 {
            let sets: Vec<AddressSet> = (0..3)
                .map(|id| AddressSet {
                    id,
                    v4: (0..g.next(4))
                        .map(|_| {
                            let len = 28 + g.next(5) as u8;
                            V4Prefix { addr: base + g.next(16) as u32, len }
                        })
                        .collect(),
                    v6: vec![],
                })
                .collect();
            let mut ports = Vec::new();
            let mut rules = Vec::new();
            for _ in 0..1 + g.next(6) {
                let peer = match g.next(5) {
                    0 => Peer::Any,
                    n => Peer::Set(n as u32 - 1), // set 3 does not exist
                };
                let first = ports.len() as u32;
                let count = g.next(4) as u32;
                for _ in 0..count {
                    let a = g.next(13) as u16;
                    let b = a + g.next(6) as u16;
                    let protocol = if g.next(2) == 0 { Protocol::Tcp } else { Protocol::Udp };
                    ports.push(PortRange { protocol, first: a, last: b });
                }
                rules.push(Rule {
                    action: Action::Allow,
                    peer,
                    ports: PortSpan { first, count },
                    origin: 0,
                });
            }
            let p = EndpointPolicy {
                endpoint: 1,
                direction: Direction::Ingress,
                tiers: vec![Tier { rules, no_match: palisade_plugin_sdk::types::NoMatch::Deny }],
                ports,
            };
            let lookup = |id: u32| sets.get(id as usize);
            let refs: Vec<&Rule> = p.tiers[0].rules.iter().collect();
            let pe = port_elems(&p, &refs, Fam::V4, &lookup);
            let ae = addr_elems(&refs, Fam::V4, &lookup);
            let in_elem =
                |e: &Elem, a: u32| contains(&V4Prefix { addr: e.addr as u32, len: e.len }, a);
            for (i, x) in pe.iter().enumerate() {
                for y in &pe[i + 1..] {
                    let addrs = (base..base + 16).any(|a| in_elem(x, a) && in_elem(y, a))
                        || (x.len < 28 && y.len < 28);
                    let overlap = x.proto == y.proto && x.first <= y.last && y.first <= x.last;
                    assert!(!(addrs && overlap), "{x:?} overlaps {y:?}");
                }
            }
            let peer_has = |r: &Rule, a: u32| match r.peer {
                Peer::Any => true,
                Peer::Set(id) => {
                    sets.get(id as usize).is_some_and(|s| s.v4.iter().any(|q| contains(q, a)))
                }
            };
            for a in (base..base + 16).chain([0x0b00_0001]) {
                for proto in [Protocol::Tcp, Protocol::Udp] {
                    for port in 0..20u16 {
                        let want = refs.iter().any(|r| {
                            r.ports.count > 0
                                && peer_has(r, a)
                                && palisade_plugin_sdk::rule_ports(&p, r).iter().any(|x| {
                                    x.protocol == proto && x.first <= port && port <= x.last
                                })
                        });
                        let got = pe.iter().any(|e| {
                            in_elem(e, a)
                                && e.proto == proto_number(proto)
                                && e.first <= port
                                && port <= e.last
                        });
                        assert_eq!(got, want, "{a:x} {proto:?} {port}: {pe:?}");
                    }
                }
                let want = refs.iter().any(|r| {
                    r.ports.count == 0 && matches!(r.peer, Peer::Set(_)) && peer_has(r, a)
                });
                assert_eq!(ae.iter().any(|e| in_elem(e, a)), want, "{a:x}: {ae:?}");
            }
        }
    }
}
