//! The resolver: turns the policy model (namespaces, pods, nodes and
//! policies with label selectors) into the resolved rule set of one node.
//!
//! * Selectors become interned, reference-counted address sets; two peers
//!   with the same addresses share one set id.
//! * Named ports become numbers: ingress against the local endpoint's own
//!   container ports, egress against each destination pod (one rule per
//!   resolved number).
//! * Each endpoint gets, per direction, the tiers of the policies that select
//!   it: admin tiers, the NetworkPolicy tier (isolating: no match denies),
//!   the baseline tier.
//!
//! The resolver is incremental: every event touches only the selectors,
//! sources and endpoints it affects, and the changes are available as a
//! [`palisade_model::Delta`].

mod calico;
mod compile;
mod output;
mod render;
mod resolver;
mod selectors;
mod sets;
mod sources;

#[cfg(test)]
mod tests;

pub use calico::Selected;
pub use compile::block_prefixes;
pub use render::{NODE_EXEMPTION, PALISADE_KIND};
pub use resolver::Resolver;

/// What happens to traffic from a Node's address to a local endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NodeTraffic {
    /// Allowed before any tier (kubelet probes): an endpoint with an ingress
    /// policy gets a first tier that allows every Node object's address.
    #[default]
    Allow,
    /// Judged by the policies like any other source.
    Policy,
}

/// How a resolver is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `None`: every pod is a local endpoint (model mode, used by the
    /// conformance runner). `Some(node)`: only pods with `spec.nodeName ==
    /// node` are endpoints; every pod remains a peer.
    pub node: Option<String>,
    /// Treatment of traffic from nodes.
    pub node_traffic: NodeTraffic,
}
