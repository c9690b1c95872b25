//! Fields the dialects never read are dropped before an object is stored:
//! `managedFields`, owner references, most annotations, a pod's volumes,
//! images and conditions. What remains compiles to exactly the rule set the
//! whole object would (the kube source tests check this against the
//! manifest source).

use serde_json::{Map, Value};

/// The metadata the pipeline reads, and the uid (named in Events).
const METADATA: [&str; 4] = ["name", "namespace", "labels", "uid"];
/// The container fields the pipeline reads.
const CONTAINER: [&str; 3] = ["name", "ports", "restartPolicy"];
const POD_SPEC: [&str; 3] = ["nodeName", "hostNetwork", "serviceAccountName"];
const POD_STATUS: [&str; 3] = ["podIP", "podIPs", "phase"];

/// True for an annotation a dialect reads (the DefaultDeny annotation of
/// the beta API and Romana's).
fn policy_annotation(key: &str) -> bool {
    key.starts_with("net.beta.kubernetes.io/")
}

fn keep(map: &mut Map<String, Value>, fields: &[&str]) {
    map.retain(|k, _| fields.contains(&k.as_str()));
}

/// Strips `object` (of `group`/`kind`) down to what the pipeline reads.
/// Keeps, of the list `field`, only the entries about palisade's readiness
/// gate (`key` names the condition type); no such entry: no list.
fn only_ours(map: &mut Map<String, Value>, field: &str, key: &str) {
    if let Some(Value::Array(items)) = map.get_mut(field) {
        items.retain(|i| i.get(key).and_then(Value::as_str) == Some(crate::readiness::GATE));
        if items.is_empty() {
            map.remove(field);
        }
    } else {
        map.remove(field);
    }
}

pub fn strip(group: &str, kind: &str, object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        let annotations = meta.remove("annotations");
        keep(meta, &METADATA);
        if let (true, Some(Value::Object(mut annotations))) = (kind == "Namespace", annotations) {
            annotations.retain(|k, _| policy_annotation(k));
            if !annotations.is_empty() {
                meta.insert("annotations".into(), Value::Object(annotations));
            }
        }
    }
    match (group, kind) {
        ("", "Pod") => {
            if let Some(Value::Object(spec)) = map.get_mut("spec") {
                for list in ["containers", "initContainers"] {
                    if let Some(Value::Array(containers)) = spec.get_mut(list) {
                        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                            keep(c, &CONTAINER);
                        }
                    }
                }
                spec.retain(|k, _| {
                    POD_SPEC.contains(&k.as_str())
                        || k == "containers"
                        || k == "initContainers"
                        || k == "readinessGates"
                });
                only_ours(spec, "readinessGates", "conditionType");
            }
            if let Some(Value::Object(status)) = map.get_mut("status") {
                status.retain(|k, _| POD_STATUS.contains(&k.as_str()) || k == "conditions");
                only_ours(status, "conditions", "type");
            }
        }
        ("", "Node") => {
            map.remove("spec");
            if let Some(Value::Object(status)) = map.get_mut("status") {
                keep(status, &["addresses"]);
            }
        }
        ("", "Namespace") => {
            // `spec.isolation` of the 2016 proposal lives in the spec.
            map.remove("status");
        }
        _ => {
            map.remove("status");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pod_keeps_what_the_pipeline_reads() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "a", "labels": {"app": "web"},
                         "annotations": {"x": "y"}, "managedFields": [{}], "uid": "u"},
            "spec": {"nodeName": "n1", "volumes": [{}], "hostNetwork": false,
                     "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                     "initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always"}]},
            "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "phase": "Running",
                       "conditions": [{}]}
        });
        strip("", "Pod", &mut pod);
        assert_eq!(
            pod,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "a", "labels": {"app": "web"}, "uid": "u"},
                "spec": {"nodeName": "n1", "hostNetwork": false,
                         "containers": [{"name": "c", "ports": [{"containerPort": 80}]}],
                         "initContainers": [{"name": "s", "restartPolicy": "Always"}]},
                "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "phase": "Running"}
            })
        );
    }

    #[test]
    fn a_pod_keeps_palisades_readiness_gate_and_condition_only() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
            "spec": {"readinessGates": [{"conditionType": "other.io/x"},
                                        {"conditionType": "palisade.io/policy-programmed"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"},
                                      {"type": "palisade.io/policy-programmed", "status": "True"}]}
        });
        strip("", "Pod", &mut pod);
        assert_eq!(
            pod["spec"]["readinessGates"],
            json!([{"conditionType": "palisade.io/policy-programmed"}])
        );
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "palisade.io/policy-programmed", "status": "True"}])
        );
    }

    #[test]
    fn namespaces_keep_policy_annotations_and_isolation() {
        let mut ns = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "a", "annotations": {
                "net.beta.kubernetes.io/network-policy": "{}", "other": "x"}},
            "spec": {"isolation": "yes", "finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        strip("", "Namespace", &mut ns);
        assert_eq!(
            ns["metadata"]["annotations"],
            json!({"net.beta.kubernetes.io/network-policy": "{}"})
        );
        assert_eq!(ns["spec"]["isolation"], "yes");
        assert!(ns.get("status").is_none());
    }
}
