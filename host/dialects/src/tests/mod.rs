//! Compiler tests, per dialect. Expectations come from the Kubernetes API
//! reference and the project's semantics notes, written out by hand.

mod beta;
mod calico;
mod core_objects;
mod experimental;
mod v1;

use palisade_model::policy::{
    LabelSelector, Labels, NamespaceScope, ObjectRef, PeerSelector, PodSet, Policy, PortSelector,
};
use palisade_model::{ModelEvent, Protocol};
use serde_json::Value;

use crate::{Compiled, Compiler, DialectError};

/// Parses one YAML object.
pub(super) fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub(super) fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: labels(pairs), match_expressions: Vec::new() }
}

pub(super) fn pods_in(namespace: &str, pods: LabelSelector) -> PeerSelector {
    PeerSelector::Pods(PodSet {
        namespaces: NamespaceScope::Named(namespace.into()),
        pods,
        ..PodSet::default()
    })
}

pub(super) fn pods_where(namespaces: LabelSelector, pods: LabelSelector) -> PeerSelector {
    PeerSelector::Pods(PodSet {
        namespaces: NamespaceScope::Selector(namespaces),
        pods,
        ..PodSet::default()
    })
}

pub(super) fn tcp(first: u16, last: u16) -> PortSelector {
    PortSelector::Range { protocol: Protocol::Tcp, first, last }
}

pub(super) fn policy_ref(kind: &str, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef { kind: kind.into(), namespace: namespace.into(), name: name.into() }
}

/// Applies an object that must compile.
pub(super) fn apply(compiler: &mut Compiler, text: &str) -> Compiled {
    compiler.apply(&yaml(text)).unwrap_or_else(|e| panic!("{e}"))
}

/// Applies an object that must be rejected.
pub(super) fn reject(compiler: &mut Compiler, text: &str) -> DialectError {
    match compiler.apply(&yaml(text)) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

/// The only policy upserted by `compiled`.
pub(super) fn the_policy(compiled: &Compiled) -> Policy {
    let upserts: Vec<&Policy> = compiled
        .events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::PolicyUpserted(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(upserts.len(), 1, "{:?}", compiled.events);
    upserts[0].clone()
}

/// A short description of policy events: `+kind ns/name` or `-kind ns/name`.
pub(super) fn policy_events(events: &[ModelEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::PolicyUpserted(p) => {
                Some(format!("+{} {}/{}", p.object.kind, p.object.namespace, p.object.name))
            }
            ModelEvent::PolicyDeleted(o) => Some(format!("-{} {}/{}", o.kind, o.namespace, o.name)),
            _ => None,
        })
        .collect()
}
