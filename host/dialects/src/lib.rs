//! Palisade's dialect compilers: Kubernetes objects (kept as JSON values by
//! [`palisade_store`]) into the dialect-independent policy model of
//! [`palisade_model::policy`], as a stream of [`palisade_model::ModelEvent`]s.
//!
//! Dialects read:
//! * core objects ([`core`]): Namespace, Pod, Node;
//! * `networking.k8s.io/v1` NetworkPolicy ([`v1`]);
//! * `extensions/v1beta1` NetworkPolicy and the DefaultDeny namespace
//!   annotation ([`v1beta1`]);
//! * the 2016 proposal's `experimental.kubernetes.io/v1` NetworkPolicy and
//!   namespace isolation ([`experimental`]).
//!
//! ```
//! use palisade_dialects::{Compiler, Settings};
//! use palisade_model::ModelEvent;
//! use serde_json::json;
//!
//! let mut compiler = Compiler::new(Settings::default());
//! let compiled = compiler
//!     .apply(&json!({
//!         "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
//!         "metadata": {"name": "deny-all", "namespace": "web"},
//!         "spec": {"podSelector": {}}
//!     }))
//!     .map_err(|e| e.to_string())?;
//! let ModelEvent::PolicyUpserted(policy) = &compiled.events[0] else { panic!() };
//! assert_eq!(policy.ingress, Some(vec![]), "isolated for ingress, nothing allowed");
//! assert_eq!(policy.egress, None);
//! # Ok::<(), String>(())
//! ```

pub mod calico;
mod compiler;
mod core;
mod error;
pub mod experimental;
mod field;
mod selector;
pub mod v1;
pub mod v1beta1;
mod validate;

#[cfg(test)]
mod tests;

pub use compiler::{Compiled, Compiler, Report};
pub use error::{DialectError, Problem, Warning};

/// Which rule decides when `extensions/v1beta1` policies are in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BetaRule {
    /// Kubernetes 1.3–1.6: a v1beta1 policy is in force only in a namespace
    /// carrying the DefaultDeny annotation; elsewhere it is ignored. The
    /// founding document's behaviour, and the default.
    #[default]
    Beta,
    /// Kubernetes 1.7 on: v1beta1 policies are always in force, like v1.
    V1,
}

/// Compiler settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// When extensions/v1beta1 policies are in force (default
    /// [`BetaRule::Beta`]).
    pub beta_rule: BetaRule,
    /// Also honour Romana's annotation key
    /// `net.beta.kubernetes.io/networkpolicy` (default false).
    pub romana_annotation: bool,
}
