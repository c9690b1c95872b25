//! The kinds the Kubernetes source watches.

use kube::core::{ApiResource, GroupVersionKind};

/// One watched kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// A required kind must be listed before the first rule set is
    /// programmed. An optional one (a CRD that may not be installed, an API
    /// only old clusters serve) counts as empty while the API server answers
    /// 404 for it.
    pub required: bool,
}

impl WatchedKind {
    /// `apiVersion` of its objects (`v1`, `networking.k8s.io/v1`, ...).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `kind.group` (`Pod`, `NetworkPolicy.networking.k8s.io`): the label
    /// value of the `kind` metric label and in logs.
    pub fn label(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

pub const NAMESPACES: WatchedKind = WatchedKind {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    required: true,
};
pub const NODES: WatchedKind =
    WatchedKind { group: "", version: "v1", kind: "Node", plural: "nodes", required: true };
pub const PODS: WatchedKind =
    WatchedKind { group: "", version: "v1", kind: "Pod", plural: "pods", required: true };
pub const NETWORK_POLICIES: WatchedKind = WatchedKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    required: true,
};
/// The 2016 proposal's object, served by the CRD in
/// `deploy/crd-experimental-networkpolicy.yaml`.
pub const EXPERIMENTAL_POLICIES: WatchedKind = WatchedKind {
    group: "experimental.kubernetes.io",
    version: "v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    required: false,
};
/// `extensions/v1beta1` NetworkPolicy: served by clusters up to 1.15 only
/// (a CRD cannot take the group `extensions`, which has no dot).
pub const BETA_POLICIES: WatchedKind = WatchedKind {
    group: "extensions",
    version: "v1beta1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    required: false,
};

/// ServiceAccounts: their labels are what Calico's service account
/// selectors read.
pub const SERVICE_ACCOUNTS: WatchedKind = WatchedKind {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    required: true,
};

/// A Calico kind as Calico stores it in a cluster without its API server:
/// a `crd.projectcalico.org/v1` custom resource (optional: absent where
/// Calico's CRDs are not installed).
const fn calico(kind: &'static str, plural: &'static str) -> WatchedKind {
    WatchedKind { group: "crd.projectcalico.org", version: "v1", kind, plural, required: false }
}

/// Calico's kinds, tiers first.
pub const CALICO: [WatchedKind; 8] = [
    calico("Tier", "tiers"),
    calico("NetworkPolicy", "networkpolicies"),
    calico("GlobalNetworkPolicy", "globalnetworkpolicies"),
    calico("NetworkSet", "networksets"),
    calico("GlobalNetworkSet", "globalnetworksets"),
    calico("StagedNetworkPolicy", "stagednetworkpolicies"),
    calico("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies"),
    calico("StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies"),
];

/// Every kind the source watches, in apply order.
pub fn all() -> Vec<WatchedKind> {
    let mut kinds = vec![
        NAMESPACES,
        NODES,
        PODS,
        SERVICE_ACCOUNTS,
        NETWORK_POLICIES,
        EXPERIMENTAL_POLICIES,
        BETA_POLICIES,
    ];
    kinds.extend(CALICO);
    kinds
}
