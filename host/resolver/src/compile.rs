//! Policies compiled into endpoint-independent rules over address sources.

use std::collections::BTreeSet;

use palisade_model::policy::{
    CalicoPeer, ObjectRef, PeerSelector, PodSet, Policy, PolicyRule, PortSelector,
};
use palisade_model::{net, Action, Cidr, Direction, Origin, OriginId, PortRange, Protocol};

use crate::resolver::Resolver;
use crate::selectors::{named_port, NamedGroup, PolIdx, SelId};
use crate::sources::{Source, SourceKey};

/// The peer of a compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompiledPeer {
    Any,
    Source(SourceKey),
}

/// One rule of a policy, resolved except for ingress named ports (which
/// depend on the endpoint it is rendered for).
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) action: Action,
    pub(crate) peer: CompiledPeer,
    pub(crate) ports: Vec<PortRange>,
    /// Ingress only: named ports to resolve against the local endpoint.
    pub(crate) named: Vec<(Protocol, String)>,
    /// The rule named ports: if none is left after resolution it matches
    /// nothing.
    pub(crate) restricted: bool,
    pub(crate) origin: OriginId,
    /// Calico: what the local endpoint must meet for the rule to apply.
    pub(crate) local: Option<LocalCondition>,
}

/// Conditions on the local endpoint (a Calico ingress rule's
/// `destination`, an egress rule's `source`), checked when the endpoint's
/// policy is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalCondition {
    pub(crate) sel: Option<SelId>,
    pub(crate) not_sel: Option<SelId>,
    /// Some address of the endpoint lies inside (`notNets` taken out).
    pub(crate) nets: Option<Vec<Cidr>>,
    pub(crate) ip_version: Option<u8>,
}

/// What a compiled policy holds references to.
#[derive(Debug, Default)]
pub(crate) struct Holdings {
    selectors: Vec<SelId>,
    groups: Vec<(SelId, Protocol, String)>,
    sources: BTreeSet<SourceKey>,
}

/// A policy as the resolver keeps it.
#[derive(Debug)]
pub(crate) struct PolicyEntry {
    pub(crate) policy: Policy,
    pub(crate) subject: SelId,
    /// Per direction (ingress, egress): `Some` if the policy governs it.
    pub(crate) compiled: [Option<Vec<CompiledRule>>; 2],
    holdings: Holdings,
}

pub(crate) fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// A Calico side's `nets` minus its `notNets` (`None`: neither given).
fn calico_nets(p: &CalicoPeer) -> Option<Vec<Cidr>> {
    if p.nets.is_none() && p.not_nets.is_empty() {
        return None;
    }
    let nets = p.nets.clone().map(net::normalize).unwrap_or_else(crate::calico::everything);
    Some(crate::calico::subtract(&nets, &net::normalize(p.not_nets.clone())))
}

/// `cidr` minus every except, as normalized disjoint prefixes.
pub fn block_prefixes(cidr: &Cidr, except: &[Cidr]) -> Vec<Cidr> {
    let mut rest = vec![*cidr];
    for hole in except {
        rest = rest.iter().flat_map(|p| p.subtract(hole)).collect();
    }
    net::normalize(rest)
}

impl Resolver {
    pub(crate) fn upsert_policy(&mut self, policy: Policy) {
        let idx = match self.policy_index.get(&policy.object) {
            Some(&i) => i,
            None => {
                let i = self.free_policies.pop().unwrap_or(self.policies.len() as PolIdx);
                if i as usize == self.policies.len() {
                    self.policies.push(None);
                }
                self.policy_index.insert(policy.object.clone(), i);
                i
            }
        };
        let old = self.policies[idx as usize].take();
        let old_subject = old.as_ref().map(|o| o.subject);
        if let Some(old) = old {
            self.release_holdings(idx, old.holdings);
        }
        let entry = self.compile(idx, policy);
        let subject = entry.subject;
        self.policies[idx as usize] = Some(Box::new(entry));
        if old_subject != Some(subject) {
            if let Some(old_subject) = old_subject {
                self.set_subject(old_subject, idx, false);
            }
            self.set_subject(subject, idx, true);
        } else {
            self.mark_subject_dirty(idx);
        }
    }

    pub(crate) fn delete_policy(&mut self, object: &ObjectRef) {
        let Some(idx) = self.policy_index.remove(object) else {
            return;
        };
        let Some(old) = self.policies[idx as usize].take() else {
            return;
        };
        self.set_subject(old.subject, idx, false);
        self.release_holdings(idx, old.holdings);
        self.free_policies.push(idx);
        self.dirty_policies.remove(&idx);
    }

    /// Compiles a policy again (the port numbers behind one of its named
    /// ports changed).
    pub(crate) fn recompile(&mut self, idx: PolIdx) {
        let Some(old) = self.policies.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        let PolicyEntry { policy, holdings, .. } = *old;
        self.release_holdings(idx, holdings);
        let entry = self.compile(idx, policy);
        self.policies[idx as usize] = Some(Box::new(entry));
        self.mark_subject_dirty(idx);
    }

    /// Adds (or removes) policy `idx` as a subject of selector `sel`.
    fn set_subject(&mut self, sel: SelId, idx: PolIdx, add: bool) {
        let Some(s) = self.selectors.sels.get_mut(&sel) else {
            return;
        };
        if add {
            s.subject_of.insert(idx);
        } else {
            s.subject_of.remove(&idx);
        }
        for &member in &s.members {
            let Some(entry) = self.pods.get_mut(member as usize).and_then(Option::as_deref_mut)
            else {
                continue;
            };
            if entry.endpoint.is_none() {
                continue;
            }
            if add {
                entry.selected_by.insert(idx);
            } else {
                entry.selected_by.remove(&idx);
            }
            self.dirty_endpoints.insert(member);
        }
    }

    fn release_holdings(&mut self, idx: PolIdx, holdings: Holdings) {
        for sel in holdings.selectors {
            self.release_selector(sel);
        }
        for (sel, protocol, name) in holdings.groups {
            if let Some(group) = self
                .selectors
                .sels
                .get_mut(&sel)
                .and_then(|s| s.groups.get_mut(&(protocol, name.clone())))
            {
                group.users.remove(&idx);
                if group.users.is_empty() {
                    self.gc_groups.insert((sel, protocol, name));
                }
            }
        }
        for key in holdings.sources {
            if let Some(source) = self.sources.get_mut(&key) {
                source.users.remove(&idx);
                if source.users.is_empty() && source.pins == 0 {
                    self.gc_sources.insert(key);
                }
            }
        }
    }

    pub(crate) fn origin_id(&mut self, object: &ObjectRef, rule: &str) -> OriginId {
        let key = (object.clone(), rule.to_string());
        if let Some(&id) = self.origins.get(&key) {
            return id;
        }
        let id = self.out.origin_count() as OriginId;
        self.out.push_origin(Origin {
            id,
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            rule: rule.to_string(),
        });
        self.origins.insert(key, id);
        id
    }

    fn compile(&mut self, idx: PolIdx, policy: Policy) -> PolicyEntry {
        let mut holdings = Holdings::default();
        let subject = self.hold_selector(&policy.subject, &mut holdings);
        let mut compiled: [Option<Vec<CompiledRule>>; 2] = [None, None];
        for direction in Direction::BOTH {
            let Some(rules) = policy.rules(direction) else {
                continue;
            };
            let mut out = Vec::new();
            for rule in rules {
                self.compile_rule(idx, &policy.object, direction, rule, &mut holdings, &mut out);
            }
            compiled[direction_index(direction)] = Some(out);
        }
        PolicyEntry { policy, subject, compiled, holdings }
    }

    fn compile_rule(
        &mut self,
        idx: PolIdx,
        object: &ObjectRef,
        direction: Direction,
        rule: &PolicyRule,
        holdings: &mut Holdings,
        out: &mut Vec<CompiledRule>,
    ) {
        let origin = self.origin_id(object, &rule.label);
        let mut numeric = Vec::new();
        let mut named = Vec::new();
        for port in &rule.ports {
            match port {
                PortSelector::Range { protocol, first, last } => {
                    let range = PortRange { protocol: *protocol, first: *first, last: *last };
                    if !numeric.contains(&range) {
                        numeric.push(range);
                    }
                }
                PortSelector::Named { protocol, name } => {
                    let n = (*protocol, name.clone());
                    if !named.contains(&n) {
                        named.push(n);
                    }
                }
            }
        }
        let restricted = !rule.ports.is_empty();
        let local = rule.local.as_deref().map(|l| self.local_condition(idx, l, holdings));
        let plain = |peer, ports: Vec<PortRange>, named| CompiledRule {
            action: rule.action,
            peer,
            ports,
            named,
            restricted,
            origin,
            local: local.clone(),
        };
        if direction == Direction::Ingress {
            for peer in &rule.peers {
                let peer = self.peer_source(idx, peer, holdings);
                out.push(plain(peer, numeric.clone(), named.clone()));
            }
            return;
        }
        // Egress: numeric ports keep the peer as it is; each named port is
        // split by the number it resolves to on the destination pods.
        if named.is_empty() || !numeric.is_empty() {
            for peer in &rule.peers {
                let peer = self.peer_source(idx, peer, holdings);
                out.push(plain(peer, numeric.clone(), Vec::new()));
            }
        }
        for (protocol, name) in &named {
            for peer in &rule.peers {
                let (sel, within) = match peer {
                    PeerSelector::Any => (self.acquire_selector(&Resolver::all_pods()), None),
                    PeerSelector::Pods(set) => (self.acquire_selector(set), None),
                    PeerSelector::IpBlock { cidr, except } => (
                        self.acquire_selector(&Resolver::all_pods()),
                        Some(block_prefixes(cidr, except)),
                    ),
                    // Node addresses are no pods: a name matches nothing there.
                    PeerSelector::Nodes => continue,
                    // Among the pods the positive selector picks (any pod
                    // if none), inside the side's nets. The dialect refuses
                    // named ports beside a `notSelector`.
                    PeerSelector::Calico(p) => {
                        let def = p.selector.clone().unwrap_or_else(Resolver::all_pods);
                        let mut within = calico_nets(p);
                        if let Some(v) = p.ip_version {
                            let all = within.unwrap_or_else(crate::calico::everything);
                            within =
                                Some(all.into_iter().filter(|c| c.is_v4() == (v == 4)).collect());
                        }
                        (self.acquire_selector(&def), within)
                    }
                };
                holdings.selectors.push(sel);
                let ports = self.acquire_group(idx, sel, *protocol, name, holdings);
                for port in ports {
                    let key = SourceKey::Named {
                        sel,
                        protocol: *protocol,
                        name: name.clone(),
                        port,
                        within: within.clone(),
                    };
                    self.acquire_source(idx, key.clone(), holdings);
                    out.push(CompiledRule {
                        action: rule.action,
                        peer: CompiledPeer::Source(key),
                        ports: vec![PortRange::single(*protocol, port)],
                        named: Vec::new(),
                        restricted: true,
                        origin,
                        local: local.clone(),
                    });
                }
            }
        }
    }

    fn peer_source(
        &mut self,
        idx: PolIdx,
        peer: &PeerSelector,
        holdings: &mut Holdings,
    ) -> CompiledPeer {
        let key = match peer {
            PeerSelector::Any => return CompiledPeer::Any,
            PeerSelector::Pods(set) => SourceKey::Pods(self.hold_selector(set, holdings)),
            PeerSelector::IpBlock { cidr, except } => {
                SourceKey::Block(block_prefixes(cidr, except))
            }
            PeerSelector::Nodes => SourceKey::Nodes,
            PeerSelector::Calico(p) => {
                let nets = calico_nets(p);
                let sel = p.selector.as_ref().map(|def| self.hold_selector(def, holdings));
                let not_sel = p.not_selector.as_ref().map(|def| self.hold_selector(def, holdings));
                match (nets, sel, not_sel, p.ip_version) {
                    (None, None, None, None) => return CompiledPeer::Any,
                    (Some(block), None, None, None) => SourceKey::Block(block),
                    (None, Some(sel), None, None) => SourceKey::Pods(sel),
                    (nets, sel, not_sel, ip_version) => {
                        SourceKey::Calico { nets, sel, not_sel, ip_version }
                    }
                }
            }
        };
        self.acquire_source(idx, key.clone(), holdings);
        CompiledPeer::Source(key)
    }

    /// Compiles the local-endpoint conditions of a Calico rule. Each
    /// selector is also held as a source, so that a change of its members
    /// renders the policy's endpoints again.
    fn local_condition(
        &mut self,
        idx: PolIdx,
        local: &CalicoPeer,
        holdings: &mut Holdings,
    ) -> LocalCondition {
        let mut watched = |def: &PodSet| {
            let id = self.hold_selector(def, holdings);
            self.acquire_source(idx, SourceKey::Pods(id), holdings);
            id
        };
        let sel = local.selector.as_ref().map(&mut watched);
        let not_sel = local.not_selector.as_ref().map(&mut watched);
        LocalCondition { sel, not_sel, nets: calico_nets(local), ip_version: local.ip_version }
    }

    /// Interns a selector and records the reference in `holdings`.
    fn hold_selector(&mut self, def: &PodSet, holdings: &mut Holdings) -> SelId {
        let id = self.acquire_selector(def);
        holdings.selectors.push(id);
        id
    }

    /// Takes a reference to a source for policy `idx` (`None`: a pin).
    pub(crate) fn acquire_source(&mut self, idx: PolIdx, key: SourceKey, holdings: &mut Holdings) {
        self.ensure_source(&key);
        if let Some(source) = self.sources.get_mut(&key) {
            source.users.insert(idx);
        }
        holdings.sources.insert(key);
    }

    /// Creates a source (content and set) if it does not exist yet.
    pub(crate) fn ensure_source(&mut self, key: &SourceKey) {
        if self.sources.contains_key(key) {
            return;
        }
        let content = self.source_content(key);
        let set = self.sets.intern(content.clone(), &mut self.out);
        self.sources.insert(key.clone(), Source { set, content, users: BTreeSet::new(), pins: 0 });
        for sel in key.selectors() {
            if let Some(s) = self.selectors.sels.get_mut(&sel) {
                s.sources.insert(key.clone());
            }
        }
    }

    /// Takes a reference to a named-port group; returns its port numbers.
    fn acquire_group(
        &mut self,
        idx: PolIdx,
        sel: SelId,
        protocol: Protocol,
        name: &str,
        holdings: &mut Holdings,
    ) -> Vec<u16> {
        let Some(s) = self.selectors.sels.get_mut(&sel) else {
            return Vec::new();
        };
        let group = s.groups.entry((protocol, name.to_string())).or_insert_with(|| {
            let mut group = NamedGroup::default();
            for &member in &s.members {
                let Some(entry) = self.pods.get(member as usize).and_then(Option::as_deref) else {
                    continue;
                };
                if let Some(port) = named_port(&entry.pod, protocol, name) {
                    let addrs = group.by_port.entry(port).or_default();
                    for ip in &entry.pod.ips {
                        *addrs.entry(Cidr::host(*ip)).or_insert(0) += 1;
                    }
                }
            }
            group
        });
        group.users.insert(idx);
        holdings.groups.push((sel, protocol, name.to_string()));
        group.by_port.keys().copied().collect()
    }
}
