//! The manifests in `deploy/` parse into the Kubernetes API types without
//! losing a field (a misspelt field would be dropped by the typed parse and
//! show up as a difference), and say what the source needs: the RBAC rules
//! cover every watched kind read-only, the CRD serves the kind the source
//! watches, the DaemonSet runs on the host network with the node name from
//! the downward API and only the capabilities it needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Drops nulls and empty maps/lists, which a typed round trip may add or
/// remove without meaning anything.
fn normalise(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: serde_json::Map<String, Value> =
                m.iter().filter_map(|(k, v)| normalise(v).map(|v| (k.clone(), v))).collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => Some(Value::Array(a.iter().filter_map(normalise).collect())),
        other => Some(other.clone()),
    }
}

fn typed<T: DeserializeOwned + Serialize>(doc: &Value, file: &str) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: {} does not parse: {e}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(normalise(&back), normalise(doc), "{file}: a field of {} was lost", doc["kind"]);
    t
}

#[derive(Default)]
struct Parsed {
    daemon_sets: Vec<DaemonSet>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    crds: Vec<CustomResourceDefinition>,
    config_maps: Vec<ConfigMap>,
    accounts: Vec<ServiceAccount>,
    namespaces: Vec<Namespace>,
}

fn parse_all() -> Parsed {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut out = Parsed::default();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for de in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(de).unwrap();
            if doc.is_null() {
                continue;
            }
            match doc["kind"].as_str().unwrap() {
                "DaemonSet" => out.daemon_sets.push(typed(&doc, &file)),
                "ClusterRole" => out.roles.push(typed(&doc, &file)),
                "ClusterRoleBinding" => out.bindings.push(typed(&doc, &file)),
                "CustomResourceDefinition" => out.crds.push(typed(&doc, &file)),
                "ConfigMap" => out.config_maps.push(typed(&doc, &file)),
                "ServiceAccount" => out.accounts.push(typed(&doc, &file)),
                "Namespace" => out.namespaces.push(typed(&doc, &file)),
                other => panic!("{file}: unexpected kind {other}"),
            }
        }
    }
    out
}

#[test]
fn the_rbac_reads_every_watched_kind_and_writes_only_events_and_pod_conditions() {
    let p = parse_all();
    let reader =
        p.roles.iter().find(|r| r.metadata.name.as_deref() == Some("palisade-reader")).unwrap();
    let rules = reader.rules.as_ref().unwrap();
    for rule in rules {
        assert_eq!(rule.verbs, ["get", "list", "watch"], "read only: {rule:?}");
    }
    for kind in palisade_kube_source::kinds::all() {
        let covered = rules.iter().any(|r| {
            r.api_groups.as_ref().is_some_and(|g| g.iter().any(|g| g == kind.group))
                && r.resources.as_ref().is_some_and(|res| res.iter().any(|x| x == kind.plural))
        });
        assert!(covered, "{} is not readable", kind.label());
    }
    let events =
        p.roles.iter().find(|r| r.metadata.name.as_deref() == Some("palisade-events")).unwrap();
    let rules = events.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref(), Some(&["events".to_string()][..]));
    assert_eq!(rules[0].verbs, ["create"]);
    let readiness =
        p.roles.iter().find(|r| r.metadata.name.as_deref() == Some("palisade-readiness")).unwrap();
    let rules = readiness.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref(), Some(&["pods/status".to_string()][..]));
    assert_eq!(rules[0].verbs, ["patch"]);
    assert_eq!(p.roles.len(), 3, "no other role");
    let account = p.accounts[0].metadata.name.clone().unwrap();
    for b in &p.bindings {
        let subjects = b.subjects.as_ref().unwrap();
        assert!(subjects.iter().any(|s| s.kind == "ServiceAccount" && s.name == account));
        assert!(p
            .roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())));
    }
}

#[test]
fn the_crd_serves_the_2016_policy_the_source_watches() {
    let p = parse_all();
    let kind = palisade_kube_source::kinds::EXPERIMENTAL_POLICIES;
    let crd = p.crds.iter().find(|c| c.spec.group == kind.group).expect("CRD of the 2016 dialect");
    assert_eq!(crd.spec.names.kind, kind.kind);
    assert_eq!(crd.spec.names.plural, kind.plural);
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(format!("{}.{}", kind.plural, kind.group).as_str())
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert!(crd.spec.versions.iter().any(|v| v.name == kind.version && v.served && v.storage));
    assert!(
        crd.metadata.annotations.as_ref().unwrap().contains_key("api-approved.kubernetes.io"),
        "groups under kubernetes.io need the api-approved annotation"
    );
}

#[test]
fn the_daemon_set_runs_on_the_host_network_with_the_node_name_and_few_capabilities() {
    let p = parse_all();
    let ds = &p.daemon_sets[0];
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), p.accounts[0].metadata.name.as_deref());
    let c = &pod.containers[0];
    let args = c.args.as_ref().unwrap();
    assert!(args.iter().any(|a| a == "--source=kube"), "{args:?}");
    assert!(args.iter().any(|a| a == "--plugin=$(PALISADE_BACKEND)"), "{args:?}");
    let env = c.env.as_ref().unwrap();
    let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = node.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    let backend = env.iter().find(|e| e.name == "PALISADE_BACKEND").unwrap();
    let key = backend.value_from.as_ref().unwrap().config_map_key_ref.as_ref().unwrap();
    let cm = p
        .config_maps
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(key.name.as_str()))
        .unwrap();
    let chosen = &cm.data.as_ref().unwrap()[&key.key];
    assert!(["nftables", "ebpf"].contains(&chosen.as_str()), "{chosen}");
    // Every `$(VAR)` of the arguments is an environment variable of the
    // container, and a ConfigMap key it reads exists.
    for a in args {
        if let Some(var) = a.split("$(").nth(1).and_then(|r| r.split(')').next()) {
            let e = env.iter().find(|e| e.name == var).unwrap_or_else(|| panic!("{a}: no {var}"));
            if let Some(k) = e.value_from.as_ref().and_then(|v| v.config_map_key_ref.as_ref()) {
                assert!(cm.data.as_ref().unwrap().contains_key(&k.key), "{var}: no key {}", k.key);
            }
        }
    }
    // Pins on the node's bpffs: enforcement outlives the pod.
    assert!(args.iter().any(|a| a == "--bpf-pin-dir=/sys/fs/bpf/palisade"), "{args:?}");
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/sys/fs/bpf"), "{mounts:?}");
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let mut added = caps.add.clone().unwrap();
    added.sort();
    assert_eq!(added, ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"]);
    // The probes reach the health endpoint the arguments configure.
    let addr = args.iter().find_map(|a| a.strip_prefix("--health-addr=")).unwrap();
    let port: i32 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    assert_eq!(ready.port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port));
}
