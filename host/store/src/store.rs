//! The store: the current objects, by key.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::defaults;
use crate::error::StoreError;
use crate::key::ObjectKey;

/// Keys `object` and applies the API server's defaulting to it, without
/// storing it. [`Store::apply`] stores exactly what this returns; a
/// compiler can call it to see an object as the store would keep it.
/// Defaulting an already defaulted object changes nothing.
pub fn prepare(mut object: Value) -> Result<(ObjectKey, Value), StoreError> {
    let key = ObjectKey::of_object(&object)?;
    defaults::apply(&key, &mut object);
    Ok((key, object))
}

/// The current objects, each under its [`ObjectKey`], defaulted as the API
/// server would have defaulted them. Iteration is in key order.
#[derive(Debug, Clone, Default)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// Creates or replaces an object (defaulted first); returns its key.
    pub fn apply(&mut self, object: Value) -> Result<ObjectKey, StoreError> {
        let (key, object) = prepare(object)?;
        let replaced = self.objects.insert(key.clone(), object).is_some();
        tracing::debug!(object = %key, replaced, "stored");
        Ok(key)
    }

    /// Stores an object already returned by [`prepare`] under its key.
    pub fn insert_prepared(&mut self, key: ObjectKey, object: Value) {
        self.objects.insert(key, object);
    }

    /// Deletes an object; returns it if it was present.
    pub fn delete(&mut self, key: &ObjectKey) -> Option<Value> {
        let removed = self.objects.remove(key);
        tracing::debug!(object = %key, found = removed.is_some(), "deleted");
        removed
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// True if an object is stored under `key`.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.objects.contains_key(key)
    }

    /// Every object, in key order (group, kind, namespace, name).
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter()
    }

    /// The objects of one group and kind, e.g. (`""`, `Pod`) or
    /// (`networking.k8s.io`, `NetworkPolicy`), in key order.
    pub fn of_kind<'a>(
        &'a self,
        group: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        self.objects.iter().filter(move |(k, _)| k.group == group && k.kind == kind)
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True if the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(api_version: &str, name: &str) -> Value {
        json!({"apiVersion": api_version, "kind": "NetworkPolicy", "metadata": {"name": name},
               "spec": {"podSelector": {}}})
    }

    #[test]
    fn apply_replaces_by_group_kind_namespace_name() {
        let mut store = Store::new();
        let v1 = store.apply(policy("networking.k8s.io/v1", "p")).unwrap();
        let beta = store.apply(policy("extensions/v1beta1", "p")).unwrap();
        assert_ne!(v1, beta, "different groups are different objects");
        assert_eq!(store.len(), 2);
        let mut replacement = policy("networking.k8s.io/v1", "p");
        replacement["spec"]["podSelector"] = json!({"matchLabels": {"a": "b"}});
        assert_eq!(store.apply(replacement).unwrap(), v1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(&v1).unwrap()["spec"]["podSelector"]["matchLabels"]["a"], "b");
        assert_eq!(store.of_kind("extensions", "NetworkPolicy").count(), 1);
        assert!(store.delete(&beta).is_some());
        assert!(store.delete(&beta).is_none());
        assert_eq!(store.of_kind("extensions", "NetworkPolicy").count(), 0);
    }

    #[test]
    fn keys_of_objects_and_delete_refs_agree() {
        let mut store = Store::new();
        let key = store.apply(policy("networking.k8s.io/v1", "deny")).unwrap();
        assert_eq!(
            key,
            ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("default"), "deny")
        );
        let reference = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                               "name": "deny"});
        assert_eq!(ObjectKey::of_delete_ref(&reference).unwrap(), key);
        let explicit = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                              "namespace": "default", "name": "deny"});
        assert_eq!(ObjectKey::of_delete_ref(&explicit).unwrap(), key);
        let node = json!({"apiVersion": "v1", "kind": "Node", "namespace": "x", "name": "n1"});
        assert_eq!(
            ObjectKey::of_delete_ref(&node).unwrap(),
            ObjectKey::new("", "Node", None, "n1")
        );
        let as_object = json!({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"namespace": "x", "name": "a"}});
        assert_eq!(
            ObjectKey::of_delete_ref(&as_object).unwrap(),
            ObjectKey::new("", "Pod", Some("x"), "a")
        );
    }

    #[test]
    fn bad_objects_are_refused_naming_the_field() {
        // (object, field expected in the message)
        let cases = [
            (json!({"kind": "Pod", "metadata": {"name": "a"}}), "apiVersion"),
            (json!({"apiVersion": "v1", "metadata": {"name": "a"}}), "kind"),
            (json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}), "metadata.name"),
            (json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ""}}), "metadata.name"),
            (json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 7}}), "metadata.name"),
            (json!({"apiVersion": "v1", "kind": "Pod", "metadata": "a"}), "metadata"),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": []}}),
                "metadata.namespace",
            ),
            (
                json!({"apiVersion": "a/b/c", "kind": "Pod", "metadata": {"name": "a"}}),
                "apiVersion",
            ),
        ];
        let mut store = Store::new();
        for (object, field) in cases {
            let err = store.apply(object.clone()).unwrap_err().to_string();
            assert!(err.contains(field), "{object}: {err}");
        }
        let err = store
            .apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 7,
            "namespace": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Pod x/<unnamed>"), "{err}");
        assert!(store.apply(json!([1])).is_err());
        assert!(store.is_empty());
    }

    #[test]
    fn display_names_kind_group_and_place() {
        let key = ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("ns"), "p");
        assert_eq!(key.to_string(), "NetworkPolicy.networking.k8s.io ns/p");
        assert_eq!(ObjectKey::new("", "Namespace", None, "web").to_string(), "Namespace web");
    }
}
