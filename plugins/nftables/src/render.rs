//! Rule set → nftables JSON: the full, atomic definition of the table, and
//! the pieces (set elements, verdict-map elements, policy chains) that the
//! incremental updates in `delta` reuse.
//!
//! Layout (docs/nftables-backend.md):
//! - base chains `forward`, `input`, `output` (filter, priority 0, policy
//!   accept) each `jump dispatch`;
//! - `dispatch`: `ct state established,related accept`, then
//!   `ip saddr vmap @egress4`, `ip6 saddr vmap @egress6`,
//!   `ip daddr vmap @ingress4`, `ip6 daddr vmap @ingress6`;
//! - the verdict maps jump to tier 0 of an endpoint policy (`e7_eg_t0`); one
//!   chain per tier; `pass` and a `next-tier` tier end `goto` the next tier's
//!   chain, so a `return` anywhere returns to `dispatch`. Egress allow is
//!   `return` (the destination's ingress still runs), ingress allow `accept`,
//!   deny and a `deny` tier end `drop`, log `log prefix "palisade ..."` and go
//!   on; falling off the last tier returns, i.e. allows.

use std::collections::{BTreeMap, BTreeSet};

use palisade_plugin_sdk::types::{
    Action, AddressSet, Direction, EndpointPolicy, NoMatch, Peer, Protocol, Rule, V4Prefix,
    V6Prefix,
};
use palisade_plugin_sdk::AppliedState;
use serde_json::{json, Value};

use crate::names::{self, Fam};
use crate::nft::{self, Table};
use crate::runs;

/// Prefixes masked to their length, sorted, without duplicates or prefixes
/// covered by another one (the set's meaning is their union, so this is
/// exact, and nft interval sets refuse overlaps).
pub fn normalize_v4(list: &[V4Prefix]) -> Vec<(u32, u8)> {
    let mut v: Vec<(u32, u8)> = list
        .iter()
        .map(|p| {
            let len = p.len.min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            (p.addr & mask, len)
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u32, u8)> = Vec::with_capacity(v.len());
    for (a, l) in v {
        if let Some(&(la, ll)) = out.last() {
            let m = if ll == 0 { 0 } else { u32::MAX << (32 - u32::from(ll)) };
            if a & m == la && l >= ll {
                continue;
            }
        }
        out.push((a, l));
    }
    out
}

/// As [`normalize_v4`], for IPv6.
pub fn normalize_v6(list: &[V6Prefix]) -> Vec<(u128, u8)> {
    let mut v: Vec<(u128, u8)> = list
        .iter()
        .map(|p| {
            let len = p.len.min(128);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            (names::v6_join(p.hi, p.lo) & mask, len)
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u128, u8)> = Vec::with_capacity(v.len());
    for (a, l) in v {
        if let Some(&(la, ll)) = out.last() {
            let m = if ll == 0 { 0 } else { u128::MAX << (128 - u32::from(ll)) };
            if a & m == la && l >= ll {
                continue;
            }
        }
        out.push((a, l));
    }
    out
}

/// The elements of both nft sets of an address set.
pub fn set_elems(s: &AddressSet) -> (Vec<Value>, Vec<Value>) {
    let v4 =
        normalize_v4(&s.v4).into_iter().map(|(a, l)| nft::addr_elem(nft::v4_elem(a, l))).collect();
    let v6 =
        normalize_v6(&s.v6).into_iter().map(|(a, l)| nft::addr_elem(nft::v6_elem(a, l))).collect();
    (v4, v6)
}

/// Which endpoint policy chain each endpoint address dispatches to, per
/// (direction key, family): address → endpoint id. An address belongs to the
/// endpoint with the lowest id that has it (as in the reference evaluator);
/// it gets an entry only if that endpoint has a policy for the direction.
pub type Dispatch = BTreeMap<(u8, Fam), BTreeMap<u128, u32>>;

pub fn dispatch(state: &AppliedState) -> Dispatch {
    let mut owner: BTreeMap<(Fam, u128), u32> = BTreeMap::new();
    for e in state.endpoints.values() {
        for &a in &e.v4 {
            owner.entry((Fam::V4, u128::from(a))).or_insert(e.id);
        }
        for p in &e.v6 {
            owner.entry((Fam::V6, names::v6_join(p.hi, p.lo))).or_insert(e.id);
        }
    }
    let mut d = Dispatch::new();
    for dk in [0u8, 1] {
        for f in Fam::BOTH {
            d.insert((dk, f), BTreeMap::new());
        }
    }
    for ((f, a), ep) in owner {
        for dk in [0u8, 1] {
            if state.policies.contains_key(&(ep, dk)) {
                d.entry((dk, f)).or_default().insert(a, ep);
            }
        }
    }
    d
}

/// One verdict-map element: `ADDR : jump e7_in_t0`.
pub fn vmap_elem(fam: Fam, addr: u128, dk: u8, ep: u32) -> Value {
    Value::Array(vec![
        vmap_key(fam, addr),
        nft::jump(&names::tier_chain(ep, names::key_dir(dk), 0)),
    ])
}

/// The key of a verdict-map element (for deletes).
pub fn vmap_key(fam: Fam, addr: u128) -> Value {
    match fam {
        // Dispatch keys of family V4 were made from u32 addresses.
        Fam::V4 => json!(names::v4(u32::try_from(addr).unwrap_or(u32::MAX))),
        Fam::V6 => json!(names::v6(addr)),
    }
}

/// Number of chains of an endpoint policy (one per tier; an empty policy
/// still has tier 0, empty, which allows).
pub fn chain_count(p: &EndpointPolicy) -> usize {
    p.tiers.len().max(1)
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// Merged inclusive port ranges of one protocol.
pub type PortGroup = (Protocol, Vec<(u16, u16)>);

/// The port ranges of a rule grouped by protocol, merged and sorted. `None`:
/// every port of every protocol (no match at all). `Some(empty)`: the rule
/// can never match (its span points outside the policy's table).
pub fn port_groups(p: &EndpointPolicy, r: &Rule) -> Option<Vec<PortGroup>> {
    if r.ports.count == 0 {
        return None;
    }
    let ranges = palisade_plugin_sdk::rule_ports(p, r);
    let mut out = Vec::new();
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        let mut v: Vec<(u16, u16)> = ranges
            .iter()
            .filter(|x| x.protocol == proto && x.first <= x.last)
            .map(|x| (x.first, x.last))
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match merged.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        out.push((proto, merged));
    }
    Some(out)
}

/// The field of the peer's address: the source for ingress, the
/// destination for egress.
pub fn peer_field(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    }
}

/// The nft rules of one `log` rule: one per peer family and protocol range
/// (rules whose peer set does not exist or whose port span is out of range
/// never match and are left out).
fn log_rules(
    t: &Table,
    state: &AppliedState,
    p: &EndpointPolicy,
    chain: &str,
    r: &Rule,
    cmds: &mut Vec<Value>,
) {
    let (ep, dir) = (p.endpoint, p.direction);
    let peers: Vec<Option<Value>> = match r.peer {
        Peer::Any => vec![None],
        Peer::Set(id) if state.sets.contains_key(&id) => Fam::BOTH
            .iter()
            .map(|&f| {
                Some(nft::eq(
                    nft::addr_key(f, peer_field(dir)),
                    json!(format!("@{}", names::set(id, f))),
                ))
            })
            .collect(),
        Peer::Set(_) => return,
    };
    let ports: Vec<Vec<Value>> = match port_groups(p, r) {
        None => vec![vec![]],
        Some(groups) if groups.is_empty() => return,
        Some(groups) => groups
            .iter()
            .flat_map(|(proto, ranges)| {
                ranges
                    .iter()
                    .map(|&(a, b)| vec![nft::l4proto(proto_name(*proto)), nft::dport(a, b)])
            })
            .collect(),
    };
    let origin = state
        .origins
        .get(&r.origin)
        .map(|o| format!("{}/{} {}", o.namespace, o.name, o.rule))
        .or_else(|| Some(format!("o{}", r.origin)));
    let verdict = nft::log(&names::log_prefix(ep, dir, origin));
    for peer in &peers {
        for port in &ports {
            let mut expr: Vec<Value> = peer.iter().cloned().collect();
            expr.extend(port.iter().cloned());
            expr.push(verdict.clone());
            cmds.push(t.add_rule(chain, expr));
        }
    }
}

/// The `add rule` commands filling every tier chain of one endpoint policy
/// (the chains and the policy's run sets must exist: `has_set` says which
/// run sets the table has, the non-empty ones). A run of rules with one
/// action is up to four set lookups (`runs`), one per run set it has; a
/// `log` rule is one nft rule per peer family and port range.
pub fn policy_rules(
    t: &Table,
    state: &AppliedState,
    p: &EndpointPolicy,
    has_set: &dyn Fn(&str) -> bool,
) -> Vec<Value> {
    let (ep, dir) = (p.endpoint, p.direction);
    let n = p.tiers.len();
    let allow = || match dir {
        Direction::Ingress => nft::accept(),
        Direction::Egress => nft::ret(),
    };
    let next = |ti: usize| {
        if ti + 1 < n {
            nft::goto(&names::tier_chain(ep, dir, ti + 1))
        } else {
            allow()
        }
    };
    let field = peer_field(dir);
    let mut cmds = Vec::new();
    for (ti, tier) in p.tiers.iter().enumerate() {
        let chain = names::tier_chain(ep, dir, ti);
        for step in runs::steps(tier) {
            let run = match step {
                runs::Step::Log(r) => {
                    log_rules(t, state, p, &chain, r, &mut cmds);
                    continue;
                }
                runs::Step::Run(run) => run,
            };
            let verdict = match run.action {
                Action::Allow => allow(),
                Action::Deny => nft::drop(),
                Action::Pass | Action::Log => next(ti),
            };
            let mut kinds = Vec::new();
            if run.ports {
                kinds.push(runs::Kind::Ports);
            }
            if run.addrs {
                kinds.push(runs::Kind::Addrs);
            }
            for kind in kinds {
                for f in Fam::BOTH {
                    let name = runs::set_name(p, ti, run.index, kind, f);
                    if !has_set(&name) {
                        continue;
                    }
                    cmds.push(t.add_rule(
                        &chain,
                        vec![runs::set_match(f, kind, field, &name), verdict.clone()],
                    ));
                }
            }
            if run.always {
                cmds.push(t.add_rule(&chain, vec![verdict]));
            }
        }
        match tier.no_match {
            NoMatch::Deny => cmds.push(t.add_rule(&chain, vec![nft::drop()])),
            NoMatch::NextTier if ti + 1 < n => cmds.push(t.add_rule(&chain, vec![next(ti)])),
            NoMatch::NextTier => {}
        }
    }
    cmds
}

/// The run sets of a policy against the sets of `state`.
pub fn policy_sets(state: &AppliedState, p: &EndpointPolicy) -> BTreeMap<String, runs::RunSet> {
    runs::policy_sets(p, &|id| state.sets.get(&id))
}

/// The address sets the table has as `s<ID>_4`/`s<ID>_6`: those some `log`
/// rule names (every other rule matches through its run's sets, which hold
/// copies of the addresses). Most rule sets have no `log` rule, and so none.
pub fn logged_sets(state: &AppliedState) -> BTreeSet<u32> {
    state
        .policies
        .values()
        .flat_map(runs::log_refs)
        .filter(|id| state.sets.contains_key(id))
        .collect()
}

/// The chains of one endpoint policy, in order.
pub fn policy_chains(p: &EndpointPolicy) -> Vec<String> {
    (0..chain_count(p)).map(|i| names::tier_chain(p.endpoint, p.direction, i)).collect()
}

/// The full definition of the table for `state`, as one atomic batch that
/// replaces whatever the table held (`add table` + `delete table` + the
/// definition; a failing batch changes nothing).
pub fn full(t: &Table, state: &AppliedState) -> Value {
    let mut cmds = Vec::new();
    full_commands(t, state, &mut |c| cmds.push(c));
    nft::batch(cmds)
}

/// As [`full`], serialized: the same text as `full(t, state).to_string()`,
/// written one command at a time, so the whole batch never exists as a
/// `Value` tree (for a large table that tree is many times the size of the
/// text).
pub fn full_json(t: &Table, state: &AppliedState) -> String {
    let mut w = nft::BatchWriter::new();
    full_commands(t, state, &mut |c| w.push(&c));
    w.finish()
}

/// The commands of [`full`], in order, handed to `emit` one at a time.
pub fn full_commands(t: &Table, state: &AppliedState, emit: &mut dyn FnMut(Value)) {
    for c in [t.add_table(), t.delete_table(), t.add_table()] {
        emit(c);
    }
    for id in logged_sets(state) {
        if let Some(s) = state.sets.get(&id) {
            let (v4, v6) = set_elems(s);
            emit(t.add_set(&names::set(id, Fam::V4), Fam::V4, v4));
            emit(t.add_set(&names::set(id, Fam::V6), Fam::V6, v6));
        }
    }
    // The names of the run sets made (only they get a lookup rule).
    let mut run_sets: BTreeSet<String> = BTreeSet::new();
    for p in state.policies.values() {
        for (name, s) in policy_sets(state, p) {
            emit(runs::add_set(t, &name, &s));
            run_sets.insert(name);
        }
    }
    emit(t.add_chain(names::DISPATCH));
    for p in state.policies.values() {
        for c in policy_chains(p) {
            emit(t.add_chain(&c));
        }
    }
    for ((dk, f), entries) in dispatch(state) {
        let elems = entries.iter().map(|(&a, &ep)| vmap_elem(f, a, dk, ep)).collect();
        emit(t.add_vmap(&names::vmap(names::key_dir(dk), f), f, elems));
    }
    for c in dispatch_rules(t) {
        emit(c);
    }
    for hook in names::BASE_CHAINS {
        emit(t.add_base_chain(hook));
        emit(t.add_rule(hook, vec![nft::jump(names::DISPATCH)]));
    }
    let has_set = |name: &str| run_sets.contains(name);
    for p in state.policies.values() {
        for c in policy_rules(t, state, p, &has_set) {
            emit(c);
        }
    }
}

/// The rules of the `dispatch` chain.
fn dispatch_rules(t: &Table) -> Vec<Value> {
    let mut cmds = vec![t.add_rule(names::DISPATCH, vec![nft::ct_established(), nft::accept()])];
    for (dir, field) in [(Direction::Egress, "saddr"), (Direction::Ingress, "daddr")] {
        for f in Fam::BOTH {
            let m = names::vmap(dir, f);
            cmds.push(t.add_rule(names::DISPATCH, vec![nft::vmap(nft::addr(f, field), &m)]));
        }
    }
    cmds
}
