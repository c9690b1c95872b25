//! The resolver's output: the canonical rule set, patched in place, and a
//! journal of what changed since the last delta was taken.

use std::collections::HashMap;

use palisade_model::{
    Cidr, Delta, Endpoint, EndpointId, EndpointPolicy, Origin, PolicyKey, RuleSet, SetChange, SetId,
};

/// The rule set plus the journal that turns it into deltas.
///
/// Every list of the rule set stays sorted by id; updates use binary search,
/// so one change costs a logarithmic search plus at worst a shift of the list.
#[derive(Debug, Default)]
pub(crate) struct Output {
    rs: RuleSet,
    /// Generation of the rule set when the last delta was taken.
    taken_generation: u64,
    /// Number of origins already handed out in a delta.
    origins_taken: usize,
    /// Previous value (as of the last take) of every set touched since.
    old_sets: HashMap<SetId, Option<Vec<Cidr>>>,
    old_endpoints: HashMap<EndpointId, Option<Endpoint>>,
    old_policies: HashMap<PolicyKey, Option<EndpointPolicy>>,
    /// Something changed in the batch being processed.
    changed: bool,
}

impl Output {
    pub(crate) fn rule_set(&self) -> &RuleSet {
        &self.rs
    }

    pub(crate) fn set_prefixes(&self, id: SetId) -> Option<&[Cidr]> {
        self.rs
            .sets
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| self.rs.sets[i].prefixes.as_slice())
    }

    /// Creates or replaces the content of a set.
    pub(crate) fn upsert_set(&mut self, id: SetId, prefixes: Vec<Cidr>) {
        match self.rs.sets.binary_search_by_key(&id, |s| s.id) {
            Ok(i) => {
                if self.rs.sets[i].prefixes == prefixes {
                    return;
                }
                let old = std::mem::replace(&mut self.rs.sets[i].prefixes, prefixes);
                self.old_sets.entry(id).or_insert(Some(old));
            }
            Err(i) => {
                self.old_sets.entry(id).or_insert(None);
                self.rs.sets.insert(i, palisade_model::AddressSet { id, prefixes });
            }
        }
        self.changed = true;
    }

    pub(crate) fn remove_set(&mut self, id: SetId) {
        if let Ok(i) = self.rs.sets.binary_search_by_key(&id, |s| s.id) {
            let old = self.rs.sets.remove(i);
            self.old_sets.entry(id).or_insert(Some(old.prefixes));
            self.changed = true;
        }
    }

    pub(crate) fn upsert_endpoint(&mut self, endpoint: Endpoint) {
        let id = endpoint.id;
        match self.rs.endpoints.binary_search_by_key(&id, |e| e.id) {
            Ok(i) => {
                if self.rs.endpoints[i] == endpoint {
                    return;
                }
                let old = std::mem::replace(&mut self.rs.endpoints[i], endpoint);
                self.old_endpoints.entry(id).or_insert(Some(old));
            }
            Err(i) => {
                self.old_endpoints.entry(id).or_insert(None);
                self.rs.endpoints.insert(i, endpoint);
            }
        }
        self.changed = true;
    }

    pub(crate) fn remove_endpoint(&mut self, id: EndpointId) {
        if let Ok(i) = self.rs.endpoints.binary_search_by_key(&id, |e| e.id) {
            let old = self.rs.endpoints.remove(i);
            self.old_endpoints.entry(id).or_insert(Some(old));
            self.changed = true;
        }
    }

    pub(crate) fn upsert_policy(&mut self, policy: EndpointPolicy) {
        let key = policy.key();
        match self.rs.policies.binary_search_by_key(&key, |p| p.key()) {
            Ok(i) => {
                if self.rs.policies[i] == policy {
                    return;
                }
                let old = std::mem::replace(&mut self.rs.policies[i], policy);
                self.old_policies.entry(key).or_insert(Some(old));
            }
            Err(i) => {
                self.old_policies.entry(key).or_insert(None);
                self.rs.policies.insert(i, policy);
            }
        }
        self.changed = true;
    }

    pub(crate) fn remove_policy(&mut self, key: PolicyKey) {
        if let Ok(i) = self.rs.policies.binary_search_by_key(&key, |p| p.key()) {
            let old = self.rs.policies.remove(i);
            self.old_policies.entry(key).or_insert(Some(old));
            self.changed = true;
        }
    }

    /// Appends an origin; ids are handed out densely, so an origin's id is
    /// its index in the list (as the WIT contract has it).
    pub(crate) fn push_origin(&mut self, origin: Origin) {
        debug_assert_eq!(origin.id as usize, self.rs.origins.len());
        self.rs.origins.push(origin);
        self.changed = true;
    }

    pub(crate) fn origin_count(&self) -> usize {
        self.rs.origins.len()
    }

    /// Closes a batch: the generation moves on once if anything changed.
    pub(crate) fn finish_batch(&mut self) -> bool {
        let changed = std::mem::take(&mut self.changed);
        if changed {
            self.rs.generation += 1;
        }
        changed
    }

    /// What changed since the last call (or since the start).
    pub(crate) fn take_delta(&mut self) -> Delta {
        let mut d = Delta {
            base: self.taken_generation,
            generation: self.rs.generation,
            ..Delta::default()
        };
        d.origins_added = self.rs.origins[self.origins_taken..].to_vec();
        self.origins_taken = self.rs.origins.len();

        let mut sets: Vec<_> = self.old_sets.drain().collect();
        sets.sort_by_key(|(id, _)| *id);
        for (id, old) in sets {
            let now =
                self.rs.sets.binary_search_by_key(&id, |s| s.id).ok().map(|i| &self.rs.sets[i]);
            match (old, now) {
                (None, Some(set)) => d.sets_added.push(set.clone()),
                (Some(_), None) => d.sets_removed.push(id),
                (Some(old), Some(set)) if old != set.prefixes => {
                    let (added, removed) = sorted_difference(&old, &set.prefixes);
                    d.sets_changed.push(SetChange { id, added, removed });
                }
                _ => {}
            }
        }

        let mut eps: Vec<_> = self.old_endpoints.drain().collect();
        eps.sort_by_key(|(id, _)| *id);
        for (id, old) in eps {
            let now = self
                .rs
                .endpoints
                .binary_search_by_key(&id, |e| e.id)
                .ok()
                .map(|i| &self.rs.endpoints[i]);
            match now {
                Some(e) if old.as_ref() != Some(e) => d.endpoints_upserted.push(e.clone()),
                None if old.is_some() => d.endpoints_removed.push(id),
                _ => {}
            }
        }

        let mut pols: Vec<_> = self.old_policies.drain().collect();
        pols.sort_by_key(|(k, _)| *k);
        for (key, old) in pols {
            let now = self
                .rs
                .policies
                .binary_search_by_key(&key, |p| p.key())
                .ok()
                .map(|i| &self.rs.policies[i]);
            match now {
                Some(p) if old.as_ref() != Some(p) => d.policies_upserted.push(p.clone()),
                None if old.is_some() => d.policies_removed.push(key),
                _ => {}
            }
        }
        self.taken_generation = self.rs.generation;
        d
    }
}

/// `(new - old, old - new)` of two sorted lists.
fn sorted_difference(old: &[Cidr], new: &[Cidr]) -> (Vec<Cidr>, Vec<Cidr>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(_), Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (None, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}
