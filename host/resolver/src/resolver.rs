//! The resolver: model events in, the rule set of one node out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_model::policy::{
    LabelSelector, Namespace, NamespaceScope, Node, ObjectRef, Pod, PodSet,
};
use palisade_model::{Cidr, Delta, EndpointId, ModelEvent, OriginId, RuleSet};

use crate::compile::PolicyEntry;
use crate::output::Output;
use crate::selectors::{named_port, PodIdx, PolIdx, SelId, SelectorTable};
use crate::sets::SetTable;
use crate::sources::{Source, SourceKey};
use crate::Settings;

/// A pod as the resolver keeps it.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pub(crate) pod: Pod,
    /// Active, with an address, not on the host network: a peer.
    pub(crate) live: bool,
    /// Set when the pod is a local endpoint.
    pub(crate) endpoint: Option<EndpointId>,
    /// Policies whose subject holds this endpoint.
    pub(crate) selected_by: BTreeSet<PolIdx>,
}

/// Resolves policies into the rule set of one node, incrementally.
///
/// Feed it [`ModelEvent`]s with [`Resolver::handle`] (one event is one
/// batch) or [`Resolver::handle_all`] (many events, one batch); read the
/// result with [`Resolver::rule_set`] and the changes with
/// [`Resolver::take_delta`]. Work per event is proportional to what the
/// event touches: the pods and selectors it changes and the endpoints whose
/// policy depends on them, never a rescan of the whole cluster.
#[derive(Debug)]
pub struct Resolver {
    pub(crate) settings: Settings,
    pub(crate) namespaces: HashMap<String, Namespace>,
    /// ServiceAccount labels (Calico's `pcsa.` labels and account selectors).
    pub(crate) accounts: crate::calico::Accounts,
    /// Calico (Global)NetworkSets.
    pub(crate) network_sets: BTreeMap<crate::calico::NetSetKey, palisade_model::policy::NetworkSet>,
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Boxed, so that growing the table moves pointers, not entries.
    pub(crate) pods: Vec<Option<Box<PodEntry>>>,
    free_pods: Vec<PodIdx>,
    /// Ordered maps (here and for origins): no rehash of every key when
    /// they grow.
    pod_index: BTreeMap<String, PodIdx>,
    /// Live pods per namespace.
    pub(crate) pods_by_ns: HashMap<String, BTreeSet<PodIdx>>,
    next_endpoint: EndpointId,
    pub(crate) selectors: SelectorTable,
    pub(crate) sources: HashMap<SourceKey, Source>,
    pub(crate) sets: SetTable,
    /// Boxed, so that growing the table moves pointers, not entries.
    pub(crate) policies: Vec<Option<Box<PolicyEntry>>>,
    pub(crate) free_policies: Vec<PolIdx>,
    pub(crate) policy_index: BTreeMap<ObjectRef, PolIdx>,
    pub(crate) origins: BTreeMap<(ObjectRef, String), OriginId>,
    pub(crate) out: Output,
    pub(crate) dirty_endpoints: BTreeSet<PodIdx>,
    pub(crate) dirty_selectors: BTreeSet<SelId>,
    pub(crate) dirty_policies: BTreeSet<PolIdx>,
    nodes_dirty: bool,
    pub(crate) gc_selectors: BTreeSet<SelId>,
    pub(crate) gc_sources: BTreeSet<SourceKey>,
    pub(crate) gc_groups: BTreeSet<(SelId, palisade_model::Protocol, String)>,
    /// Endpoints whose ingress policy carries the node exemption.
    pub(crate) exempt: BTreeSet<PodIdx>,
}

impl Resolver {
    pub fn new(settings: Settings) -> Resolver {
        Resolver {
            settings,
            namespaces: HashMap::new(),
            accounts: crate::calico::Accounts::default(),
            network_sets: BTreeMap::new(),
            nodes: BTreeMap::new(),
            pods: Vec::new(),
            free_pods: Vec::new(),
            pod_index: BTreeMap::new(),
            pods_by_ns: HashMap::new(),
            next_endpoint: 0,
            selectors: SelectorTable::default(),
            sources: HashMap::new(),
            sets: SetTable::default(),
            policies: Vec::new(),
            free_policies: Vec::new(),
            policy_index: BTreeMap::new(),
            origins: BTreeMap::new(),
            out: Output::default(),
            dirty_endpoints: BTreeSet::new(),
            dirty_selectors: BTreeSet::new(),
            dirty_policies: BTreeSet::new(),
            nodes_dirty: false,
            gc_selectors: BTreeSet::new(),
            gc_sources: BTreeSet::new(),
            gc_groups: BTreeSet::new(),
            exempt: BTreeSet::new(),
        }
    }

    /// The settings this resolver was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies one event as a batch of its own.
    pub fn handle(&mut self, event: ModelEvent) {
        self.apply(event);
        self.flush();
    }

    /// Applies many events as one batch: endpoint policies are computed once
    /// at the end and the generation moves on at most once.
    pub fn handle_all(&mut self, events: impl IntoIterator<Item = ModelEvent>) {
        for event in events {
            self.apply(event);
        }
        self.flush();
    }

    /// The current rule set, in canonical order.
    pub fn rule_set(&self) -> &RuleSet {
        self.out.rule_set()
    }

    /// What changed since the previous call (the first call: since empty).
    pub fn take_delta(&mut self) -> Delta {
        self.out.take_delta()
    }

    /// The policy objects selecting the pod `namespace/name` as subject for
    /// `direction`, in evaluation order (for explanations).
    pub fn selecting(
        &self,
        pod: &str,
        direction: palisade_model::Direction,
    ) -> Vec<(palisade_model::policy::TierRank, ObjectRef)> {
        let Some(entry) = self
            .pod_index
            .get(pod)
            .and_then(|&i| self.pods.get(i as usize))
            .and_then(Option::as_deref)
        else {
            return Vec::new();
        };
        let d = crate::compile::direction_index(direction);
        let mut out: Vec<_> = entry
            .selected_by
            .iter()
            .filter_map(|&p| self.policies.get(p as usize).and_then(Option::as_deref))
            .filter(|p| p.compiled[d].is_some())
            .map(|p| (p.policy.tier.clone(), p.policy.object.clone()))
            .collect();
        out.sort();
        out
    }

    /// The names of the tiers of the pod's rendered policy for
    /// `direction`, in order (the node exemption first where it applies).
    pub fn tier_names(&self, pod: &str, direction: palisade_model::Direction) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if direction == palisade_model::Direction::Ingress {
            if let Some(&idx) = self.pod_index.get(pod) {
                if self.exempt.contains(&idx) {
                    names.push("the node exemption".to_string());
                }
            }
        }
        let mut last = None;
        for (rank, _) in self.selecting(pod, direction) {
            if last.as_ref() != Some(&rank) {
                names.push(rank.to_string());
                last = Some(rank);
            }
        }
        names
    }

    fn apply(&mut self, event: ModelEvent) {
        match event {
            ModelEvent::NamespaceUpserted(ns) => {
                let name = ns.name.clone();
                let old = self.namespaces.insert(name.clone(), ns);
                let changed =
                    old.map(|o| o.labels) != self.namespaces.get(&name).map(|n| n.labels.clone());
                if changed {
                    self.relabel_namespace(&name);
                }
            }
            ModelEvent::NamespaceDeleted { name } => {
                if self.namespaces.remove(&name).is_some() {
                    self.relabel_namespace(&name);
                }
            }
            ModelEvent::PodUpserted(pod) => {
                let key = pod.key();
                self.upsert_pod(&key, Some(pod));
            }
            ModelEvent::PodDeleted { namespace, name } => {
                self.upsert_pod(&format!("{namespace}/{name}"), None);
            }
            ModelEvent::NodeUpserted(node) => {
                let name = node.name.clone();
                let old = self.nodes.insert(name, node.clone());
                if old.map(|o| o.addresses) != Some(node.addresses) {
                    self.nodes_dirty = true;
                }
            }
            ModelEvent::NodeDeleted { name } => {
                if self.nodes.remove(&name).is_some() {
                    self.nodes_dirty = true;
                }
            }
            ModelEvent::ServiceAccountUpserted(account) => self.upsert_service_account(account),
            ModelEvent::ServiceAccountDeleted { namespace, name } => {
                self.delete_service_account(namespace, name)
            }
            ModelEvent::NetworkSetUpserted(set) => self.upsert_network_set(set),
            ModelEvent::NetworkSetDeleted { namespace, name } => {
                self.delete_network_set(namespace, name)
            }
            ModelEvent::PolicyUpserted(policy) => self.upsert_policy(policy),
            ModelEvent::PolicyDeleted(object) => self.delete_policy(&object),
        }
    }

    fn is_live(pod: &Pod) -> bool {
        pod.active && !pod.ips.is_empty() && !pod.host_network
    }

    fn is_local(&self, pod: &Pod) -> bool {
        match &self.settings.node {
            None => true,
            Some(node) => pod.node.as_deref() == Some(node.as_str()),
        }
    }

    /// Re-evaluates the namespace-scoped (and Calico) selectors for the
    /// pods and network sets of `ns`.
    fn relabel_namespace(&mut self, ns: &str) {
        self.relabel_network_sets(ns);
        let Some(pods) = self.pods_by_ns.get(ns) else {
            return;
        };
        let pods: Vec<PodIdx> = pods.iter().copied().collect();
        let sels = self.selectors.cluster_scoped();
        self.recheck(&pods, &sels);
    }

    /// Creates, replaces (`Some`) or deletes (`None`) the pod `key`.
    fn upsert_pod(&mut self, key: &str, new: Option<Pod>) {
        let existing = self.pod_index.get(key).copied();
        if existing.is_none() && new.is_none() {
            return;
        }
        let idx = match existing {
            Some(i) => i,
            None => {
                let i = self.free_pods.pop().unwrap_or(self.pods.len() as PodIdx);
                if i as usize == self.pods.len() {
                    self.pods.push(None);
                }
                self.pod_index.insert(key.to_string(), i);
                i
            }
        };
        let new_live = new.as_ref().is_some_and(Self::is_live);
        let new_local = new_live && new.as_ref().is_some_and(|p| self.is_local(p));

        let mut candidates = BTreeSet::new();
        let (old_live, old_endpoint, data_changed) = match self.pods[idx as usize].as_ref() {
            Some(old) => {
                if old.live {
                    self.selectors.candidates(&old.pod.namespace, &old.pod.labels, &mut candidates);
                }
                let changed = match &new {
                    Some(p) => {
                        p.ips != old.pod.ips
                            || p.ports != old.pod.ports
                            || old.live != new_live
                            || old.endpoint.is_some() != new_local
                    }
                    None => true,
                };
                (old.live, old.endpoint, changed)
            }
            None => (false, None, true),
        };
        if let Some(p) = &new {
            if new_live {
                self.selectors.candidates(&p.namespace, &p.labels, &mut candidates);
            }
        }

        // Leave the selectors the pod no longer belongs to (old data).
        if old_live {
            for &sel in &candidates {
                let Some(s) = self.selectors.sels.get(&sel) else {
                    continue;
                };
                if !s.members.contains(&idx) {
                    continue;
                }
                let stays = new
                    .as_ref()
                    .is_some_and(|p| new_live && s.matches(p, &self.namespaces, &self.accounts));
                if data_changed || !stays {
                    self.remove_member(sel, idx);
                }
            }
        }

        // Endpoint bookkeeping.
        let mut endpoint = old_endpoint;
        if let Some(id) = old_endpoint {
            if !new_local {
                self.drop_endpoint(idx, id);
                endpoint = None;
            }
        }
        if new_local && endpoint.is_none() {
            endpoint = Some(self.next_endpoint);
            self.next_endpoint += 1;
        }

        // Swap the data.
        let ns = new.as_ref().map(|p| p.namespace.clone());
        let Some(pod) = new else {
            if let Some(old) = self.pods[idx as usize].take() {
                if let Some(set) = self.pods_by_ns.get_mut(&old.pod.namespace) {
                    set.remove(&idx);
                }
            }
            self.pod_index.remove(key);
            self.free_pods.push(idx);
            return;
        };
        let selected_by = match self.pods[idx as usize].take() {
            Some(old) if endpoint.is_some() => old.selected_by,
            _ => BTreeSet::new(),
        };
        if let Some(id) = endpoint {
            self.out.upsert_endpoint(palisade_model::Endpoint {
                id,
                name: key.to_string(),
                addresses: pod.ips.clone(),
            });
            self.dirty_endpoints.insert(idx);
        }
        self.pods[idx as usize] =
            Some(Box::new(PodEntry { pod, live: new_live, endpoint, selected_by }));
        if let Some(ns) = ns {
            let set = self.pods_by_ns.entry(ns).or_default();
            if new_live {
                set.insert(idx);
            } else {
                set.remove(&idx);
            }
        }

        // Enter the selectors the pod now belongs to (new data).
        if new_live {
            for &sel in &candidates {
                let Some(s) = self.selectors.sels.get(&sel) else {
                    continue;
                };
                if s.members.contains(&idx) {
                    continue;
                }
                let Some(entry) = self.pods[idx as usize].as_ref() else {
                    continue;
                };
                if s.matches(&entry.pod, &self.namespaces, &self.accounts) {
                    self.add_member(sel, idx);
                }
            }
        }
    }

    /// Removes an endpoint and its policies from the output.
    fn drop_endpoint(&mut self, idx: PodIdx, id: EndpointId) {
        self.out.remove_endpoint(id);
        for direction in palisade_model::Direction::BOTH {
            self.out.remove_policy(palisade_model::PolicyKey { endpoint: id, direction });
        }
        if self.exempt.remove(&idx) {
            self.unpin_nodes();
        }
        if let Some(entry) = self.pods.get_mut(idx as usize).and_then(Option::as_deref_mut) {
            entry.endpoint = None;
            entry.selected_by.clear();
        }
        self.dirty_endpoints.remove(&idx);
    }

    /// Adds pod `idx` (current data) to selector `sel`.
    pub(crate) fn add_member(&mut self, sel: SelId, idx: PodIdx) {
        self.change_member(sel, idx, true);
    }

    /// Removes pod `idx` (current data) from selector `sel`.
    pub(crate) fn remove_member(&mut self, sel: SelId, idx: PodIdx) {
        self.change_member(sel, idx, false);
    }

    fn change_member(&mut self, sel: SelId, idx: PodIdx, add: bool) {
        let Some(entry) = self.pods.get_mut(idx as usize).and_then(Option::as_deref_mut) else {
            return;
        };
        let Some(s) = self.selectors.sels.get_mut(&sel) else {
            return;
        };
        let changed = if add { s.members.insert(idx) } else { s.members.remove(&idx) };
        if !changed {
            return;
        }
        for ip in &entry.pod.ips {
            count(&mut s.ips, Cidr::host(*ip), add);
        }
        for ((protocol, name), group) in s.groups.iter_mut() {
            let Some(port) = named_port(&entry.pod, *protocol, name) else {
                continue;
            };
            let before = group.by_port.len();
            let addrs = group.by_port.entry(port).or_default();
            for ip in &entry.pod.ips {
                count(addrs, Cidr::host(*ip), add);
            }
            if addrs.is_empty() {
                group.by_port.remove(&port);
            }
            if group.by_port.len() != before {
                self.dirty_policies.extend(group.users.iter().copied());
            }
        }
        self.dirty_selectors.insert(sel);
        if entry.endpoint.is_some() && !s.subject_of.is_empty() {
            for pol in &s.subject_of {
                if add {
                    entry.selected_by.insert(*pol);
                } else {
                    entry.selected_by.remove(pol);
                }
            }
            self.dirty_endpoints.insert(idx);
        }
    }

    /// Interns a selector and takes a reference to it.
    pub(crate) fn acquire_selector(&mut self, def: &PodSet) -> SelId {
        if let Some(id) = self.selectors.find(def) {
            if let Some(s) = self.selectors.sels.get_mut(&id) {
                s.refs += 1;
            }
            return id;
        }
        let id = self.selectors.create(def.clone());
        let mut members = Vec::new();
        match &def.namespaces {
            NamespaceScope::Named(ns) => {
                if let Some(pods) = self.pods_by_ns.get(ns) {
                    members.extend(pods.iter().copied());
                }
            }
            NamespaceScope::Selector(nsel) => {
                for (ns, pods) in &self.pods_by_ns {
                    if crate::selectors::namespace_matches(nsel, ns, &self.namespaces) {
                        members.extend(pods.iter().copied());
                    }
                }
            }
        }
        if let Some(s) = self.selectors.sels.get_mut(&id) {
            s.refs = 1;
            for idx in members {
                let Some(entry) = self.pods.get(idx as usize).and_then(Option::as_deref) else {
                    continue;
                };
                if s.matches(&entry.pod, &self.namespaces, &self.accounts) {
                    s.members.insert(idx);
                    for ip in &entry.pod.ips {
                        count(&mut s.ips, Cidr::host(*ip), true);
                    }
                }
            }
        }
        let sets = self.initial_network_sets(id);
        if let Some(s) = self.selectors.sels.get_mut(&id) {
            for (key, nets) in sets {
                s.netsets.insert(key);
                for cidr in nets {
                    count(&mut s.ips, cidr, true);
                }
            }
        }
        id
    }

    /// A selector's addresses as normalized prefixes (a network set's
    /// prefix may cover a pod's address).
    pub(crate) fn selector_prefixes(&self, sel: SelId) -> Vec<Cidr> {
        let Some(s) = self.selectors.sels.get(&sel) else { return Vec::new() };
        let all: Vec<Cidr> = s.ips.keys().copied().collect();
        if s.netsets.is_empty() {
            all
        } else {
            palisade_model::net::normalize(all)
        }
    }

    pub(crate) fn release_selector(&mut self, id: SelId) {
        if let Some(s) = self.selectors.sels.get_mut(&id) {
            s.refs = s.refs.saturating_sub(1);
            if s.refs == 0 {
                self.gc_selectors.insert(id);
            }
        }
    }

    /// The addresses a source stands for, now.
    pub(crate) fn source_content(&self, key: &SourceKey) -> Vec<Cidr> {
        match key {
            SourceKey::Nodes => {
                let mut v: Vec<Cidr> = self
                    .nodes
                    .values()
                    .flat_map(|n| n.addresses.iter().map(|a| Cidr::host(*a)))
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            SourceKey::Pods(sel) => self.selector_prefixes(*sel),
            SourceKey::Block(block) => block.clone(),
            SourceKey::Calico { nets, sel, not_sel, ip_version } => {
                let mut acc = nets.clone().unwrap_or_else(crate::calico::everything);
                if let Some(v) = ip_version {
                    acc.retain(|c| c.is_v4() == (*v == 4));
                }
                if let Some(sel) = sel {
                    acc = crate::calico::intersect(&acc, &self.selector_prefixes(*sel));
                }
                if let Some(not_sel) = not_sel {
                    acc = crate::calico::subtract(&acc, &self.selector_prefixes(*not_sel));
                }
                acc
            }
            SourceKey::Named { sel, protocol, name, port, within } => self
                .selectors
                .sels
                .get(sel)
                .and_then(|s| s.groups.get(&(*protocol, name.clone())))
                .and_then(|g| g.by_port.get(port))
                .map(|addrs| {
                    addrs
                        .keys()
                        .filter(|c| within.as_ref().is_none_or(|b| crate::sources::within(b, c)))
                        .copied()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Recomputes a source; if its set id changes, the endpoints using it
    /// are rendered again.
    fn refresh_source(&mut self, key: &SourceKey) {
        let content = self.source_content(key);
        let Some(source) = self.sources.get_mut(key) else {
            return;
        };
        if source.content == content {
            return;
        }
        let old = source.set;
        let new = self.sets.update(old, content.clone(), &mut self.out);
        source.content = content;
        source.set = new;
        if new != old {
            let users: Vec<PolIdx> = source.users.iter().copied().collect();
            for pol in users {
                self.mark_subject_dirty(pol);
            }
            if *key == SourceKey::Nodes {
                self.dirty_endpoints.extend(self.exempt.iter().copied());
            }
        }
    }

    /// Marks every endpoint a policy selects for rendering.
    pub(crate) fn mark_subject_dirty(&mut self, pol: PolIdx) {
        let Some(entry) = self.policies.get(pol as usize).and_then(Option::as_deref) else {
            return;
        };
        if let Some(s) = self.selectors.sels.get(&entry.subject) {
            for &idx in &s.members {
                if self
                    .pods
                    .get(idx as usize)
                    .and_then(Option::as_deref)
                    .is_some_and(|p| p.endpoint.is_some())
                {
                    self.dirty_endpoints.insert(idx);
                }
            }
        }
    }

    /// Computes what the batch's events left dirty.
    fn flush(&mut self) {
        while let Some(pol) = self.dirty_policies.pop_first() {
            self.recompile(pol);
        }
        for sel in std::mem::take(&mut self.dirty_selectors) {
            let keys: Vec<SourceKey> = match self.selectors.sels.get(&sel) {
                Some(s) => s.sources.iter().cloned().collect(),
                None => continue,
            };
            for key in keys {
                self.refresh_source(&key);
            }
        }
        if std::mem::take(&mut self.nodes_dirty) {
            self.refresh_source(&SourceKey::Nodes);
        }
        for idx in std::mem::take(&mut self.dirty_endpoints) {
            self.render(idx);
        }
        self.collect_garbage();
        if self.out.finish_batch() {
            tracing::debug!(generation = self.out.rule_set().generation, "rule set changed");
        }
    }

    fn collect_garbage(&mut self) {
        for key in std::mem::take(&mut self.gc_groups) {
            let (sel, protocol, name) = key;
            if let Some(s) = self.selectors.sels.get_mut(&sel) {
                if s.groups.get(&(protocol, name.clone())).is_some_and(|g| g.users.is_empty()) {
                    s.groups.remove(&(protocol, name));
                }
            }
        }
        for key in std::mem::take(&mut self.gc_sources) {
            let unused = self.sources.get(&key).is_some_and(|s| s.users.is_empty() && s.pins == 0);
            if !unused {
                continue;
            }
            if let Some(source) = self.sources.remove(&key) {
                self.sets.release(source.set, &mut self.out);
            }
            for sel in key.selectors() {
                if let Some(s) = self.selectors.sels.get_mut(&sel) {
                    s.sources.remove(&key);
                }
            }
        }
        for id in std::mem::take(&mut self.gc_selectors) {
            if self.selectors.sels.get(&id).is_some_and(|s| s.refs == 0) {
                self.selectors.destroy(id);
            }
        }
    }

    /// The pod set that stands for every pod of the cluster.
    pub(crate) fn all_pods() -> PodSet {
        PodSet {
            namespaces: NamespaceScope::Selector(LabelSelector::everything()),
            pods: LabelSelector::everything(),
            ..PodSet::default()
        }
    }
}

pub(crate) fn count(map: &mut BTreeMap<Cidr, u32>, key: Cidr, add: bool) {
    if add {
        *map.entry(key).or_insert(0) += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
