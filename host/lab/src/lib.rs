//! The network-namespace lab: real traffic between pods, through a node.
//!
//! A lab is one node namespace that routes (proxy ARP, /32 routes) between
//! one namespace per pod and one per external endpoint (`ip:...` clients
//! and servers, `node:NAME` addresses), each joined to the node by a veth
//! pair. Every packet between endpoints is forwarded by the node namespace,
//! where an enforcer (an nftables table, eBPF programs on the node-side
//! veths) applies policy. Each endpoint runs listeners on its declared
//! ports that answer with its identity, and probes run in parallel from
//! threads inside the source namespaces. See `docs/lab.md`.
//!
//! - [`LabSpec`] (pods, externals; from model pods and nodes) →
//!   [`Lab::up`] → [`Lab::probe_many`] → drop (teardown).
//! - [`leftovers`] / [`cleanup_leftovers`]: namespaces of labs whose
//!   process died before tearing them down.
//! - [`signals`]: hold a lab until Ctrl-C / SIGTERM (the CLI).
//!
//! Needs root (namespaces, veths) and iproute2's `ip`.

mod ip;
mod lab;
mod listener;
mod naming;
mod probe;
pub mod signals;
mod spec;

pub use lab::{EndpointKind, Lab, LabEndpoint};
pub use naming::{cleanup_leftovers, lab_prefix_of, leftovers, MARKER_DIR, NETNS_DIR};
pub use probe::{sctp_supported, Observed, ProbeOutcome, ProbeRequest, DEFAULT_PROBE_TIMEOUT};
pub use spec::{LabExternal, LabPod, LabSpec};

/// Why a lab could not be built, changed or torn down.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Building lab `prefix` failed; everything made so far was removed.
    #[error("lab {prefix}: {source}")]
    Up { prefix: String, source: Box<LabError> },
    /// The spec cannot be built (duplicate key or address, IPv6, ...).
    #[error("{0}")]
    Spec(String),
    /// An `ip` command failed.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Netns(#[from] palisade_netns::NetnsError),
    /// A listener could not bind a port.
    #[error("{key}: {message}")]
    Listener { key: String, message: String },
    /// Namespaces that still exist after `ip netns del`.
    #[error("namespaces still present after teardown: {}", remaining.join(", "))]
    Teardown { remaining: Vec<String> },
}
