//! The policy model and the intermediate form of Palisade.
//!
//! * [`policy`]: dialect-independent policies with label selectors, before
//!   resolution (what the dialect compilers produce).
//! * [`ruleset`]: the resolved rule set of one node (what backends enforce):
//!   endpoints, interned address sets, per-endpoint tiers of rules, deltas.
//! * [`net`]: addresses, prefixes and protocols shared by both.
//!
//! This crate depends on neither kube nor wasmtime, so that every dialect,
//! the resolver and the reference evaluator can be tested without a cluster
//! and without a WebAssembly runtime.

pub mod calico_selector;
pub mod event;
pub mod net;
pub mod policy;
pub mod ruleset;

pub use event::ModelEvent;
pub use net::{Cidr, CidrError, Protocol};
pub use ruleset::{
    Action, AddressSet, Delta, DeltaError, Direction, Endpoint, EndpointId, EndpointPolicy,
    NoMatch, Origin, OriginId, Peer, PolicyKey, PortRange, Rule, RuleSet, SetChange, SetId, Tier,
};
