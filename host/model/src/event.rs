//! Changes of the model, as the dialect compilers emit them and the resolver
//! consumes them. One event per changed model object; the resolver never
//! rescans the cluster to find out what changed.

use serde::{Deserialize, Serialize};

use crate::policy::{Namespace, Node, ObjectRef, Pod, Policy};

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
    /// A policy created or replaced; identity is `policy.object`.
    PolicyUpserted(Policy),
    PolicyDeleted(ObjectRef),
}
