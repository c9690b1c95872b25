//! Changes of the model, as the dialect compilers emit them and the resolver
//! consumes them. One event per changed model object; the resolver never
//! rescans the cluster to find out what changed.

use serde::{Deserialize, Serialize};

use crate::policy::{Namespace, NetworkSet, Node, ObjectRef, Pod, Policy, ServiceAccount};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelEvent {
    NamespaceUpserted(Namespace),
    NamespaceDeleted {
        name: String,
    },
    PodUpserted(Pod),
    PodDeleted {
        namespace: String,
        name: String,
    },
    NodeUpserted(Node),
    NodeDeleted {
        name: String,
    },
    ServiceAccountUpserted(ServiceAccount),
    ServiceAccountDeleted {
        namespace: String,
        name: String,
    },
    /// A (Global)NetworkSet created or replaced.
    NetworkSetUpserted(NetworkSet),
    NetworkSetDeleted {
        namespace: Option<String>,
        name: String,
    },
    /// A policy created or replaced; identity is `policy.object`.
    PolicyUpserted(Policy),
    PolicyDeleted(ObjectRef),
}
