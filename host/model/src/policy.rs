//! The policy model: what every dialect compiles into, before resolution.
//!
//! Objects here still speak in label selectors and port names; the resolver
//! turns them into a [`crate::ruleset::RuleSet`] of concrete addresses and
//! port numbers per node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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

/// A set of pods: pods matching `pods` in namespaces within `namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodSet {
    pub namespaces: NamespaceScope,
    pub pods: LabelSelector,
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
}

/// The evaluation tier a policy belongs to. Tiers are evaluated in this
/// order: admin tiers by priority, then the NetworkPolicy tier, then the
/// baseline tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TierRank {
    /// AdminNetworkPolicy, lower priority first.
    Admin { priority: u32 },
    /// NetworkPolicy semantics: allow rules, a selected endpoint is isolated
    /// (no match denies). The beta DefaultDeny annotation and the 2016
    /// namespace isolation land here too.
    NetworkPolicy,
    /// BaselineAdminNetworkPolicy.
    Baseline,
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
