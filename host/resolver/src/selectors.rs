//! Interned pod selectors, their members, and the label index that finds
//! the selectors a changed pod may enter or leave.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use palisade_model::policy::{Labels, Namespace, NamespaceScope, Pod, PodSet};
use palisade_model::{Cidr, Protocol};

use crate::calico::{Accounts, NetSetKey, PodView};
use crate::sources::SourceKey;

pub(crate) type SelId = u32;
pub(crate) type PodIdx = u32;
pub(crate) type PolIdx = u32;

/// The label every namespace carries, as the API server adds it.
pub(crate) const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The pods of one selector that declare one named port, grouped by the
/// number the name resolves to.
#[derive(Debug, Default)]
pub(crate) struct NamedGroup {
    /// Port number → member addresses (with multiplicity).
    pub(crate) by_port: BTreeMap<u16, BTreeMap<Cidr, u32>>,
    /// Policies whose compiled rules depend on the port numbers present.
    pub(crate) users: BTreeSet<PolIdx>,
}

/// One interned pod selector.
#[derive(Debug)]
pub(crate) struct Selector {
    pub(crate) def: PodSet,
    /// Policies holding this selector (subject, peer, named-port base).
    pub(crate) refs: u32,
    pub(crate) members: HashSet<PodIdx>,
    /// Member network sets (Calico rule selectors only).
    pub(crate) netsets: BTreeSet<NetSetKey>,
    /// Member addresses (pods' and network sets' prefixes) with
    /// multiplicity.
    pub(crate) ips: BTreeMap<Cidr, u32>,
    pub(crate) groups: BTreeMap<(Protocol, String), NamedGroup>,
    /// Address sources derived from this selector.
    pub(crate) sources: BTreeSet<SourceKey>,
    /// Policies whose subject this selector is.
    pub(crate) subject_of: BTreeSet<PolIdx>,
}

impl Selector {
    pub(crate) fn new(def: PodSet) -> Selector {
        Selector {
            def,
            refs: 0,
            members: HashSet::new(),
            netsets: BTreeSet::new(),
            ips: BTreeMap::new(),
            groups: BTreeMap::new(),
            sources: BTreeSet::new(),
            subject_of: BTreeSet::new(),
        }
    }

    /// True if `pod` belongs to the set.
    pub(crate) fn matches(
        &self,
        pod: &Pod,
        namespaces: &HashMap<String, Namespace>,
        accounts: &Accounts,
    ) -> bool {
        let ns = pod.namespace.as_str();
        let ns_ok = match &self.def.namespaces {
            NamespaceScope::Named(n) => n == ns,
            NamespaceScope::Selector(sel) => namespace_matches(sel, ns, namespaces),
        };
        ns_ok
            && self.def.pods.matches(&pod.labels)
            && self.def.calico.as_ref().is_none_or(|c| {
                let view = PodView {
                    pod,
                    namespace: namespaces.get(ns).map(|n| &n.labels),
                    account: accounts.of(pod),
                };
                c.matches(&view)
            })
    }
}

/// True if namespace `ns` matches `sel`; a namespace without an object has
/// only its name label.
pub(crate) fn namespace_matches(
    sel: &palisade_model::policy::LabelSelector,
    ns: &str,
    namespaces: &HashMap<String, Namespace>,
) -> bool {
    match namespaces.get(ns) {
        Some(n) => sel.matches(&n.labels),
        None => {
            let labels: Labels = [(NAME_LABEL.to_string(), ns.to_string())].into();
            sel.matches(&labels)
        }
    }
}

/// The container port a pod declares under `name` for `protocol`.
pub(crate) fn named_port(pod: &Pod, protocol: Protocol, name: &str) -> Option<u16> {
    pod.ports
        .iter()
        .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
        .map(|p| p.port)
}

/// Selectors of one scope, indexed by one `key=value` every member must
/// carry (the first of `matchLabels`, or an `In` with one value).
#[derive(Debug, Default)]
pub(crate) struct LabelIndex {
    keyed: HashMap<String, HashMap<String, BTreeSet<SelId>>>,
    unkeyed: BTreeSet<SelId>,
}

impl LabelIndex {
    fn insert(&mut self, id: SelId, def: &PodSet) {
        match required_label(def) {
            Some((k, v)) => {
                self.keyed.entry(k).or_default().entry(v).or_default().insert(id);
            }
            None => {
                self.unkeyed.insert(id);
            }
        }
    }

    fn remove(&mut self, id: SelId, def: &PodSet) {
        match required_label(def) {
            Some((k, v)) => {
                if let Some(values) = self.keyed.get_mut(&k) {
                    if let Some(ids) = values.get_mut(&v) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            values.remove(&v);
                        }
                    }
                    if values.is_empty() {
                        self.keyed.remove(&k);
                    }
                }
            }
            None => {
                self.unkeyed.remove(&id);
            }
        }
    }

    fn candidates(&self, labels: &Labels, out: &mut BTreeSet<SelId>) {
        out.extend(self.unkeyed.iter().copied());
        for (k, v) in labels {
            if let Some(ids) = self.keyed.get(k).and_then(|values| values.get(v)) {
                out.extend(ids.iter().copied());
            }
        }
    }

    fn all(&self, out: &mut BTreeSet<SelId>) {
        out.extend(self.unkeyed.iter().copied());
        for values in self.keyed.values() {
            for ids in values.values() {
                out.extend(ids.iter().copied());
            }
        }
    }
}

fn required_label(def: &PodSet) -> Option<(String, String)> {
    if let Some((k, v)) = def.pods.match_labels.iter().next() {
        return Some((k.clone(), v.clone()));
    }
    def.pods
        .match_expressions
        .iter()
        .find(|r| r.op == palisade_model::policy::SelectorOp::In && r.values.len() == 1)
        .map(|r| (r.key.clone(), r.values[0].clone()))
}

/// Every interned selector, by definition and by scope.
///
/// The tables that grow with the number of selectors hold small entries
/// (the definition index is keyed by a hash of the definition, selectors are
/// boxed), so that growing one moves and rehashes words, not definitions:
/// the event that crosses a capacity stays cheap.
#[derive(Debug, Default)]
pub(crate) struct SelectorTable {
    next_id: SelId,
    hasher: RandomState,
    /// Hash of a definition → the selectors with that hash.
    by_def: HashMap<u64, Vec<SelId>>,
    pub(crate) sels: HashMap<SelId, Box<Selector>>,
    by_namespace: HashMap<String, LabelIndex>,
    cluster: LabelIndex,
    /// Selectors with a Calico expression (which may read namespace and
    /// service account labels, whatever their scope).
    calico: BTreeSet<SelId>,
}

impl SelectorTable {
    /// The selector with definition `def`, if interned.
    pub(crate) fn find(&self, def: &PodSet) -> Option<SelId> {
        let ids = self.by_def.get(&self.hasher.hash_one(def))?;
        ids.iter().copied().find(|id| self.sels.get(id).is_some_and(|s| s.def == *def))
    }

    /// Registers a new selector (members still empty); returns its id.
    pub(crate) fn create(&mut self, def: PodSet) -> SelId {
        let id = self.next_id;
        self.next_id += 1;
        match &def.namespaces {
            NamespaceScope::Named(ns) => {
                self.by_namespace.entry(ns.clone()).or_default().insert(id, &def)
            }
            NamespaceScope::Selector(_) => self.cluster.insert(id, &def),
        }
        if def.calico.is_some() {
            self.calico.insert(id);
        }
        self.by_def.entry(self.hasher.hash_one(&def)).or_default().push(id);
        self.sels.insert(id, Box::new(Selector::new(def)));
        id
    }

    /// Forgets a selector.
    pub(crate) fn destroy(&mut self, id: SelId) {
        let Some(sel) = self.sels.remove(&id) else {
            return;
        };
        self.calico.remove(&id);
        let hash = self.hasher.hash_one(&sel.def);
        if let Some(ids) = self.by_def.get_mut(&hash) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_def.remove(&hash);
            }
        }
        match &sel.def.namespaces {
            NamespaceScope::Named(ns) => {
                if let Some(index) = self.by_namespace.get_mut(ns) {
                    index.remove(id, &sel.def);
                }
            }
            NamespaceScope::Selector(_) => self.cluster.remove(id, &sel.def),
        }
    }

    /// Selectors a pod of `ns` with `labels` may belong to (a superset).
    pub(crate) fn candidates(&self, ns: &str, labels: &Labels, out: &mut BTreeSet<SelId>) {
        if let Some(index) = self.by_namespace.get(ns) {
            index.candidates(labels, out);
        }
        self.cluster.candidates(labels, out);
    }

    /// Every selector that ranges over namespaces by label, and every
    /// Calico selector: what a namespace's labels may change.
    pub(crate) fn cluster_scoped(&self) -> BTreeSet<SelId> {
        let mut out = self.calico.clone();
        self.cluster.all(&mut out);
        out
    }

    /// Every Calico selector: what a service account's labels may change.
    pub(crate) fn calico_scoped(&self) -> BTreeSet<SelId> {
        self.calico.clone()
    }
}
