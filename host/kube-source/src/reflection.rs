//! What the watchers have seen, kind by kind, and the changes not yet
//! applied to the pipeline.
//!
//! Changes are keyed by object, so a burst of updates to one object leaves
//! one change (the last). A relist (after a `410 Gone`, or on start) is
//! buffered until it is complete, then compared with what was known: objects
//! missing from it are deleted, so no deletion is lost while the watch was
//! down.

use std::collections::{BTreeMap, BTreeSet};

use kube::runtime::watcher::Event;
use palisade_store::ObjectKey;
use serde_json::Value;

use crate::kinds::WatchedKind;

/// Changes to apply to the pipeline, as one batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Objects created or replaced.
    pub apply: Vec<Value>,
    /// Objects deleted.
    pub delete: Vec<ObjectKey>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

#[derive(Debug, Default)]
struct KindState {
    known: BTreeSet<ObjectKey>,
    /// `Some` between `Init` and `InitDone`.
    relisting: Option<Vec<(ObjectKey, Value)>>,
    /// Listed completely at least once (or absent, for an optional kind).
    synced: bool,
}

pub struct Reflection {
    kinds: Vec<WatchedKind>,
    states: Vec<KindState>,
    pending: BTreeMap<ObjectKey, Option<Value>>,
}

/// The key of an object a watcher delivered; `None` (logged) for an object
/// without a usable name.
fn key_of(object: &Value) -> Option<ObjectKey> {
    match ObjectKey::of_object(object) {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!("ignoring an object from the API server: {e}");
            None
        }
    }
}

impl Reflection {
    pub fn new(kinds: Vec<WatchedKind>) -> Reflection {
        let states = kinds.iter().map(|_| KindState::default()).collect();
        Reflection { kinds, states, pending: BTreeMap::new() }
    }

    pub fn kinds(&self) -> &[WatchedKind] {
        &self.kinds
    }

    /// One event of the watcher of kind number `kind`.
    pub fn handle(&mut self, kind: usize, event: Event<Value>) {
        let Some(state) = self.states.get_mut(kind) else { return };
        match event {
            Event::Init => state.relisting = Some(Vec::new()),
            Event::InitApply(object) => {
                if let (Some(buffer), Some(key)) = (state.relisting.as_mut(), key_of(&object)) {
                    buffer.push((key, object));
                }
            }
            Event::InitDone => {
                let listed = state.relisting.take().unwrap_or_default();
                let keys: BTreeSet<ObjectKey> = listed.iter().map(|(k, _)| k.clone()).collect();
                for gone in state.known.difference(&keys) {
                    self.pending.insert(gone.clone(), None);
                }
                for (key, object) in listed {
                    self.pending.insert(key, Some(object));
                }
                state.known = keys;
                state.synced = true;
            }
            Event::Apply(object) => {
                if let Some(key) = key_of(&object) {
                    state.known.insert(key.clone());
                    self.pending.insert(key, Some(object));
                }
            }
            Event::Delete(object) => {
                if let Some(key) = key_of(&object) {
                    state.known.remove(&key);
                    self.pending.insert(key, None);
                }
            }
        }
    }

    /// The API server does not serve kind number `kind` (404, 403): it counts as
    /// listed and empty.
    pub fn absent(&mut self, kind: usize) {
        self.handle(kind, Event::Init);
        self.handle(kind, Event::InitDone);
    }

    /// True once every kind was listed completely (optional kinds may be
    /// absent instead).
    pub fn synced(&self) -> bool {
        self.states.iter().all(|s| s.synced)
    }

    /// The kinds not listed yet, for logs.
    pub fn unsynced(&self) -> Vec<String> {
        self.kinds
            .iter()
            .zip(&self.states)
            .filter(|(_, s)| !s.synced)
            .map(|(k, _)| k.label())
            .collect()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The changes since the last call.
    pub fn take_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        for (key, change) in std::mem::take(&mut self.pending) {
            match change {
                Some(object) => batch.apply.push(object),
                None => batch.delete.push(key),
            }
        }
        batch
    }

    /// How many objects of each kind are known, by kind label.
    pub fn counts(&self) -> Vec<(String, usize)> {
        self.kinds.iter().zip(&self.states).map(|(k, s)| (k.label(), s.known.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds;

    fn pod(name: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "a"},
               "status": {"podIP": ip}})
    }

    fn names(objects: &[Value]) -> Vec<&str> {
        objects.iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn bursts_collapse_and_a_relist_deletes_what_it_no_longer_lists() {
        let mut r = Reflection::new(vec![kinds::PODS]);
        r.handle(0, Event::Init);
        r.handle(0, Event::InitApply(pod("x", "10.0.0.1")));
        r.handle(0, Event::InitApply(pod("y", "10.0.0.2")));
        assert!(!r.synced() && !r.has_pending(), "a list is applied only once complete");
        r.handle(0, Event::InitDone);
        assert!(r.synced());
        assert_eq!(names(&r.take_batch().apply), ["x", "y"]);

        for ip in ["10.0.0.3", "10.0.0.4", "10.0.0.5"] {
            r.handle(0, Event::Apply(pod("x", ip)));
        }
        let batch = r.take_batch();
        assert_eq!(batch.apply, [pod("x", "10.0.0.5")], "the last state of x only");

        // y is deleted while the watch is down; the relist notices.
        r.handle(0, Event::Init);
        r.handle(0, Event::InitApply(pod("x", "10.0.0.5")));
        r.handle(0, Event::InitDone);
        let batch = r.take_batch();
        assert_eq!(batch.delete, [ObjectKey::new("", "Pod", Some("a"), "y")]);
        assert_eq!(r.counts(), [("Pod".to_string(), 1)]);

        r.handle(0, Event::Apply(pod("z", "10.0.0.6")));
        r.handle(0, Event::Delete(pod("z", "10.0.0.6")));
        let batch = r.take_batch();
        assert!(batch.apply.is_empty(), "created and deleted in one burst: {batch:?}");
        assert_eq!(batch.delete.len(), 1);
    }

    #[test]
    fn an_absent_optional_kind_counts_as_listed() {
        let mut r = Reflection::new(vec![kinds::PODS, kinds::EXPERIMENTAL_POLICIES]);
        r.handle(0, Event::Init);
        r.handle(0, Event::InitDone);
        assert_eq!(r.unsynced(), ["NetworkPolicy.experimental.kubernetes.io"]);
        r.absent(1);
        assert!(r.synced());
    }
}
