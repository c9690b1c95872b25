//! The defaulting the Kubernetes API server applies when an object is
//! created or replaced, so that objects read from files look like objects
//! read from a cluster.
//!
//! Only defaulting that is the API server's job lives here; everything a
//! particular policy dialect decides (e.g. the protocol of a 2016
//! `allowFrom` entry, which never went through the API server's defaulting)
//! belongs to that dialect's compiler.
//!
//! Defaulting never fails: a field with an unexpected type is left alone for
//! the dialect compiler to reject with a precise error. Applying the
//! defaults twice changes nothing.

use serde_json::{Map, Value};

use crate::key::ObjectKey;

/// The label the API server puts on every Namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Applies the API server's defaulting to `object`, whose key is `key`:
///
/// * `metadata.namespace` of a namespaced object is set to its key's
///   namespace (`default` when absent); it is removed from cluster-scoped
///   objects;
/// * a Namespace gets the label `kubernetes.io/metadata.name: <name>`;
/// * a NetworkPolicy (`networking.k8s.io` and `extensions`) without
///   `spec.policyTypes` gets `[Ingress]`, plus `Egress` when `spec.egress`
///   holds at least one rule; every port entry of its rules without a
///   `protocol` gets `TCP`;
/// * every container port of a Pod without a `protocol` gets `TCP`.
pub fn apply(key: &ObjectKey, object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        match &key.namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    } else if let Some(ns) = &key.namespace {
        let mut meta = Map::new();
        meta.insert("namespace".into(), Value::String(ns.clone()));
        map.insert("metadata".into(), Value::Object(meta));
    }
    match (key.group.as_str(), key.kind.as_str()) {
        ("", "Namespace") => namespace_label(map, &key.name),
        ("networking.k8s.io" | "extensions", "NetworkPolicy") => network_policy(map),
        ("", "Pod") => pod(map),
        _ => {}
    }
}

fn namespace_label(map: &mut Map<String, Value>, name: &str) {
    let Some(Value::Object(meta)) = map.get_mut("metadata") else { return };
    let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    if let Value::Object(labels) = labels {
        labels.insert(NAMESPACE_NAME_LABEL.into(), Value::String(name.to_string()));
    }
}

fn network_policy(map: &mut Map<String, Value>) {
    let Some(Value::Object(spec)) = map.get_mut("spec") else { return };
    let has_types = match spec.get("policyTypes") {
        None | Some(Value::Null) => false,
        Some(Value::Array(types)) => !types.is_empty(),
        Some(_) => true, // wrong type: left for the compiler to reject
    };
    if !has_types {
        let mut types = vec![Value::String("Ingress".into())];
        let has_egress =
            matches!(spec.get("egress"), Some(Value::Array(rules)) if !rules.is_empty());
        if has_egress {
            types.push(Value::String("Egress".into()));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for direction in ["ingress", "egress"] {
        let Some(Value::Array(rules)) = spec.get_mut(direction) else { continue };
        for rule in rules {
            if let Some(Value::Array(ports)) = rule.get_mut("ports") {
                ports.iter_mut().for_each(default_protocol);
            }
        }
    }
}

fn pod(map: &mut Map<String, Value>) {
    let Some(Value::Object(spec)) = map.get_mut("spec") else { return };
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else { continue };
        for container in containers {
            if let Some(Value::Array(ports)) = container.get_mut("ports") {
                ports.iter_mut().for_each(default_protocol);
            }
        }
    }
}

/// Sets `protocol: TCP` on a port entry (a map) that has none.
fn default_protocol(port: &mut Value) {
    if let Value::Object(port) = port {
        if matches!(port.get("protocol"), None | Some(Value::Null)) {
            port.insert("protocol".into(), Value::String("TCP".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaulted(mut object: Value) -> Value {
        let key = ObjectKey::of_object(&object).unwrap();
        apply(&key, &mut object);
        object
    }

    #[test]
    fn namespaced_objects_land_in_default() {
        let pod = defaulted(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}));
        assert_eq!(pod["metadata"]["namespace"], "default");
        let ns = defaulted(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "namespace": "ignored"}}));
        assert!(ns["metadata"].get("namespace").is_none());
    }

    #[test]
    fn namespace_gets_its_name_label_even_over_a_wrong_one() {
        let ns = defaulted(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"a": "b", "kubernetes.io/metadata.name": "y"}}}));
        assert_eq!(ns["metadata"]["labels"], json!({"a": "b", "kubernetes.io/metadata.name": "x"}));
        let bare = defaulted(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": null}}));
        assert_eq!(bare["metadata"]["labels"], json!({"kubernetes.io/metadata.name": "x"}));
    }

    #[test]
    fn policy_types_follow_the_api_server() {
        // (spec, expected policyTypes)
        let cases = [
            (json!({"podSelector": {}}), json!(["Ingress"])),
            (json!({"podSelector": {}, "ingress": [{}]}), json!(["Ingress"])),
            (json!({"podSelector": {}, "egress": [{}]}), json!(["Ingress", "Egress"])),
            // An empty egress list is no egress rule: the API server checks the length.
            (json!({"podSelector": {}, "egress": []}), json!(["Ingress"])),
            (json!({"podSelector": {}, "policyTypes": []}), json!(["Ingress"])),
            // Explicit types are kept as written.
            (
                json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
                json!(["Egress"]),
            ),
        ];
        for group in ["networking.k8s.io/v1", "extensions/v1beta1"] {
            for (spec, expected) in &cases {
                let np = defaulted(json!({"apiVersion": group, "kind": "NetworkPolicy",
                    "metadata": {"name": "p"}, "spec": spec}));
                assert_eq!(&np["spec"]["policyTypes"], expected, "{group} {spec}");
            }
        }
    }

    #[test]
    fn experimental_policies_get_no_policy_types() {
        let np = defaulted(json!({"apiVersion": "experimental.kubernetes.io/v1",
            "kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {"selector": {}}}));
        assert!(np["spec"].get("policyTypes").is_none());
    }

    #[test]
    fn ports_default_to_tcp() {
        let np = defaulted(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p"}, "spec": {
                "ingress": [{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}],
                "egress": [{"ports": [{}]}]}}));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(np["spec"]["ingress"][0]["ports"][1]["protocol"], "UDP");
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let pod = defaulted(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}));
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn defaulting_is_idempotent_and_tolerates_wrong_types() {
        let once = defaulted(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p"}, "spec": {"egress": [{"ports": [{"port": 1}]}]}}));
        assert_eq!(defaulted(once.clone()), once);
        let odd = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p"}, "spec": {"policyTypes": "Ingress", "ingress": "x"}});
        assert_eq!(defaulted(odd)["spec"]["policyTypes"], "Ingress");
    }
}
