//! The pipeline every front end shares: Kubernetes objects go into the store
//! (with the API server's defaulting), through the dialect compilers, into
//! the resolver; out come the node's rule set and the deltas between
//! generations.
//!
//! Objects of one batch are applied namespaces first, then nodes, pods and
//! policies, so that a policy never arrives before the namespace whose
//! annotation decides whether it is in force. Every model event of a batch
//! reaches the resolver at once, so a batch bumps the generation once.
//! Invalid objects are reported one by one and skipped: nothing of them is
//! applied, and the rest of the batch is.

use palisade_dialects::{Compiler, Warning};
use palisade_model::{Delta, RuleSet};
use palisade_resolver::Resolver;
use palisade_store::{describe, ObjectKey, Store};
use serde_json::Value;

/// An object that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position of the object in the batch as given to [`Pipeline::apply`].
    pub index: usize,
    /// `Kind.group namespace/name`, or a description of the raw object.
    pub object: String,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// The error, naming the object and the field.
    pub message: String,
    /// True for a kind Palisade does not read (ignored rather than invalid).
    pub unsupported_kind: bool,
}

/// What a batch of deletions left to report.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Keys of objects that did not exist.
    pub missing: Vec<ObjectKey>,
    /// Deletions refused; the objects stay (`index`: position in the batch).
    pub refused: Vec<Rejected>,
}

/// What a batch left to report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub warnings: Vec<Warning>,
    pub rejected: Vec<Rejected>,
}

/// Apply order inside one batch: namespaces, nodes, pods, Calico tiers
/// (before the policies that name them), everything else.
pub fn rank(object: &Value) -> u8 {
    let api = object.get("apiVersion").and_then(Value::as_str);
    match (api, object.get("kind").and_then(Value::as_str)) {
        (Some("v1"), Some("Namespace")) => 0,
        (Some("v1"), Some("Node")) => 1,
        (Some("v1"), Some("Pod")) => 2,
        (Some(api), Some("Tier"))
            if palisade_store::split_api_version(api)
                .is_some_and(|(group, _)| palisade_dialects::calico::is_calico_group(group)) =>
        {
            3
        }
        _ => 4,
    }
}

pub struct Pipeline {
    store: Store,
    compiler: Compiler,
    resolver: Resolver,
}

impl Pipeline {
    pub fn new(
        dialects: palisade_dialects::Settings,
        resolver: palisade_resolver::Settings,
    ) -> Pipeline {
        Pipeline {
            store: Store::new(),
            compiler: Compiler::new(dialects),
            resolver: Resolver::new(resolver),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The current rule set.
    pub fn rule_set(&self) -> &RuleSet {
        self.resolver.rule_set()
    }

    /// What changed since the last call.
    pub fn take_delta(&mut self) -> Delta {
        self.resolver.take_delta()
    }

    /// Creates or replaces objects, as one batch.
    pub fn apply(&mut self, objects: impl IntoIterator<Item = Value>) -> Outcome {
        let mut objects: Vec<(usize, Value)> = objects.into_iter().enumerate().collect();
        objects.sort_by_key(|(_, o)| rank(o));
        let mut outcome = Outcome::default();
        let mut events = Vec::new();
        for (index, object) in objects {
            let fallback = describe(&object);
            match self.compiler.apply_stored(&mut self.store, object) {
                Ok((_, compiled)) => {
                    outcome.warnings.extend(compiled.warnings);
                    events.extend(compiled.events);
                }
                Err(e) => outcome.rejected.push(Rejected {
                    index,
                    object: e.object().map(ToString::to_string).unwrap_or(fallback),
                    field: e.field().map(str::to_string),
                    message: e.to_string(),
                    unsupported_kind: e.is_unsupported_kind(),
                }),
            }
        }
        self.resolver.handle_all(events);
        outcome
    }

    /// Deletes objects by key, as one batch; says which keys did not exist
    /// and which deletions were refused (a Calico Tier still in use; the
    /// object stays).
    pub fn delete<'k>(&mut self, keys: impl IntoIterator<Item = &'k ObjectKey>) -> Deleted {
        let mut out = Deleted::default();
        let mut events = Vec::new();
        for (index, key) in keys.into_iter().enumerate() {
            if !self.store.contains(key) {
                out.missing.push(key.clone());
            }
            match self.compiler.delete_stored(&mut self.store, key) {
                Ok(e) => events.extend(e),
                Err(e) => out.refused.push(Rejected {
                    index,
                    object: key.to_string(),
                    field: e.field().map(str::to_string),
                    message: e.to_string(),
                    unsupported_kind: false,
                }),
            }
        }
        self.resolver.handle_all(events);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_applies_namespaces_before_policies_and_reports_invalid_objects() {
        let mut p = Pipeline::new(Default::default(), Default::default());
        let out = p.apply([
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "deny", "namespace": "a"}, "spec": {"podSelector": {}}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "bad", "namespace": "a"},
                   "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
                   "status": {"podIP": "10.0.0.1"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
        ]);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].index, 1);
        assert!(out.rejected[0].message.contains("bad"), "{:?}", out.rejected);
        assert_eq!(out.rejected[0].field.as_deref(), Some("spec.ingress[0].ports[0].port"));
        let rs = p.rule_set();
        assert_eq!(rs.endpoints.len(), 1);
        assert_eq!(rs.policies.len(), 1, "the pod is isolated by `deny`, not by `bad`");
        let generation = rs.generation;
        assert!(!p.take_delta().is_empty());

        let deleted = p.delete(&[
            ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("a"), "deny"),
            ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("a"), "never-was"),
        ]);
        assert_eq!(deleted.missing.len(), 1);
        assert!(deleted.refused.is_empty());
        assert!(p.rule_set().policies.is_empty());
        assert_eq!(p.rule_set().generation, generation + 1);
    }

    #[test]
    fn a_tier_in_use_is_not_deleted_and_the_refusal_is_reported() {
        let mut p = Pipeline::new(Default::default(), Default::default());
        let outcome = p.apply([
            json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                   "metadata": {"name": "guard.deny"}, "spec": {"tier": "guard", "ingress": [{"action": "Deny"}]}}),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "guard"}, "spec": {"order": 1}}),
        ]);
        assert!(
            outcome.rejected.is_empty(),
            "tiers apply first in a batch: {:?}",
            outcome.rejected
        );
        let tier = ObjectKey::new("projectcalico.org", "Tier", None, "guard");
        let deleted = p.delete(std::slice::from_ref(&tier));
        assert_eq!(deleted.refused.len(), 1);
        assert_eq!(deleted.refused[0].field.as_deref(), Some("metadata.name"));
        assert!(
            deleted.refused[0].message.contains("guard.deny"),
            "{}",
            deleted.refused[0].message
        );
        assert!(p.store().contains(&tier), "the tier stays");
        p.delete(&[ObjectKey::new("projectcalico.org", "GlobalNetworkPolicy", None, "guard.deny")]);
        assert!(p.delete(std::slice::from_ref(&tier)).refused.is_empty(), "unused now");
        assert!(!p.store().contains(&tier));
    }
}
