//! The rule set a plugin has applied, kept current through deltas.

use std::collections::BTreeMap;

use crate::types::{
    AddressSet, Delta, Direction, Endpoint, EndpointPolicy, Error, ErrorCode, Origin, RuleSet,
};

/// What the host has handed the plugin so far: the last full rule set with
/// every delta since applied to it. Backends use it to compute what to
/// program and to answer `evaluate`.
#[derive(Default)]
pub struct AppliedState {
    pub generation: u64,
    pub endpoints: BTreeMap<u32, Endpoint>,
    pub sets: BTreeMap<u32, AddressSet>,
    pub policies: BTreeMap<(u32, u8), EndpointPolicy>,
    pub origins: BTreeMap<u32, Origin>,
    pub applied: bool,
}

/// What one delta replaced: for every key it touched, the record before
/// (`None`: there was none). Keys not in a map were not touched.
#[derive(Default)]
pub struct Undo {
    pub generation: u64,
    pub endpoints: BTreeMap<u32, Option<Endpoint>>,
    pub sets: BTreeMap<u32, Option<AddressSet>>,
    pub policies: BTreeMap<(u32, u8), Option<EndpointPolicy>>,
    pub origins: BTreeMap<u32, Option<Origin>>,
}

fn dir_key(d: Direction) -> u8 {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl AppliedState {
    /// Replaces the state with a full rule set.
    pub fn apply(&mut self, rules: RuleSet) {
        self.generation = rules.generation;
        self.endpoints = rules.endpoints.into_iter().map(|e| (e.id, e)).collect();
        self.sets = rules.sets.into_iter().map(|s| (s.id, s)).collect();
        self.policies =
            rules.policies.into_iter().map(|p| ((p.endpoint, dir_key(p.direction)), p)).collect();
        self.origins = rules.origins.into_iter().map(|o| (o.id, o)).collect();
        self.applied = true;
    }

    /// Applies a delta; refuses one whose base is not the current generation
    /// or that changes an unknown set, leaving the state untouched.
    pub fn update(&mut self, d: Delta) -> Result<(), Error> {
        self.update_logged(d).map(drop)
    }

    /// As [`AppliedState::update`], and returns what the delta replaced: the
    /// prior value of every record it touched (a copy of only those), so the
    /// caller can compare before and after, or [`AppliedState::rollback`].
    pub fn update_logged(&mut self, d: Delta) -> Result<Undo, Error> {
        if !self.applied {
            return Err(Error {
                code: ErrorCode::InvalidInput,
                message: "update before any apply".into(),
            });
        }
        if d.base != self.generation {
            return Err(Error {
                code: ErrorCode::InvalidInput,
                message: format!(
                    "delta base generation {} does not match applied generation {}",
                    d.base, self.generation
                ),
            });
        }
        for c in &d.sets_changed {
            if !self.sets.contains_key(&c.id) && !d.sets_added.iter().any(|s| s.id == c.id) {
                return Err(Error {
                    code: ErrorCode::InvalidInput,
                    message: format!("delta changes unknown address set {}", c.id),
                });
            }
        }
        let mut u = Undo { generation: self.generation, ..Undo::default() };
        self.generation = d.generation;
        for o in d.origins_added {
            let id = o.id;
            let prev = self.origins.insert(id, o);
            u.origins.entry(id).or_insert(prev);
        }
        for s in d.sets_added {
            let id = s.id;
            let prev = self.sets.insert(id, s);
            u.sets.entry(id).or_insert(prev);
        }
        for c in d.sets_changed {
            if let Some(s) = self.sets.get_mut(&c.id) {
                u.sets.entry(c.id).or_insert_with(|| Some(s.clone()));
                s.v4.retain(|p| !c.remove_v4.iter().any(|r| r.addr == p.addr && r.len == p.len));
                s.v4.extend(c.add_v4);
                s.v6.retain(|p| {
                    !c.remove_v6.iter().any(|r| r.hi == p.hi && r.lo == p.lo && r.len == p.len)
                });
                s.v6.extend(c.add_v6);
            }
        }
        for id in d.sets_removed {
            let prev = self.sets.remove(&id);
            u.sets.entry(id).or_insert(prev);
        }
        for e in d.endpoints_upserted {
            let id = e.id;
            let prev = self.endpoints.insert(id, e);
            u.endpoints.entry(id).or_insert(prev);
        }
        for id in d.endpoints_removed {
            let prev = self.endpoints.remove(&id);
            u.endpoints.entry(id).or_insert(prev);
        }
        for p in d.policies_upserted {
            let k = (p.endpoint, dir_key(p.direction));
            let prev = self.policies.insert(k, p);
            u.policies.entry(k).or_insert(prev);
        }
        for k in d.policies_removed {
            let k = (k.endpoint, dir_key(k.direction));
            let prev = self.policies.remove(&k);
            u.policies.entry(k).or_insert(prev);
        }
        Ok(u)
    }

    /// Undoes the [`AppliedState::update_logged`] that returned `u` (the
    /// last one applied).
    pub fn rollback(&mut self, u: Undo) {
        self.generation = u.generation;
        fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, log: BTreeMap<K, Option<V>>) {
            for (k, prev) in log {
                match prev {
                    Some(v) => map.insert(k, v),
                    None => map.remove(&k),
                };
            }
        }
        restore(&mut self.origins, u.origins);
        restore(&mut self.sets, u.sets);
        restore(&mut self.endpoints, u.endpoints);
        restore(&mut self.policies, u.policies);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = AppliedState::default();
    }

    /// Number of rules over all endpoint policies.
    pub fn rule_count(&self) -> usize {
        self.policies.values().flat_map(|p| &p.tiers).map(|t| t.rules.len()).sum()
    }
}

std::thread_local! {
    static APPLIED: std::cell::RefCell<AppliedState> =
        std::cell::RefCell::new(AppliedState::default());
}

/// The instance's own [`AppliedState`]: most plugins keep exactly one, and
/// these helpers spare each of them the bookkeeping. A component instance is
/// single-threaded, so a thread-local is the instance's state.
pub mod applied {
    use super::{AppliedState, APPLIED};
    use crate::types::{Delta, Error, RuleSet};

    /// Records a full rule set.
    pub fn apply(rules: RuleSet) {
        APPLIED.with(|s| s.borrow_mut().apply(rules));
    }

    /// Records a delta (refused, with the state untouched, if it does not fit).
    pub fn update(change: Delta) -> Result<(), Error> {
        APPLIED.with(|s| s.borrow_mut().update(change))
    }

    /// Forgets everything.
    pub fn clear() {
        APPLIED.with(|s| s.borrow_mut().clear());
    }

    /// Reads the state.
    pub fn with<R>(f: impl FnOnce(&AppliedState) -> R) -> R {
        APPLIED.with(|s| f(&s.borrow()))
    }

    /// Changes the state in place (e.g. [`AppliedState::update_logged`],
    /// then [`AppliedState::rollback`] if programming it failed).
    pub fn with_mut<R>(f: impl FnOnce(&mut AppliedState) -> R) -> R {
        APPLIED.with(|s| f(&mut s.borrow_mut()))
    }

    /// Replaces the state with one built by the plugin (no copy).
    pub fn replace(state: AppliedState) {
        APPLIED.with(|s| *s.borrow_mut() = state);
    }
}
