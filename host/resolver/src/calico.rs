//! What Calico adds to resolution: the labels a Calico selector reads
//! (an endpoint's own, plus `projectcalico.org/*`, `pcns.*` and `pcsa.*`),
//! ServiceAccounts and (Global)NetworkSets as members of rule selectors,
//! and the address set of a rule side with its negations resolved.

use std::collections::{BTreeSet, HashMap};

use palisade_model::calico_selector::{
    LabelView, NAMESPACE_LABEL, NAME_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL,
};
use palisade_model::policy::{Labels, Namespace, NetworkSet, Pod, ServiceAccount};
use palisade_model::{net, Cidr};

use crate::resolver::Resolver;
use crate::selectors::{namespace_matches, PodIdx, SelId};

/// ServiceAccount labels by namespace, then name (looked up by `&str`:
/// no allocation when a selector reads a pod's `pcsa.` labels).
#[derive(Debug, Default)]
pub(crate) struct Accounts(HashMap<String, HashMap<String, Labels>>);

impl Accounts {
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&Labels> {
        self.0.get(namespace)?.get(name)
    }

    /// Sets an account's labels; returns the former ones.
    fn insert(&mut self, namespace: &str, name: &str, labels: Labels) -> Option<Labels> {
        self.0.entry(namespace.to_string()).or_default().insert(name.to_string(), labels)
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<Labels> {
        let names = self.0.get_mut(namespace)?;
        let old = names.remove(name);
        if names.is_empty() {
            self.0.remove(namespace);
        }
        old
    }

    /// The account of `pod`'s labels.
    pub(crate) fn of(&self, pod: &Pod) -> Option<&Labels> {
        self.get(&pod.namespace, &pod.service_account)
    }
}
/// A network set's identity: (namespace, name); `None` for a global one.
pub(crate) type NetSetKey = (Option<String>, String);

/// The labels of a pod as a Calico selector reads them. Its own labels win.
pub(crate) struct PodView<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) namespace: Option<&'a Labels>,
    pub(crate) account: Option<&'a Labels>,
}

impl LabelView for PodView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.pod.labels.get(key) {
            return Some(v);
        }
        match key {
            NAMESPACE_LABEL => Some(&self.pod.namespace),
            ORCHESTRATOR_LABEL => Some("k8s"),
            SERVICE_ACCOUNT_LABEL => Some(&self.pod.service_account),
            _ => inherited(key, "pcns.", &self.pod.namespace, self.namespace)
                .or_else(|| inherited(key, "pcsa.", &self.pod.service_account, self.account)),
        }
    }
}

/// `prefix<key>` read from `labels` (`prefix` + the name label: `name`).
fn inherited<'a>(
    key: &str,
    prefix: &str,
    name: &'a str,
    labels: Option<&'a Labels>,
) -> Option<&'a str> {
    let key = key.strip_prefix(prefix)?;
    if let Some(v) = labels.and_then(|l| l.get(key)) {
        return Some(v);
    }
    (key == NAME_LABEL).then_some(name)
}

/// The labels of a network set as a Calico selector reads them: its own;
/// a namespaced one also `projectcalico.org/namespace` and `pcns.*`.
pub(crate) struct SetView<'a> {
    pub(crate) set: &'a NetworkSet,
    pub(crate) namespace: Option<&'a Labels>,
}

impl LabelView for SetView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.set.labels.get(key) {
            return Some(v);
        }
        let ns = self.set.namespace.as_deref()?;
        if key == NAMESPACE_LABEL {
            return Some(ns);
        }
        inherited(key, "pcns.", ns, self.namespace)
    }
}

/// True if network set `set` belongs to the pod set `def` (only sets with
/// `network_sets`; a global set only under an every-namespace scope).
pub(crate) fn set_matches(
    def: &palisade_model::policy::PodSet,
    set: &NetworkSet,
    namespaces: &HashMap<String, Namespace>,
) -> bool {
    if !def.network_sets || !def.pods.matches(&set.labels) {
        return false;
    }
    let in_scope = match (&set.namespace, &def.namespaces) {
        (Some(ns), palisade_model::policy::NamespaceScope::Named(n)) => n == ns,
        (Some(ns), palisade_model::policy::NamespaceScope::Selector(sel)) => {
            namespace_matches(sel, ns, namespaces)
        }
        (None, palisade_model::policy::NamespaceScope::Named(_)) => false,
        (None, palisade_model::policy::NamespaceScope::Selector(sel)) => sel.is_everything(),
    };
    let ns_labels = set.namespace.as_ref().and_then(|n| namespaces.get(n)).map(|n| &n.labels);
    in_scope
        && def.calico.as_ref().is_none_or(|c| c.matches(&SetView { set, namespace: ns_labels }))
}

/// `a ∩ b` for two normalized prefix lists.
pub(crate) fn intersect(a: &[Cidr], b: &[Cidr]) -> Vec<Cidr> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.covers(y) {
                out.push(*y);
            } else if y.covers(x) {
                out.push(*x);
            }
        }
    }
    net::normalize(out)
}

/// `a` minus every prefix of `holes`.
pub(crate) fn subtract(a: &[Cidr], holes: &[Cidr]) -> Vec<Cidr> {
    let mut rest = a.to_vec();
    for hole in holes {
        rest = rest.iter().flat_map(|p| p.subtract(hole)).collect();
    }
    net::normalize(rest)
}

/// Every address of both families.
pub(crate) fn everything() -> Vec<Cidr> {
    let v4 = Cidr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
    let v6 = Cidr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0);
    vec![v4, v6]
}

impl Resolver {
    pub(crate) fn upsert_service_account(&mut self, account: ServiceAccount) {
        let old = self.accounts.insert(&account.namespace, &account.name, account.labels.clone());
        if old.as_ref() != Some(&account.labels) {
            self.relabel_account(&account.namespace, &account.name);
        }
    }

    pub(crate) fn delete_service_account(&mut self, namespace: String, name: String) {
        if self.accounts.remove(&namespace, &name).is_some() {
            self.relabel_account(&namespace, &name);
        }
    }

    /// Re-evaluates the Calico selectors for the pods of one service account.
    fn relabel_account(&mut self, namespace: &str, name: &str) {
        let pods: Vec<PodIdx> = self
            .pods_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                self.pods
                    .get(i as usize)
                    .and_then(Option::as_deref)
                    .is_some_and(|e| e.pod.service_account == name)
            })
            .collect();
        let sels = self.selectors.calico_scoped();
        self.recheck(&pods, &sels);
    }

    pub(crate) fn upsert_network_set(&mut self, set: NetworkSet) {
        let key: NetSetKey = (set.namespace.clone(), set.name.clone());
        if self.network_sets.get(&key) == Some(&set) {
            return;
        }
        self.leave_network_set(&key);
        self.network_sets.insert(key.clone(), set);
        self.enter_network_set(&key);
    }

    pub(crate) fn delete_network_set(&mut self, namespace: Option<String>, name: String) {
        let key: NetSetKey = (namespace, name);
        self.leave_network_set(&key);
        self.network_sets.remove(&key);
    }

    /// Takes network set `key` out of every selector it belongs to.
    fn leave_network_set(&mut self, key: &NetSetKey) {
        let Some(set) = self.network_sets.get(key) else { return };
        for (&id, s) in self.selectors.sels.iter_mut() {
            if s.netsets.remove(key) {
                for cidr in &set.nets {
                    crate::resolver::count(&mut s.ips, *cidr, false);
                }
                self.dirty_selectors.insert(id);
            }
        }
    }

    /// Puts network set `key` into every selector it matches.
    fn enter_network_set(&mut self, key: &NetSetKey) {
        let Some(set) = self.network_sets.get(key) else { return };
        for (&id, s) in self.selectors.sels.iter_mut() {
            if set_matches(&s.def, set, &self.namespaces) && s.netsets.insert(key.clone()) {
                for cidr in &set.nets {
                    crate::resolver::count(&mut s.ips, *cidr, true);
                }
                self.dirty_selectors.insert(id);
            }
        }
    }

    /// Re-evaluates the namespaced network sets of `ns` (its labels changed).
    pub(crate) fn relabel_network_sets(&mut self, ns: &str) {
        let keys: Vec<NetSetKey> =
            self.network_sets.keys().filter(|k| k.0.as_deref() == Some(ns)).cloned().collect();
        for key in keys {
            self.leave_network_set(&key);
            self.enter_network_set(&key);
        }
    }

    /// The network sets a new selector holds, with their addresses.
    pub(crate) fn initial_network_sets(&self, sel: SelId) -> Vec<(NetSetKey, Vec<Cidr>)> {
        let Some(s) = self.selectors.sels.get(&sel) else { return Vec::new() };
        if !s.def.network_sets {
            return Vec::new();
        }
        self.network_sets
            .iter()
            .filter(|(_, set)| set_matches(&s.def, set, &self.namespaces))
            .map(|(k, set)| (k.clone(), set.nets.clone()))
            .collect()
    }

    /// Adds or removes each of `pods` to or from each of `sels` as they
    /// match now.
    pub(crate) fn recheck(&mut self, pods: &[PodIdx], sels: &BTreeSet<SelId>) {
        for &sel in sels {
            for &idx in pods {
                let Some(entry) = self.pods.get(idx as usize).and_then(Option::as_deref) else {
                    continue;
                };
                let Some(s) = self.selectors.sels.get(&sel) else {
                    continue;
                };
                let was = s.members.contains(&idx);
                let will = entry.live && s.matches(&entry.pod, &self.namespaces, &self.accounts);
                if was && !will {
                    self.remove_member(sel, idx);
                } else if will && !was {
                    self.add_member(sel, idx);
                }
            }
        }
    }
}

/// What a Calico selector picks, for `palisade select`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// `Pod`, `NetworkSet` or `GlobalNetworkSet`.
    pub kind: &'static str,
    /// Empty for a global network set.
    pub namespace: String,
    pub name: String,
    /// A pod's addresses, a set's nets.
    pub addresses: Vec<Cidr>,
}

impl Resolver {
    /// The pods (with an address, not on the host network) and network
    /// sets that `sel` picks, reading Calico's implicit labels, in name
    /// order.
    pub fn calico_select(&self, sel: &palisade_model::calico_selector::Selector) -> Vec<Selected> {
        let mut out = Vec::new();
        for entry in self.pods.iter().flatten() {
            if !entry.live {
                continue;
            }
            let pod = &entry.pod;
            let view = PodView {
                pod,
                namespace: self.namespaces.get(&pod.namespace).map(|n| &n.labels),
                account: self.accounts.of(pod),
            };
            if sel.matches(&view) {
                out.push(Selected {
                    kind: "Pod",
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    addresses: pod.ips.iter().map(|ip| Cidr::host(*ip)).collect(),
                });
            }
        }
        for set in self.network_sets.values() {
            let namespace = set.namespace.as_ref().and_then(|n| self.namespaces.get(n));
            if sel.matches(&SetView { set, namespace: namespace.map(|n| &n.labels) }) {
                out.push(Selected {
                    kind: if set.namespace.is_some() { "NetworkSet" } else { "GlobalNetworkSet" },
                    namespace: set.namespace.clone().unwrap_or_default(),
                    name: set.name.clone(),
                    addresses: set.nets.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name, a.kind).cmp(&(&b.namespace, &b.name, b.kind)));
        out
    }
}
