//! The stateful compiler: objects in, model events out.

use std::collections::{BTreeMap, BTreeSet};

use palisade_model::policy::{ObjectRef, Policy, TierRank};
use palisade_model::ModelEvent;
use palisade_store::{prepare, split_api_version, ObjectKey, Store};
use serde_json::{Map, Value};

use crate::calico::{self, Scope, TierObject};
use crate::error::Problem;
use crate::error::{DialectError, Warning};
use crate::field::Ctx;
use crate::v1::Flavor;
use crate::{core, experimental, v1, v1beta1, BetaRule, Settings};

/// What one object compiled into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// The model changes, in the order the resolver should apply them.
    pub events: Vec<ModelEvent>,
    /// Things accepted with a remark.
    pub warnings: Vec<Warning>,
}

/// The outcome of compiling a whole [`Store`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The model changes.
    pub events: Vec<ModelEvent>,
    /// Remarks on accepted objects.
    pub warnings: Vec<Warning>,
    /// Objects rejected (or of an unsupported kind), one error each.
    pub errors: Vec<DialectError>,
}

/// When a compiled policy is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Always (networking.k8s.io/v1; extensions/v1beta1 under the v1 rule).
    Always,
    /// While its namespace carries the DefaultDeny annotation.
    DefaultDeny,
    /// While its namespace is isolated (2016 `spec.isolation`).
    Isolation,
}

/// The switches a namespace sets for the dialects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Switches {
    default_deny: bool,
    isolated: bool,
}

impl Switches {
    fn opens(self, gate: Gate) -> bool {
        match gate {
            Gate::Always => true,
            Gate::DefaultDeny => self.default_deny,
            Gate::Isolation => self.isolated,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    policy: Policy,
    gate: Gate,
    /// Calico: the tier the policy names (its rank follows the Tier).
    tier: Option<String>,
}

/// Compiles Kubernetes objects into the policy model and emits
/// [`ModelEvent`]s.
///
/// The compiler remembers what it has compiled, so that it can emit the
/// right events when a namespace change puts policies in or out of force
/// (the DefaultDeny annotation for extensions/v1beta1 under
/// [`BetaRule::Beta`], 2016 isolation for experimental policies), and so
/// that an invalid replacement leaves the previous version in force.
#[derive(Debug, Clone, Default)]
pub struct Compiler {
    settings: Settings,
    namespaces: BTreeMap<String, Switches>,
    policies: BTreeMap<ObjectKey, Entry>,
    /// Every policy (implicit ones included) whose upsert has been emitted
    /// and not yet withdrawn.
    in_force: BTreeSet<ObjectRef>,
    pods: BTreeSet<(String, String)>,
    nodes: BTreeSet<String>,
    accounts: BTreeSet<(String, String)>,
    network_sets: BTreeSet<(Option<String>, String)>,
    /// Calico Tier objects (the `default` tier always exists).
    tiers: BTreeMap<String, TierObject>,
}

impl Compiler {
    /// A compiler with no objects.
    pub fn new(settings: Settings) -> Compiler {
        Compiler { settings, ..Compiler::default() }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Creates or replaces an object. The object is defaulted as the store
    /// would default it (defaulting twice is harmless). On error nothing
    /// changes: no event, and a previous version stays in force.
    pub fn apply(&mut self, object: &Value) -> Result<Compiled, DialectError> {
        let (key, object) = prepare(object.clone())?;
        self.apply_prepared(&key, &object)
    }

    /// Creates or replaces an object in `store` and compiles it; an object
    /// that fails to compile is not stored (the store keeps the previous
    /// version, as the API server would after rejecting an update).
    pub fn apply_stored(
        &mut self,
        store: &mut Store,
        object: Value,
    ) -> Result<(ObjectKey, Compiled), DialectError> {
        let (key, object) = prepare(object)?;
        let compiled = self.apply_prepared(&key, &object)?;
        store.insert_prepared(key.clone(), object);
        Ok((key, compiled))
    }

    /// Deletes an object from `store` and from the compiler; a refused
    /// deletion (a Calico Tier still in use) leaves both as they were.
    pub fn delete_stored(
        &mut self,
        store: &mut Store,
        key: &ObjectKey,
    ) -> Result<Vec<ModelEvent>, DialectError> {
        let events = self.delete_checked(key)?;
        store.delete(key);
        Ok(events)
    }

    /// Compiles every object of `store`: namespaces first, then nodes, pods
    /// and everything else, each group in key order. Errors are collected
    /// per object.
    pub fn compile_store(&mut self, store: &Store) -> Report {
        let rank = |k: &ObjectKey| match (k.group.as_str(), k.kind.as_str()) {
            ("", "Namespace") => 0,
            ("", "Node") => 1,
            ("", "Pod") => 2,
            (g, "Tier") if calico::is_calico_group(g) => 3,
            _ => 4,
        };
        let mut objects: Vec<(&ObjectKey, &Value)> = store.iter().collect();
        objects.sort_by_key(|(k, _)| rank(k));
        let mut report = Report::default();
        for (key, object) in objects {
            match self.apply_prepared(key, object) {
                Ok(compiled) => {
                    report.events.extend(compiled.events);
                    report.warnings.extend(compiled.warnings);
                }
                Err(e) => report.errors.push(e),
            }
        }
        report
    }

    fn apply_prepared(
        &mut self,
        key: &ObjectKey,
        object: &Value,
    ) -> Result<Compiled, DialectError> {
        let empty = Map::new();
        let map = object.as_object().unwrap_or(&empty);
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let version = split_api_version(api_version).map(|(_, v)| v).unwrap_or_default();
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let mut ctx = Ctx::new(key);
        let events = match (key.group.as_str(), version, key.kind.as_str()) {
            ("", "v1", "Namespace") => {
                let ns = core::namespace(&mut ctx, map, &key.name, &self.settings)?;
                self.set_namespace(ns)
            }
            ("", "v1", "Pod") => {
                let pod = core::pod(&mut ctx, map, namespace, &key.name)?;
                self.pods.insert((pod.namespace.clone(), pod.name.clone()));
                vec![ModelEvent::PodUpserted(pod)]
            }
            ("", "v1", "Node") => {
                let node = core::node(&mut ctx, map, &key.name)?;
                self.nodes.insert(node.name.clone());
                vec![ModelEvent::NodeUpserted(node)]
            }
            ("networking.k8s.io", "v1", "NetworkPolicy") => {
                let policy = v1::compile(&mut ctx, map, namespace, &key.name, Flavor::V1)?;
                self.set_policy(key, policy, Gate::Always)
            }
            ("extensions", "v1beta1", "NetworkPolicy") => {
                let policy = v1::compile(&mut ctx, map, namespace, &key.name, Flavor::V1Beta1)?;
                let gate = match self.settings.beta_rule {
                    BetaRule::Beta => Gate::DefaultDeny,
                    BetaRule::V1 => Gate::Always,
                };
                self.set_policy(key, policy, gate)
            }
            ("experimental.kubernetes.io", _, "NetworkPolicy") => {
                let policy = experimental::compile(&mut ctx, map, namespace, &key.name)?;
                self.set_policy(key, policy, Gate::Isolation)
            }
            ("", "v1", "ServiceAccount") => {
                let labels = crate::selector::object_labels(&ctx, map)?;
                self.accounts.insert((namespace.to_string(), key.name.clone()));
                vec![ModelEvent::ServiceAccountUpserted(palisade_model::policy::ServiceAccount {
                    namespace: namespace.to_string(),
                    name: key.name.clone(),
                    labels,
                })]
            }
            (g, _, kind) if calico::is_calico_group(g) => {
                self.apply_calico(&mut ctx, key, map, kind)?
            }
            _ => {
                return Err(DialectError::UnsupportedKind {
                    object: Box::new(key.clone()),
                    api_version: api_version.to_string(),
                    kind: key.kind.clone(),
                })
            }
        };
        tracing::debug!(object = %key, events = events.len(), "compiled");
        Ok(Compiled { events, warnings: ctx.warnings })
    }

    /// Deletes an object; returns the events withdrawing what it put in
    /// force. Unknown keys yield no event. A refused deletion (see
    /// [`Compiler::delete_checked`]) is logged and changes nothing.
    pub fn delete(&mut self, key: &ObjectKey) -> Vec<ModelEvent> {
        self.delete_checked(key).unwrap_or_else(|e| {
            tracing::error!("{e}");
            Vec::new()
        })
    }

    /// [`Compiler::delete`], refusing to delete a Calico Tier that policies
    /// still use (as Calico's API server refuses it): the tier stays in
    /// force, and the error names it and one policy that uses it.
    pub fn delete_checked(&mut self, key: &ObjectKey) -> Result<Vec<ModelEvent>, DialectError> {
        let namespace = key.namespace.clone().unwrap_or_default();
        let events = match (key.group.as_str(), key.kind.as_str()) {
            ("", "Namespace") => match self.namespaces.remove(&key.name) {
                Some(old) => {
                    let mut events = vec![ModelEvent::NamespaceDeleted { name: key.name.clone() }];
                    events.extend(self.switch(&key.name, old, Switches::default()));
                    events
                }
                None => Vec::new(),
            },
            ("", "Pod") => {
                if self.pods.remove(&(namespace.clone(), key.name.clone())) {
                    vec![ModelEvent::PodDeleted { namespace, name: key.name.clone() }]
                } else {
                    Vec::new()
                }
            }
            ("", "Node") => {
                if self.nodes.remove(&key.name) {
                    vec![ModelEvent::NodeDeleted { name: key.name.clone() }]
                } else {
                    Vec::new()
                }
            }
            ("", "ServiceAccount") => {
                if self.accounts.remove(&(namespace.clone(), key.name.clone())) {
                    vec![ModelEvent::ServiceAccountDeleted { namespace, name: key.name.clone() }]
                } else {
                    Vec::new()
                }
            }
            (g, "NetworkSet" | "GlobalNetworkSet") if calico::is_calico_group(g) => {
                let ns = key.namespace.clone();
                if self.network_sets.remove(&(ns.clone(), key.name.clone())) {
                    vec![ModelEvent::NetworkSetDeleted { namespace: ns, name: key.name.clone() }]
                } else {
                    Vec::new()
                }
            }
            (g, "Tier") if calico::is_calico_group(g) => {
                if let Some(user) = self.tier_users(&key.name).next() {
                    return Err(DialectError::Invalid {
                        object: Box::new(key.clone()),
                        field: "metadata.name".into(),
                        problem: Problem::Tier(format!(
                            "the tier cannot be deleted while {user} uses it; it stays in force until its policies are deleted"
                        )),
                    });
                }
                self.tiers.remove(&key.name);
                Vec::new()
            }
            _ => match self.policies.remove(key) {
                Some(entry) => self.withdraw(&entry.policy.object).into_iter().collect(),
                None => Vec::new(),
            },
        };
        tracing::debug!(object = %key, events = events.len(), "deleted");
        Ok(events)
    }

    fn switches(&self, namespace: &str) -> Switches {
        self.namespaces.get(namespace).copied().unwrap_or_default()
    }

    fn set_namespace(&mut self, ns: core::NamespaceObject) -> Vec<ModelEvent> {
        let name = ns.model.name.clone();
        let new = Switches { default_deny: ns.default_deny, isolated: ns.isolated };
        let old = self.namespaces.insert(name.clone(), new).unwrap_or_default();
        let mut events = vec![ModelEvent::NamespaceUpserted(ns.model)];
        events.extend(self.switch(&name, old, new));
        events
    }

    /// The events for a namespace whose switches went from `old` to `new`
    /// (the namespace's entry must already hold `new`, or be gone).
    fn switch(&mut self, namespace: &str, old: Switches, new: Switches) -> Vec<ModelEvent> {
        let mut events = Vec::new();
        if old.default_deny != new.default_deny {
            events.extend(self.implicit(v1beta1::annotation_policy(namespace), new.default_deny));
        }
        if old.isolated != new.isolated {
            events.extend(self.implicit(experimental::isolation_policy(namespace), new.isolated));
        }
        let flipped: Vec<ObjectKey> = self
            .policies
            .iter()
            .filter(|(k, e)| {
                k.namespace.as_deref() == Some(namespace) && old.opens(e.gate) != new.opens(e.gate)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in flipped {
            events.extend(self.reconcile(&key));
        }
        events
    }

    fn implicit(&mut self, policy: Policy, on: bool) -> Option<ModelEvent> {
        if on {
            self.in_force.insert(policy.object.clone());
            Some(ModelEvent::PolicyUpserted(policy))
        } else {
            self.withdraw(&policy.object)
        }
    }

    fn set_policy(&mut self, key: &ObjectKey, policy: Policy, gate: Gate) -> Vec<ModelEvent> {
        self.policies.insert(key.clone(), Entry { policy, gate, tier: None });
        self.reconcile(key).into_iter().collect()
    }

    /// The rank of Calico tier `name`, if it exists.
    fn tier_rank(&self, name: &str) -> Option<TierRank> {
        if name == TierRank::DEFAULT_TIER {
            return Some(TierRank::NetworkPolicy);
        }
        let tier = self.tiers.get(name)?;
        Some(TierRank::Calico { order: tier.order, name: name.to_string(), pass: tier.pass })
    }

    /// The policies that name tier `name`.
    fn tier_users<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ObjectKey> {
        self.policies.iter().filter(move |(_, e)| e.tier.as_deref() == Some(name)).map(|(k, _)| k)
    }

    /// The Calico kinds.
    fn apply_calico(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &ObjectKey,
        map: &Map<String, Value>,
        kind: &str,
    ) -> Result<Vec<ModelEvent>, DialectError> {
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let scope = |kind: &str| match kind {
            "NetworkPolicy" | "StagedNetworkPolicy" => Scope::Namespace(namespace),
            _ => Scope::Global,
        };
        Ok(match kind {
            "NetworkPolicy" | "GlobalNetworkPolicy" => {
                let compiled = calico::compile_policy(ctx, map, scope(kind), &key.name)?;
                if self.tier_rank(&compiled.tier).is_none() {
                    return Err(ctx.invalid(
                        "spec.tier",
                        Problem::Tier(format!("tier `{}` does not exist", compiled.tier)),
                    ));
                }
                let entry = Entry {
                    policy: compiled.policy,
                    gate: Gate::Always,
                    tier: Some(compiled.tier),
                };
                self.policies.insert(key.clone(), entry);
                self.reconcile(key).into_iter().collect()
            }
            "StagedNetworkPolicy" | "StagedGlobalNetworkPolicy" => {
                calico::compile_policy(ctx, map, scope(kind), &key.name)?;
                ctx.warn("", "a staged policy is validated and not enforced");
                Vec::new()
            }
            "StagedKubernetesNetworkPolicy" => {
                v1::compile(ctx, map, namespace, &key.name, Flavor::V1)?;
                ctx.warn("", "a staged policy is validated and not enforced");
                Vec::new()
            }
            "Tier" => {
                let tier = calico::tier(ctx, map, &key.name)?;
                self.tiers.insert(key.name.clone(), tier);
                let users: Vec<ObjectKey> = self.tier_users(&key.name).cloned().collect();
                users.iter().filter_map(|k| self.reconcile(k)).collect()
            }
            "NetworkSet" | "GlobalNetworkSet" => {
                let ns = (kind == "NetworkSet").then_some(namespace);
                let set = calico::network_set(ctx, map, ns, &key.name)?;
                self.network_sets.insert((set.namespace.clone(), set.name.clone()));
                vec![ModelEvent::NetworkSetUpserted(set)]
            }
            _ => {
                return Err(DialectError::UnsupportedKind {
                    object: Box::new(key.clone()),
                    api_version: map
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    kind: kind.to_string(),
                })
            }
        })
    }

    /// Emits the upsert of a policy in force, or withdraws one that is no
    /// longer.
    fn reconcile(&mut self, key: &ObjectKey) -> Option<ModelEvent> {
        let entry = self.policies.get(key)?;
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let rank = match &entry.tier {
            None => Some(entry.policy.tier.clone()),
            Some(name) => self.tier_rank(name),
        };
        if let (Some(rank), true) = (rank, self.switches(namespace).opens(entry.gate)) {
            let mut policy = entry.policy.clone();
            policy.tier = rank;
            self.in_force.insert(policy.object.clone());
            Some(ModelEvent::PolicyUpserted(policy))
        } else {
            let object = entry.policy.object.clone();
            self.withdraw(&object)
        }
    }

    fn withdraw(&mut self, object: &ObjectRef) -> Option<ModelEvent> {
        self.in_force.remove(object).then(|| ModelEvent::PolicyDeleted(object.clone()))
    }

    /// The identities of the policies currently in force (implicit ones
    /// included), in order.
    pub fn policies_in_force(&self) -> impl Iterator<Item = &ObjectRef> {
        self.in_force.iter()
    }
}
