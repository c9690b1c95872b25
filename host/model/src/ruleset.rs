//! The intermediate form: the resolved rule set of one node.
//!
//! This mirrors the `types` interface of `wit/0.1.0/backend.wit` one to one;
//! the plugin host converts between the two. Every list is kept sorted by id
//! so that two rule sets can be compared and diffed cheaply.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::{Cidr, Protocol};

pub type EndpointId = u32;
pub type SetId = u32;
pub type OriginId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Accept the connection (for this direction).
    Allow,
    /// Drop the connection.
    Deny,
    /// Skip the rest of this tier; continue with the next tier.
    Pass,
    /// Record the match and continue with the next rule.
    Log,
}

/// What happens when no rule of a tier matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoMatch {
    NextTier,
    Deny,
}

/// A protocol with an inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Every port of a protocol.
    pub fn all(protocol: Protocol) -> PortRange {
        PortRange { protocol, first: 1, last: u16::MAX }
    }

    pub fn single(protocol: Protocol, port: u16) -> PortRange {
        PortRange { protocol, first: port, last: port }
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && self.first <= port && port <= self.last
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    Any,
    Set(SetId),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub action: Action,
    pub peer: Peer,
    /// Empty: every port of every protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    pub origin: OriginId,
}

impl Rule {
    /// True if the rule's ports admit (protocol, port).
    pub fn matches_port(&self, protocol: Protocol, port: u16) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|p| p.contains(protocol, port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tier {
    pub rules: Vec<Rule>,
    pub no_match: NoMatch,
}

/// The policy of one endpoint in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointPolicy {
    pub endpoint: EndpointId,
    pub direction: Direction,
    pub tiers: Vec<Tier>,
}

impl EndpointPolicy {
    pub fn key(&self) -> PolicyKey {
        PolicyKey { endpoint: self.endpoint, direction: self.direction }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyKey {
    pub endpoint: EndpointId,
    pub direction: Direction,
}

/// A local workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    /// `namespace/name`.
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// An interned set of addresses, as disjoint prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddressSet {
    pub id: SetId,
    pub prefixes: Vec<Cidr>,
}

impl AddressSet {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }
}

/// Which policy object (and which of its rules) produced a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub id: OriginId,
    /// e.g. `networking.k8s.io/v1 NetworkPolicy`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// e.g. `ingress[0]`.
    pub rule: String,
}

/// The complete rule set of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub generation: u64,
    pub endpoints: Vec<Endpoint>,
    pub sets: Vec<AddressSet>,
    pub policies: Vec<EndpointPolicy>,
    pub origins: Vec<Origin>,
}

/// Membership change of one set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetChange {
    pub id: SetId,
    pub added: Vec<Cidr>,
    pub removed: Vec<Cidr>,
}

/// The change from generation `base` to `generation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub base: u64,
    pub generation: u64,
    pub origins_added: Vec<Origin>,
    pub sets_added: Vec<AddressSet>,
    pub sets_changed: Vec<SetChange>,
    pub sets_removed: Vec<SetId>,
    pub endpoints_upserted: Vec<Endpoint>,
    pub endpoints_removed: Vec<EndpointId>,
    pub policies_upserted: Vec<EndpointPolicy>,
    pub policies_removed: Vec<PolicyKey>,
}

impl Delta {
    /// True if the delta changes nothing but the generation.
    pub fn is_empty(&self) -> bool {
        self.origins_added.is_empty()
            && self.sets_added.is_empty()
            && self.sets_changed.is_empty()
            && self.sets_removed.is_empty()
            && self.endpoints_upserted.is_empty()
            && self.endpoints_removed.is_empty()
            && self.policies_upserted.is_empty()
            && self.policies_removed.is_empty()
    }

    /// Number of records the delta carries (for logs and budgets).
    pub fn size(&self) -> usize {
        self.origins_added.len()
            + self.sets_added.len()
            + self.sets_changed.iter().map(|c| c.added.len() + c.removed.len()).sum::<usize>()
            + self.sets_removed.len()
            + self.endpoints_upserted.len()
            + self.endpoints_removed.len()
            + self.policies_upserted.len()
            + self.policies_removed.len()
    }
}

/// Why a delta does not fit the rule set it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta base generation {base} does not match rule set generation {current}")]
    Generation { base: u64, current: u64 },
    #[error("delta changes address set {0}, which does not exist")]
    UnknownSet(SetId),
    #[error("delta adds origin {0}, which already exists")]
    DuplicateOrigin(OriginId),
}

impl RuleSet {
    /// Sorts every list by id (the canonical form used by `diff`).
    pub fn canonicalize(&mut self) {
        self.endpoints.sort_by_key(|e| e.id);
        self.sets.sort_by_key(|s| s.id);
        self.policies.sort_by_key(|p| p.key());
        self.origins.sort_by_key(|o| o.id);
    }

    pub fn endpoint(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    pub fn set(&self, id: SetId) -> Option<&AddressSet> {
        self.sets.iter().find(|s| s.id == id)
    }

    pub fn origin(&self, id: OriginId) -> Option<&Origin> {
        self.origins.iter().find(|o| o.id == id)
    }

    pub fn policy(&self, endpoint: EndpointId, direction: Direction) -> Option<&EndpointPolicy> {
        self.policies.iter().find(|p| p.endpoint == endpoint && p.direction == direction)
    }

    /// Number of rules over all endpoint policies.
    pub fn rule_count(&self) -> usize {
        self.policies.iter().flat_map(|p| &p.tiers).map(|t| t.rules.len()).sum()
    }

    /// The delta that turns `self` into `next`. Origins are append-only in a
    /// delta: origins that `next` no longer uses stay known to the backend.
    pub fn diff(&self, next: &RuleSet) -> Delta {
        let mut d =
            Delta { base: self.generation, generation: next.generation, ..Delta::default() };

        let old_origins: BTreeMap<_, _> = self.origins.iter().map(|o| (o.id, o)).collect();
        d.origins_added =
            next.origins.iter().filter(|o| !old_origins.contains_key(&o.id)).cloned().collect();

        let old_sets: BTreeMap<_, _> = self.sets.iter().map(|s| (s.id, s)).collect();
        let new_sets: BTreeMap<_, _> = next.sets.iter().map(|s| (s.id, s)).collect();
        for (id, set) in &new_sets {
            match old_sets.get(id) {
                None => d.sets_added.push((*set).clone()),
                Some(old) if old.prefixes != set.prefixes => {
                    let added = set
                        .prefixes
                        .iter()
                        .filter(|p| !old.prefixes.contains(p))
                        .copied()
                        .collect();
                    let removed = old
                        .prefixes
                        .iter()
                        .filter(|p| !set.prefixes.contains(p))
                        .copied()
                        .collect();
                    d.sets_changed.push(SetChange { id: *id, added, removed });
                }
                Some(_) => {}
            }
        }
        d.sets_removed = old_sets.keys().filter(|id| !new_sets.contains_key(id)).copied().collect();

        let old_eps: BTreeMap<_, _> = self.endpoints.iter().map(|e| (e.id, e)).collect();
        let new_eps: BTreeMap<_, _> = next.endpoints.iter().map(|e| (e.id, e)).collect();
        d.endpoints_upserted = new_eps
            .iter()
            .filter(|(id, e)| old_eps.get(id) != Some(e))
            .map(|(_, e)| (*e).clone())
            .collect();
        d.endpoints_removed =
            old_eps.keys().filter(|id| !new_eps.contains_key(id)).copied().collect();

        let old_pol: BTreeMap<_, _> = self.policies.iter().map(|p| (p.key(), p)).collect();
        let new_pol: BTreeMap<_, _> = next.policies.iter().map(|p| (p.key(), p)).collect();
        d.policies_upserted = new_pol
            .iter()
            .filter(|(k, p)| old_pol.get(k) != Some(p))
            .map(|(_, p)| (*p).clone())
            .collect();
        d.policies_removed = old_pol.keys().filter(|k| !new_pol.contains_key(k)).copied().collect();
        d
    }

    /// Checks that a delta fits this rule set (its base generation, the sets
    /// it changes, the origins it adds), without changing anything.
    pub fn check_delta(&self, d: &Delta) -> Result<(), DeltaError> {
        if d.base != self.generation {
            return Err(DeltaError::Generation { base: d.base, current: self.generation });
        }
        for o in &d.origins_added {
            if self.origin(o.id).is_some() {
                return Err(DeltaError::DuplicateOrigin(o.id));
            }
        }
        for c in &d.sets_changed {
            let known = self.set(c.id).is_some() || d.sets_added.iter().any(|s| s.id == c.id);
            if !known {
                return Err(DeltaError::UnknownSet(c.id));
            }
        }
        Ok(())
    }

    /// Applies a delta in place, in time proportional to the delta (each
    /// record is found by binary search: the rule set must be in canonical
    /// order, see [`RuleSet::canonicalize`]). On error nothing is changed.
    pub fn apply_delta(&mut self, d: &Delta) -> Result<(), DeltaError> {
        self.check_delta(d)?;
        self.generation = d.generation;
        for o in &d.origins_added {
            upsert(&mut self.origins, o.clone(), |o| o.id);
        }
        for s in &d.sets_added {
            upsert(&mut self.sets, s.clone(), |s| s.id);
        }
        for c in &d.sets_changed {
            if let Ok(i) = self.sets.binary_search_by_key(&c.id, |s| s.id) {
                let s = &mut self.sets[i];
                s.prefixes.retain(|p| !c.removed.contains(p));
                for p in &c.added {
                    if !s.prefixes.contains(p) {
                        s.prefixes.push(*p);
                    }
                }
                s.prefixes.sort();
            }
        }
        for id in &d.sets_removed {
            remove(&mut self.sets, id, |s| s.id);
        }
        for e in &d.endpoints_upserted {
            upsert(&mut self.endpoints, e.clone(), |e| e.id);
        }
        for id in &d.endpoints_removed {
            remove(&mut self.endpoints, id, |e| e.id);
        }
        for p in &d.policies_upserted {
            upsert(&mut self.policies, p.clone(), EndpointPolicy::key);
        }
        for k in &d.policies_removed {
            remove(&mut self.policies, k, EndpointPolicy::key);
        }
        Ok(())
    }
}

/// Inserts or replaces `item` in a list sorted by `key`.
fn upsert<T, K: Ord>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    match list.binary_search_by(|x| key(x).cmp(&key(&item))) {
        Ok(i) => list[i] = item,
        Err(i) => list.insert(i, item),
    }
}

/// Removes the entry with key `k` from a list sorted by `key`, if present.
fn remove<T, K: Ord>(list: &mut Vec<T>, k: &K, key: impl Fn(&T) -> K) {
    if let Ok(i) = list.binary_search_by(|x| key(x).cmp(k)) {
        list.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(generation: u64, members: &[&str], extra_policy: bool) -> RuleSet {
        let mut rs = RuleSet {
            generation,
            endpoints: vec![Endpoint {
                id: 1,
                name: "ns/a".into(),
                addresses: vec!["10.0.0.1".parse().unwrap()],
            }],
            sets: vec![AddressSet {
                id: 7,
                prefixes: members.iter().map(|m| m.parse().unwrap()).collect(),
            }],
            policies: vec![EndpointPolicy {
                endpoint: 1,
                direction: Direction::Ingress,
                tiers: vec![Tier {
                    rules: vec![Rule {
                        action: Action::Allow,
                        peer: Peer::Set(7),
                        ports: vec![PortRange::single(Protocol::Tcp, 80)],
                        origin: 0,
                    }],
                    no_match: NoMatch::Deny,
                }],
            }],
            origins: vec![Origin {
                id: 0,
                kind: "networking.k8s.io/v1 NetworkPolicy".into(),
                namespace: "ns".into(),
                name: "p".into(),
                rule: "ingress[0]".into(),
            }],
        };
        if extra_policy {
            rs.policies.push(EndpointPolicy {
                endpoint: 1,
                direction: Direction::Egress,
                tiers: vec![Tier { rules: vec![], no_match: NoMatch::Deny }],
            });
        }
        rs.canonicalize();
        rs
    }

    #[test]
    fn diff_then_apply_reproduces_the_target() {
        let a = sample(1, &["10.0.0.2/32", "10.0.0.3/32"], false);
        let b = sample(2, &["10.0.0.3/32", "10.0.0.4/32"], true);
        let d = a.diff(&b);
        assert_eq!(d.sets_changed.len(), 1);
        assert_eq!(d.sets_changed[0].added, vec!["10.0.0.4/32".parse().unwrap()]);
        assert_eq!(d.sets_changed[0].removed, vec!["10.0.0.2/32".parse().unwrap()]);
        assert_eq!(d.policies_upserted.len(), 1);
        assert!(d.endpoints_upserted.is_empty());
        let mut c = a.clone();
        c.apply_delta(&d).unwrap();
        assert_eq!(c, b);

        let back = b.diff(&a);
        assert_eq!(
            back.policies_removed,
            vec![PolicyKey { endpoint: 1, direction: Direction::Egress }]
        );
    }

    #[test]
    fn apply_delta_checks_the_generation_and_changes_nothing_on_error() {
        let a = sample(1, &["10.0.0.2/32"], false);
        let b = sample(2, &["10.0.0.3/32"], false);
        let mut d = a.diff(&b);
        d.base = 5;
        let mut c = a.clone();
        assert_eq!(c.apply_delta(&d), Err(DeltaError::Generation { base: 5, current: 1 }));
        assert_eq!(c, a);
    }

    #[test]
    fn rule_port_matching() {
        let r = Rule { action: Action::Allow, peer: Peer::Any, ports: vec![], origin: 0 };
        assert!(r.matches_port(Protocol::Sctp, 9));
        let r =
            Rule { ports: vec![PortRange { protocol: Protocol::Udp, first: 50, last: 60 }], ..r };
        assert!(r.matches_port(Protocol::Udp, 50));
        assert!(r.matches_port(Protocol::Udp, 60));
        assert!(!r.matches_port(Protocol::Udp, 61));
        assert!(!r.matches_port(Protocol::Tcp, 55));
    }
}
