//! Incremental batches: the change between two applied states, as one atomic
//! nft batch touching only what the delta names.
//!
//! - Address set membership: `delete element` / `add element` in the run
//!   sets holding its addresses, and in its own `s<ID>` sets where a `log`
//!   rule names it (the difference of the normalized prefix lists).
//! - Address sets a `log` rule starts or stops naming: `add set` /
//!   `delete set` (after every policy that referenced a removed set has
//!   been rewritten without it).
//! - Endpoint policies upserted or removed (and those whose `log` rules name
//!   a set that appeared or disappeared, or with a run set that empties or
//!   fills): their tier chains are flushed and refilled, missing tier chains
//!   added, surplus ones deleted.
//! - Endpoints: the difference of the verdict maps (`ingress4`...) as element
//!   deletes and adds.
//!
//! - Run sets of a rewritten policy whose elements mostly change (a port
//!   edit rewrites every element of its runs): deleted and created again
//!   with their elements, after the chain flush, instead of element diffs
//!   (see [`cheaper_to_recreate`]).
//!
//! The order inside the batch keeps every reference valid: new sets, set
//! elements, new chains, flushes, recreated run sets, rules, verdict-map
//! elements, then chain and set deletions.

use std::collections::{BTreeMap, BTreeSet};

use palisade_plugin_sdk::types::{AddressSet, Delta, Endpoint, EndpointPolicy, Error};
use palisade_plugin_sdk::{AppliedState, Undo};
use serde_json::Value;

use crate::names::{self, Fam};
use crate::nft::{self, Table};
use crate::render;
use crate::runs;

/// What a delta touches, taken before the delta is consumed.
#[derive(Clone, Debug, Default)]
pub struct Touched {
    /// Sets added, changed or removed.
    pub sets: BTreeSet<u32>,
    /// Endpoint policies upserted or removed, by (endpoint, direction key).
    pub policies: BTreeSet<(u32, u8)>,
    /// Size of the delta in records (prefixes, endpoints, rules...).
    pub records: usize,
}

impl Touched {
    pub fn of(d: &Delta) -> Touched {
        let mut t = Touched::default();
        t.sets.extend(d.sets_added.iter().map(|s| s.id));
        t.sets.extend(d.sets_changed.iter().map(|c| c.id));
        t.sets.extend(d.sets_removed.iter().copied());
        t.policies
            .extend(d.policies_upserted.iter().map(|p| (p.endpoint, names::dir_key(p.direction))));
        t.policies
            .extend(d.policies_removed.iter().map(|k| (k.endpoint, names::dir_key(k.direction))));
        t.records = d.origins_added.len()
            + d.sets_added.iter().map(|s| 1 + s.v4.len() + s.v6.len()).sum::<usize>()
            + d.sets_changed
                .iter()
                .map(|c| {
                    1 + c.add_v4.len() + c.remove_v4.len() + c.add_v6.len() + c.remove_v6.len()
                })
                .sum::<usize>()
            + d.sets_removed.len()
            + d.endpoints_upserted.iter().map(|e| 1 + e.v4.len() + e.v6.len()).sum::<usize>()
            + d.endpoints_removed.len()
            + d.policies_upserted
                .iter()
                .map(|p| 1 + p.tiers.iter().map(|t| 1 + t.rules.len()).sum::<usize>())
                .sum::<usize>()
            + d.policies_removed.len();
        t
    }
}

/// An incremental batch, or why a full replace is the better choice.
pub enum Plan {
    Incremental { batch: Value, commands: usize },
    Full { reason: String },
}

fn diff<T: Ord + Copy>(old: &[T], new: &[T]) -> (Vec<T>, Vec<T>) {
    let o: BTreeSet<T> = old.iter().copied().collect();
    let n: BTreeSet<T> = new.iter().copied().collect();
    (o.difference(&n).copied().collect(), n.difference(&o).copied().collect())
}

/// The value before the delta of set `id` (`undo` holds the touched ones).
fn set_before<'a>(new: &'a AppliedState, undo: &'a Undo, id: u32) -> Option<&'a AddressSet> {
    match undo.sets.get(&id) {
        Some(prev) => prev.as_ref(),
        None => new.sets.get(&id),
    }
}

fn policy_before<'a>(
    new: &'a AppliedState,
    undo: &'a Undo,
    key: &(u32, u8),
) -> Option<&'a EndpointPolicy> {
    match undo.policies.get(key) {
        Some(prev) => prev.as_ref(),
        None => new.policies.get(key),
    }
}

fn endpoint_before<'a>(new: &'a AppliedState, undo: &'a Undo, id: u32) -> Option<&'a Endpoint> {
    match undo.endpoints.get(&id) {
        Some(prev) => prev.as_ref(),
        None => new.endpoints.get(&id),
    }
}

/// The addresses of an endpoint, as dispatch keys.
fn endpoint_addrs(e: &Endpoint) -> impl Iterator<Item = (Fam, u128)> + '_ {
    e.v4.iter()
        .map(|&a| (Fam::V4, u128::from(a)))
        .chain(e.v6.iter().map(|p| (Fam::V6, names::v6_join(p.hi, p.lo))))
}

/// The verdict-map entries the delta can have changed: for every address of
/// a touched endpoint (before and after), and of an endpoint whose policy
/// for a direction appeared or disappeared, its entry before and after per
/// direction key (`render::dispatch` restricted to those addresses, without
/// building the whole map twice).
type DispatchChange = BTreeMap<(u8, Fam), Vec<(u128, Option<u32>, Option<u32>)>>;

fn dispatch_change(new: &AppliedState, undo: &Undo) -> DispatchChange {
    let mut affected: BTreeSet<(Fam, u128)> = BTreeSet::new();
    let mut add = |e: Option<&Endpoint>| {
        if let Some(e) = e {
            affected.extend(endpoint_addrs(e));
        }
    };
    for (&id, prev) in &undo.endpoints {
        add(prev.as_ref());
        add(new.endpoints.get(&id));
    }
    for (k, prev) in &undo.policies {
        if prev.is_some() != new.policies.contains_key(k) {
            add(endpoint_before(new, undo, k.0));
            add(new.endpoints.get(&k.0));
        }
    }
    let mut out = DispatchChange::new();
    if affected.is_empty() {
        return out;
    }
    // Owner (lowest endpoint id with the address) among the endpoints the
    // delta did not touch, then among the touched ones before and after.
    let mut untouched: BTreeMap<(Fam, u128), u32> = BTreeMap::new();
    for (&id, e) in &new.endpoints {
        if undo.endpoints.contains_key(&id) {
            continue;
        }
        for a in endpoint_addrs(e) {
            if affected.contains(&a) {
                untouched.entry(a).or_insert(id);
            }
        }
    }
    let owner = |a: &(Fam, u128), after: bool| -> Option<u32> {
        let mut best = untouched.get(a).copied();
        for (&id, prev) in &undo.endpoints {
            let e = if after { new.endpoints.get(&id) } else { prev.as_ref() };
            if e.is_some_and(|e| endpoint_addrs(e).any(|x| x == *a)) {
                best = Some(best.map_or(id, |b| b.min(id)));
            }
        }
        best
    };
    for a in &affected {
        let (o, n) = (owner(a, false), owner(a, true));
        for dk in [0u8, 1] {
            let o = o.filter(|&ep| policy_before(new, undo, &(ep, dk)).is_some());
            let n = n.filter(|&ep| new.policies.contains_key(&(ep, dk)));
            if o != n {
                out.entry((dk, a.0)).or_default().push((a.1, o, n));
            }
        }
    }
    out
}

/// The commands taking run sets from one content to another: new sets,
/// element deletes and adds of the sets kept, sets replaced whole, deleted
/// sets.
#[derive(Default)]
struct RunSetDiff {
    added: Vec<Value>,
    elem_del: Vec<Value>,
    elem_add: Vec<Value>,
    /// `delete set` of sets recreated below (after their chain's flush).
    replaced_del: Vec<Value>,
    /// `add set` with all its elements, of the sets deleted above.
    replaced_add: Vec<Value>,
    removed: Vec<Value>,
}

/// Whether a run set whose elements change by `changed` (deletes + adds)
/// out of `new_len` is cheaper to recreate than to diff. The kernel's
/// concatenated interval sets (pipapo) pay for every element delete or add
/// in an existing set about as much as for ten elements of a set created
/// with its elements (docs/benchmarks.md: 10 + 10 element changes in a
/// 4,000-element set 2.3 ms, 4,000 + 4,000 950 ms; 10,000 elements created
/// with their set 135 ms).
pub fn cheaper_to_recreate(changed: usize, new_len: usize) -> bool {
    changed > 16 && changed * 8 > new_len
}

impl RunSetDiff {
    /// Adds the commands for one policy's run sets. `rewritten`: the
    /// policy's chains are flushed before its rules are refilled, so no rule
    /// references its run sets in between and a set may be recreated.
    fn add(
        &mut self,
        t: &Table,
        old: BTreeMap<String, runs::RunSet>,
        new: BTreeMap<String, runs::RunSet>,
        rewritten: bool,
    ) {
        for (name, s) in &new {
            let Some(o) = old.get(name) else {
                self.added.push(runs::add_set(t, name, s));
                continue;
            };
            let (del, add) = diff(&o.elems, &s.elems);
            if rewritten
                && o.kind == s.kind
                && cheaper_to_recreate(del.len() + add.len(), s.elems.len())
            {
                self.replaced_del.push(t.delete_set(name));
                self.replaced_add.push(runs::add_set(t, name, s));
                continue;
            }
            if !del.is_empty() {
                self.elem_del.push(t.delete_elements(name, runs::elems_json(s.fam, s.kind, &del)));
            }
            if !add.is_empty() {
                self.elem_add.push(t.add_elements(name, runs::elems_json(s.fam, s.kind, &add)));
            }
        }
        for name in old.keys().filter(|n| !new.contains_key(*n)) {
            self.removed.push(t.delete_set(name));
        }
    }
}

/// The element deletes and adds taking the nft sets of address set `id`
/// from `o` to `n`.
fn address_set_diff(
    t: &Table,
    id: u32,
    o: &AddressSet,
    n: &AddressSet,
    elem_del: &mut Vec<Value>,
    elem_add: &mut Vec<Value>,
) {
    let (d4, a4) = diff(&render::normalize_v4(&o.v4), &render::normalize_v4(&n.v4));
    let (d6, a6) = diff(&render::normalize_v6(&o.v6), &render::normalize_v6(&n.v6));
    let s4 = names::set(id, Fam::V4);
    let s6 = names::set(id, Fam::V6);
    let e4 = |v: Vec<(u32, u8)>| {
        v.into_iter().map(|(a, l)| nft::addr_elem(nft::v4_elem(a, l))).collect()
    };
    let e6 = |v: Vec<(u128, u8)>| {
        v.into_iter().map(|(a, l)| nft::addr_elem(nft::v6_elem(a, l))).collect()
    };
    if !d4.is_empty() {
        elem_del.push(t.delete_elements(&s4, e4(d4)));
    }
    if !d6.is_empty() {
        elem_del.push(t.delete_elements(&s6, e6(d6)));
    }
    if !a4.is_empty() {
        elem_add.push(t.add_elements(&s4, e4(a4)));
    }
    if !a6.is_empty() {
        elem_add.push(t.add_elements(&s6, e6(a6)));
    }
}

/// Which address sets are in the table (`render::logged_sets`) before and
/// after the delta, for the sets whose answer the delta can have changed:
/// the touched sets and those the `log` rules of touched policies name.
/// Only those are looked up in the other policies, so a delta without
/// `log` rules or set changes costs nothing here.
struct LoggedChange {
    /// Set id → (in the table before, after); only the candidates.
    status: BTreeMap<u32, (bool, bool)>,
}

impl LoggedChange {
    fn of(new: &AppliedState, undo: &Undo, touched: &Touched) -> LoggedChange {
        let mut candidates: BTreeSet<u32> = touched.sets.clone();
        for key in &touched.policies {
            for p in [policy_before(new, undo, key), new.policies.get(key)].into_iter().flatten() {
                candidates.extend(runs::log_refs(p));
            }
        }
        let mut named_before = BTreeSet::new();
        let mut named_after = BTreeSet::new();
        if !candidates.is_empty() {
            for (key, p) in &new.policies {
                if !touched.policies.contains(key) {
                    let refs = runs::log_refs(p).filter(|id| candidates.contains(id));
                    for id in refs {
                        named_before.insert(id);
                        named_after.insert(id);
                    }
                }
            }
            for key in &touched.policies {
                if let Some(p) = policy_before(new, undo, key) {
                    named_before.extend(runs::log_refs(p).filter(|id| candidates.contains(id)));
                }
                if let Some(p) = new.policies.get(key) {
                    named_after.extend(runs::log_refs(p).filter(|id| candidates.contains(id)));
                }
            }
        }
        let status = candidates
            .into_iter()
            .map(|id| {
                let before = named_before.contains(&id) && set_before(new, undo, id).is_some();
                let after = named_after.contains(&id) && new.sets.contains_key(&id);
                (id, (before, after))
            })
            .collect();
        LoggedChange { status }
    }
}

/// Plans the batch taking the table to `new` from the state before the
/// delta (`new` with `undo` rolled back), given what the delta touched.
/// Falls back to a full replace when the delta has more than `threshold`
/// records. The cost is that of the delta (and of the touched sets and
/// policies), not of the table.
pub fn plan(
    t: &Table,
    new: &AppliedState,
    undo: &Undo,
    touched: &Touched,
    threshold: usize,
) -> Plan {
    if touched.records > threshold {
        return Plan::Full {
            reason: format!(
                "delta of {} records exceeds the update threshold {threshold}",
                touched.records
            ),
        };
    }
    let old_sets = |id: u32| set_before(new, undo, id);
    let new_sets = |id: u32| new.sets.get(&id);

    // Address sets: only those a `log` rule names are in the table.
    let logged = LoggedChange::of(new, undo, touched);
    let mut sets_new = Vec::new();
    let mut elem_del = Vec::new();
    let mut elem_add = Vec::new();
    let mut sets_del = Vec::new();
    for (&id, &(before, after)) in &logged.status {
        match (before, after) {
            (false, true) => {
                if let Some(s) = new.sets.get(&id) {
                    let (v4, v6) = render::set_elems(s);
                    sets_new.push(t.add_set(&names::set(id, Fam::V4), Fam::V4, v4));
                    sets_new.push(t.add_set(&names::set(id, Fam::V6), Fam::V6, v6));
                }
            }
            (true, false) => {
                sets_del.push(t.delete_set(&names::set(id, Fam::V4)));
                sets_del.push(t.delete_set(&names::set(id, Fam::V6)));
            }
            (true, true) => {
                if let (Some(o), Some(n)) = (old_sets(id), new_sets(id)) {
                    address_set_diff(t, id, o, n, &mut elem_del, &mut elem_add);
                }
            }
            (false, false) => {}
        }
    }

    // Policies to rewrite: the ones the delta names, those whose `log`
    // rules reference a set that appeared or disappeared (they name the
    // address set itself; runs only hold its elements), and those with a
    // run set that empties or fills (its lookup rule comes or goes).
    let mut policies = touched.policies.clone();
    let existence_changed: BTreeSet<u32> = touched
        .sets
        .iter()
        .copied()
        .filter(|&id| old_sets(id).is_some() != new_sets(id).is_some())
        .collect();
    if !existence_changed.is_empty() {
        for (k, p) in &new.policies {
            if runs::log_refs(p).any(|id| existence_changed.contains(&id)) {
                policies.insert(*k);
            }
        }
    }
    let mut runs_diff = RunSetDiff::default();
    // Run sets of the other policies whose runs use a touched set: the
    // difference of their elements while the same sets exist (their rules
    // stay), a rewrite otherwise.
    if !touched.sets.is_empty() {
        for (k, p) in &new.policies {
            if !policies.contains(k) && runs::references(p, &touched.sets) {
                let (o, n) = (runs::policy_sets(p, &old_sets), runs::policy_sets(p, &new_sets));
                if o.keys().eq(n.keys()) {
                    runs_diff.add(t, o, n, false);
                } else {
                    policies.insert(*k);
                }
            }
        }
    }
    let mut chains_new = Vec::new();
    let mut flushes = Vec::new();
    let mut rules = Vec::new();
    let mut chains_del = Vec::new();
    for key @ &(ep, dk) in &policies {
        let op = policy_before(new, undo, key);
        let n_old = op.map(render::chain_count).unwrap_or(0);
        let np = new.policies.get(key);
        let n_new = np.map(render::chain_count).unwrap_or(0);
        let dir = names::key_dir(dk);
        for i in 0..n_old.min(n_new) {
            flushes.push(t.flush_chain(&names::tier_chain(ep, dir, i)));
        }
        for i in n_old..n_new {
            chains_new.push(t.add_chain(&names::tier_chain(ep, dir, i)));
        }
        for i in n_new..n_old {
            chains_del.push(t.delete_chain(&names::tier_chain(ep, dir, i)));
        }
        // Recreating a set needs its rules gone first: only where every
        // tier chain of the policy is flushed (kept chains) or deleted.
        let old_runs = op.map(|p| runs::policy_sets(p, &old_sets)).unwrap_or_default();
        let new_runs = np.map(|p| runs::policy_sets(p, &new_sets)).unwrap_or_default();
        if let Some(p) = np {
            rules.extend(render::policy_rules(t, new, p, &|name| new_runs.contains_key(name)));
        }
        runs_diff.add(t, old_runs, new_runs, np.is_some());
    }
    let RunSetDiff {
        added: run_sets_new,
        elem_del: run_elem_del,
        elem_add: run_elem_add,
        replaced_del: run_sets_replaced_del,
        replaced_add: run_sets_replaced_add,
        removed: run_sets_del,
    } = runs_diff;

    // Verdict maps: the entries that changed.
    let mut vmap_del = Vec::new();
    let mut vmap_add = Vec::new();
    for ((dk, f), entries) in dispatch_change(new, undo) {
        let map = names::vmap(names::key_dir(dk), f);
        let dels: Vec<Value> = entries
            .iter()
            .filter(|(_, o, _)| o.is_some())
            .map(|&(a, _, _)| render::vmap_key(f, a))
            .collect();
        let adds: Vec<Value> = entries
            .iter()
            .filter_map(|&(a, _, n)| n.map(|ep| render::vmap_elem(f, a, dk, ep)))
            .collect();
        if !dels.is_empty() {
            vmap_del.push(t.delete_elements(&map, dels));
        }
        if !adds.is_empty() {
            vmap_add.push(t.add_elements(&map, adds));
        }
    }

    let cmds: Vec<Value> = [
        sets_new,
        run_sets_new,
        elem_del,
        run_elem_del,
        elem_add,
        run_elem_add,
        chains_new,
        flushes,
        run_sets_replaced_del,
        run_sets_replaced_add,
        rules,
        vmap_del,
        vmap_add,
        chains_del,
        run_sets_del,
        sets_del,
    ]
    .into_iter()
    .flatten()
    .collect();
    let commands = cmds.len();
    Plan::Incremental { batch: nft::batch(cmds), commands }
}

/// Applies `change` to `state` in place and plans the batch taking the
/// table there from the state before; returns the undo log (roll it back if
/// the batch fails: the state must change only once the kernel has the new
/// generation). A refused delta leaves `state` untouched.
pub fn update_in_place(
    t: &Table,
    state: &mut AppliedState,
    change: Delta,
    threshold: usize,
) -> Result<(Undo, Plan), Error> {
    if !state.applied {
        return Err(palisade_plugin_sdk::invalid_input("update before any apply"));
    }
    let touched = Touched::of(&change);
    let undo = state.update_logged(change)?;
    let plan = plan(t, state, &undo, &touched, threshold);
    Ok((undo, plan))
}

/// The state after `change` and the plan taking the table there from `old`,
/// leaving `old` untouched (a copy: for tests; the plugin updates in place
/// with [`update_in_place`]).
pub fn plan_update(
    t: &Table,
    old: &AppliedState,
    change: Delta,
    threshold: usize,
) -> Result<(AppliedState, Plan), Error> {
    let mut new = crate::state::copy(old);
    let (_undo, plan) = update_in_place(t, &mut new, change, threshold)?;
    Ok((new, plan))
}
