//! The readiness gate `palisade.io/policy-programmed`.
//!
//! A workload that lists the gate in its pods' `spec.readinessGates` is
//! ready only once palisade has set the pod's condition of that type to
//! `True`. Palisade sets it when the node's backend has programmed a rule
//! set in which the pod is an endpoint, so the pod gets no Service traffic
//! before its policy is in force. Only pods on this node are endpoints, so
//! only the pod's own node sets the condition. The condition is set once per
//! pod (uid), never taken back: readiness is not a way to signal later
//! changes of policy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{SecondsFormat, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use palisade_store::ObjectKey;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::health::Health;

/// The condition type of the gate.
pub const GATE: &str = "palisade.io/policy-programmed";

/// A pod that asks for the gate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gated {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The pods that ask for the gate, and those whose condition is set.
#[derive(Debug, Default)]
pub struct Gates {
    /// `ns/name` → the pod, with whether its condition is already `True`.
    pods: HashMap<String, (Gated, bool)>,
    /// Set by the patcher after a successful patch.
    done: Arc<Mutex<HashSet<Gated>>>,
    /// Sent to the patcher, not finished yet.
    inflight: Arc<Mutex<HashSet<Gated>>>,
}

fn has_gate(pod: &Value) -> bool {
    pod.pointer("/spec/readinessGates").and_then(Value::as_array).is_some_and(|gates| {
        gates.iter().any(|g| g.get("conditionType").and_then(Value::as_str) == Some(GATE))
    })
}

fn condition_true(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some(GATE)
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    })
}

impl Gates {
    /// Notes a Pod of a batch (other kinds are ignored).
    pub fn observe(&mut self, object: &Value) {
        if object.get("kind").and_then(Value::as_str) != Some("Pod")
            || object.get("apiVersion").and_then(Value::as_str) != Some("v1")
        {
            return;
        }
        let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (namespace, name) = (text("/metadata/namespace"), text("/metadata/name"));
        let key = format!("{namespace}/{name}");
        if !has_gate(object) {
            self.pods.remove(&key);
            return;
        }
        let gated = Gated {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: text("/metadata/uid").to_string(),
        };
        self.pods.insert(key, (gated, condition_true(object)));
    }

    /// A deleted object.
    pub fn forget(&mut self, key: &ObjectKey) {
        if key.kind == "Pod" && key.group.is_empty() {
            let ns = key.namespace.as_deref().unwrap_or_default();
            self.pods.remove(&format!("{ns}/{}", key.name));
        }
    }

    /// The gated pods among `programmed` (endpoint names, `ns/name`)
    /// whose condition is not set yet.
    pub fn due(&self, programmed: &BTreeSet<&str>) -> Vec<Gated> {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Gated> = self
            .pods
            .iter()
            .filter(|(key, (g, set))| {
                !set && programmed.contains(key.as_str())
                    && !done.contains(g)
                    && !inflight.contains(g)
            })
            .map(|(_, (g, _))| g.clone())
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// Marks `pod` as sent to the patcher.
    pub fn sent(&self, pod: &Gated) {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner).insert(pod.clone());
    }

    /// How many gated pods are known.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

/// The strategic-merge patch of the pod's status (conditions merge by
/// `type`).
pub fn condition_patch(generation: u64) -> Value {
    json!({"status": {"conditions": [{
        "type": GATE,
        "status": "True",
        "reason": "PolicyProgrammed",
        "message": format!("palisade: the pod's network policy is in force (rule set generation {generation})"),
        "lastTransitionTime": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    }]}})
}

/// Starts the task that sets the condition; send it the due pods with the
/// generation in force. A failed patch is tried three times in all.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    client: Client,
    gates: &Gates,
    health: Arc<Health>,
) -> UnboundedSender<(Gated, u64)> {
    let (tx, mut rx) = unbounded_channel::<(Gated, u64)>();
    let done = gates.done.clone();
    let inflight = gates.inflight.clone();
    runtime.spawn(async move {
        while let Some((pod, generation)) = rx.recv().await {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
            let patch = Patch::Strategic(condition_patch(generation));
            let mut result = Err(String::new());
            for attempt in 0..3u32 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                result = api
                    .patch_status(&pod.name, &PatchParams::default(), &patch)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if result.is_ok() {
                    break;
                }
            }
            inflight.lock().unwrap_or_else(PoisonError::into_inner).remove(&pod);
            match result {
                Ok(()) => {
                    tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), generation, "readiness gate {GATE} set");
                    health.gate_set();
                    done.lock().unwrap_or_else(PoisonError::into_inner).insert(pod);
                }
                Err(e) => tracing::warn!(
                    pod = %format!("{}/{}", pod.namespace, pod.name),
                    "cannot set the readiness gate {GATE} (retried with the next programming): {e}"
                ),
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, gate: bool, set: bool) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "a", "uid": format!("u-{name}")}});
        if gate {
            p["spec"] = json!({"readinessGates": [{"conditionType": GATE}]});
        }
        if set {
            p["status"] = json!({"conditions": [{"type": GATE, "status": "True"}]});
        }
        p
    }

    #[test]
    fn only_programmed_gated_pods_without_the_condition_are_due() {
        let mut g = Gates::default();
        g.observe(&pod("gated", true, false));
        g.observe(&pod("plain", false, false));
        g.observe(&pod("already", true, true));
        g.observe(&pod("elsewhere", true, false));
        let programmed: BTreeSet<&str> = ["a/gated", "a/plain", "a/already"].into();
        let due: Vec<String> = g.due(&programmed).into_iter().map(|p| p.name).collect();
        assert_eq!(due, ["gated"]);
        // Set once: after the patch it is no longer due.
        let first = g.due(&programmed)[0].clone();
        g.done.lock().unwrap().insert(first);
        assert!(g.due(&programmed).is_empty());
        // The gate removed from the pod, or the pod deleted: forgotten.
        g.observe(&pod("elsewhere", false, false));
        assert_eq!(g.len(), 2);
        g.forget(&ObjectKey {
            group: String::new(),
            kind: "Pod".into(),
            namespace: Some("a".into()),
            name: "gated".into(),
        });
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn the_patch_sets_the_condition_true_with_the_generation() {
        let p = condition_patch(7);
        let c = &p["status"]["conditions"][0];
        assert_eq!(c["type"], GATE);
        assert_eq!(c["status"], "True");
        assert!(c["message"].as_str().unwrap().contains("generation 7"));
    }
}
