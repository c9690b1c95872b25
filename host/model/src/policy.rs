//! The policy model: what every dialect compiles into, before resolution.
//!
//! Objects here still speak in label selectors and port names; the resolver
//! turns them into a [`crate::ruleset::RuleSet`] of concrete addresses and
//! port numbers per node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::calico_selector::Selector as CalicoSelector;
use crate::net::{Cidr, Protocol};
use crate::ruleset::{Action, Direction};

pub type Labels = BTreeMap<String, String>;

/// The operator of a set-based label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub op: SelectorOp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            SelectorOp::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOp::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOp::Exists => value.is_some(),
            SelectorOp::DoesNotExist => value.is_none(),
        }
    }
}

/// A Kubernetes label selector: `match_labels` AND every requirement.
/// The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// A namespace as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// Includes `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

/// A declared container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// A pod as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `spec.nodeName`, if scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `status.podIPs` (or `status.podIP`); empty until the pod has an address.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// `spec.hostNetwork`: such pods are never endpoints.
    #[serde(default)]
    pub host_network: bool,
    /// False for pods that are finished (`Succeeded`/`Failed`): they are no
    /// peers and no endpoints.
    pub active: bool,
    /// `spec.serviceAccountName` (`default` when absent, as the API server
    /// sets it).
    #[serde(default = "default_service_account")]
    pub service_account: String,
}

fn default_service_account() -> String {
    "default".to_string()
}

impl Default for Pod {
    fn default() -> Pod {
        Pod {
            namespace: String::new(),
            name: String::new(),
            labels: Labels::new(),
            node: None,
            ips: Vec::new(),
            ports: Vec::new(),
            host_network: false,
            active: true,
            service_account: default_service_account(),
        }
    }
}

/// A ServiceAccount object: its labels are what Calico's service account
/// selectors (and the `pcsa.` labels of its pods) read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
}

/// A Calico NetworkSet (namespaced) or GlobalNetworkSet (`namespace`
/// `None`): labelled CIDRs that rule selectors match like endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub labels: Labels,
    pub nets: Vec<Cidr>,
}

impl Pod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// Which namespaces a selector ranges over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NamespaceScope {
    /// One namespace by name (a policy's own namespace).
    Named(String),
    /// Every namespace whose labels match.
    Selector(LabelSelector),
}

impl Default for NamespaceScope {
    /// Every namespace.
    fn default() -> NamespaceScope {
        NamespaceScope::Selector(LabelSelector::everything())
    }
}

/// A set of pods: pods matching `pods` in namespaces within `namespaces`;
/// for Calico, also matching `calico` (read on the pod's labels with
/// Calico's implicit ones), and with `network_sets` the (Global)NetworkSets
/// that match `calico` too (a global set only under an every-namespace
/// scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodSet {
    pub namespaces: NamespaceScope,
    pub pods: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico: Option<CalicoSelector>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_sets: bool,
}

/// The other side of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerSelector {
    /// Every address, in or outside the cluster.
    Any,
    /// The addresses of a set of pods.
    Pods(PodSet),
    /// A CIDR minus its excepts (each except inside `cidr`, validated by the
    /// dialect compiler).
    IpBlock { cidr: Cidr, except: Vec<Cidr> },
    /// The addresses of every Node object.
    Nodes,
    /// A Calico rule side: every condition holds at once.
    Calico(Box<CalicoPeer>),
}

/// The address conditions of one side of a Calico rule, ANDed. Negations
/// stay here; the resolver turns them into one positive address set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalicoPeer {
    /// Inside one of these (`None`: no `nets` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<Cidr>>,
    /// Inside none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<Cidr>,
    /// An address of what this selects (pods, network sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PodSet>,
    /// No address of what this selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<PodSet>,
    /// `ipVersion`: 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
}

/// The port part of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PortSelector {
    /// A numeric range of one protocol (`first == last` for one port;
    /// `1..=65535` for every port of the protocol).
    Range { protocol: Protocol, first: u16, last: u16 },
    /// A named container port, resolved against the pod on the far end of the
    /// rule's direction: the selected pod for ingress, each destination pod
    /// for egress.
    Named { protocol: Protocol, name: String },
}

/// One rule of a policy in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRule {
    pub action: Action,
    /// ORed; never empty (use `[Any]` for "every peer").
    pub peers: Vec<PeerSelector>,
    /// ORed; empty means every port of every protocol.
    pub ports: Vec<PortSelector>,
    /// Where this rule came from inside its object, e.g. `ingress[0]`.
    pub label: String,
    /// Calico: conditions on the local endpoint itself (an ingress rule's
    /// `destination`, an egress rule's `source`); the rule applies only to
    /// the selected endpoints that meet them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Box<CalicoPeer>>,
}

/// A Calico `order` (a float64 there): lower first. Always finite (the
/// dialect refuses others).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Order(pub f64);

impl Order {
    /// The order of Calico's `default` tier.
    pub const DEFAULT_TIER: Order = Order(1_000_000.0);
    /// The order Calico gives Kubernetes NetworkPolicies in the default tier.
    pub const NETWORK_POLICY: Order = Order(1000.0);
}

impl PartialEq for Order {
    fn eq(&self, other: &Order) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Order {}
impl std::hash::Hash for Order {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}
impl PartialOrd for Order {
    fn partial_cmp(&self, other: &Order) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Order {
    fn cmp(&self, other: &Order) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The evaluation tier a policy belongs to, in evaluation order (see
/// [`TierRank::sort_key`]): admin tiers by priority; Calico tiers by
/// `order` (missing last), then name, with the NetworkPolicy tier standing
/// for Calico's `default` tier at order 1,000,000; then the baseline tier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TierRank {
    /// AdminNetworkPolicy, lower priority first.
    Admin { priority: u32 },
    /// A Calico tier other than `default`. `pass`: its defaultAction is
    /// Pass (else Deny).
    Calico { order: Option<Order>, name: String, pass: bool },
    /// NetworkPolicy semantics: a selected endpoint is isolated (no match
    /// denies). Calico's `default` tier; the beta DefaultDeny annotation and
    /// the 2016 namespace isolation land here too.
    NetworkPolicy,
    /// BaselineAdminNetworkPolicy.
    Baseline,
}

impl TierRank {
    /// The name of Calico's default tier.
    pub const DEFAULT_TIER: &'static str = "default";

    /// Orders tiers: (group, admin priority, order missing, order, name).
    pub fn sort_key(&self) -> (u8, u32, bool, Option<Order>, &str) {
        match self {
            TierRank::Admin { priority } => (0, *priority, false, None, ""),
            TierRank::Calico { order, name, .. } => (1, 0, order.is_none(), *order, name),
            TierRank::NetworkPolicy => (1, 0, false, Some(Order::DEFAULT_TIER), Self::DEFAULT_TIER),
            TierRank::Baseline => (2, 0, false, None, ""),
        }
    }

    /// True for tiers whose end denies (else it goes on to the next tier).
    pub fn denies_at_end(&self) -> bool {
        match self {
            TierRank::NetworkPolicy => true,
            TierRank::Calico { pass, .. } => !pass,
            TierRank::Admin { .. } | TierRank::Baseline => false,
        }
    }
}

impl std::fmt::Display for TierRank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierRank::Admin { priority } => write!(f, "the admin tier (priority {priority})"),
            TierRank::Calico { name, .. } => write!(f, "tier `{name}`"),
            TierRank::NetworkPolicy => write!(f, "tier `default`"),
            TierRank::Baseline => write!(f, "the baseline tier"),
        }
    }
}

impl PartialOrd for TierRank {
    fn partial_cmp(&self, other: &TierRank) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TierRank {
    fn cmp(&self, other: &TierRank) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key()).then_with(|| {
            // Same place, another defaultAction: only while a Tier changes.
            let pass = |t: &TierRank| matches!(t, TierRank::Calico { pass: true, .. });
            pass(self).cmp(&pass(other))
        })
    }
}

/// Identity of the Kubernetes object a policy came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// e.g. `networking.k8s.io/v1 NetworkPolicy`, or
    /// `v1 Namespace` for isolation derived from a namespace.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// A dialect-independent policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub object: ObjectRef,
    pub tier: TierRank,
    /// Place inside its tier: by `order` (missing last), then by
    /// `order_name` as a plain string. Kubernetes NetworkPolicies are at
    /// 1000 under the name `knp.default.<name>`, as Calico sorts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order_name: String,
    /// The pods the policy applies to.
    pub subject: PodSet,
    /// `Some`: the policy governs ingress of its subjects (in the
    /// NetworkPolicy tier this isolates them, even with no rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<PolicyRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<PolicyRule>>,
}

impl Policy {
    /// The key that orders policies inside one tier.
    pub fn order_key(&self) -> (bool, Option<Order>, &str, &ObjectRef) {
        (self.order.is_none(), self.order, &self.order_name, &self.object)
    }

    pub fn rules(&self, direction: Direction) -> Option<&[PolicyRule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selector_operators_follow_kubernetes() {
        let pod = labels(&[("app", "web"), ("tier", "fe")]);
        let req = |key: &str, op, values: &[&str]| Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        assert!(req("app", SelectorOp::In, &["web", "db"]).matches(&pod));
        assert!(!req("app", SelectorOp::In, &["db"]).matches(&pod));
        assert!(req("app", SelectorOp::NotIn, &["db"]).matches(&pod));
        // NotIn and DoesNotExist match pods without the key.
        assert!(req("missing", SelectorOp::NotIn, &["x"]).matches(&pod));
        assert!(req("missing", SelectorOp::DoesNotExist, &[]).matches(&pod));
        assert!(!req("app", SelectorOp::DoesNotExist, &[]).matches(&pod));
        assert!(req("tier", SelectorOp::Exists, &[]).matches(&pod));
        assert!(!req("missing", SelectorOp::In, &["x"]).matches(&pod));

        let sel = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("tier", SelectorOp::In, &["be"])],
        };
        assert!(!sel.matches(&pod), "matchLabels AND matchExpressions");
        assert!(LabelSelector::everything().matches(&Labels::new()));
    }
}
