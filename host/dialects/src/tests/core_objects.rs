use std::path::Path;

use palisade_model::policy::{ContainerPort, Namespace, Node, Pod};
use palisade_model::{ModelEvent, Protocol};
use palisade_store::{source, ObjectKey, Store};

use super::*;
use crate::Settings;

#[test]
fn namespaces_carry_their_name_label() {
    let mut compiler = Compiler::new(Settings::default());
    let compiled = apply(
        &mut compiler,
        "{apiVersion: v1, kind: Namespace, metadata: {name: web, labels: {team: a}}}",
    );
    assert_eq!(
        compiled.events,
        vec![ModelEvent::NamespaceUpserted(Namespace {
            name: "web".into(),
            labels: labels(&[("team", "a"), ("kubernetes.io/metadata.name", "web")]),
        })]
    );
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: web}}
spec:
  nodeName: node-1
  initContainers:
    - {name: init, ports: [{containerPort: 9, name: ignored}]}
    - {name: sidecar, restartPolicy: Always, ports: [{containerPort: 15001, name: proxy}]}
  containers:
    - name: main
      ports:
        - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
        - {containerPort: 53, protocol: UDP}
        - {containerPort: 8080}
status:
  phase: Running
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
"#;

#[test]
fn pods_keep_what_the_resolver_needs() {
    let mut compiler = Compiler::new(Settings::default());
    let compiled = apply(&mut compiler, POD);
    let port = |name: Option<&str>, port, protocol| ContainerPort {
        name: name.map(Into::into),
        port,
        protocol,
    };
    assert_eq!(
        compiled.events,
        vec![ModelEvent::PodUpserted(Pod {
            namespace: "default".into(),
            name: "a".into(),
            labels: labels(&[("app", "web")]),
            node: Some("node-1".into()),
            ips: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            ports: vec![
                port(Some("proxy"), 15001, Protocol::Tcp),
                port(Some("serve-80-tcp"), 80, Protocol::Tcp),
                port(None, 53, Protocol::Udp),
                port(None, 8080, Protocol::Tcp),
            ],
            host_network: false,
            active: true,
            service_account: "default".into()
        })]
    );
}

#[test]
fn pod_states() {
    // (status, spec extra, ips, active, host network)
    let cases = [
        ("{podIP: 10.0.0.1}", "", 1, true, false),
        ("{}", "", 0, true, false), // no address yet: still a pod
        ("{phase: Pending}", "", 0, true, false),
        ("{phase: Succeeded, podIP: 10.0.0.1}", "", 1, false, false),
        ("{phase: Failed, podIP: 10.0.0.1}", "", 1, false, false),
        ("{podIP: 10.0.0.1}", "hostNetwork: true, ", 1, true, true),
    ];
    for (status, spec, ips, active, host) in cases {
        let mut compiler = Compiler::new(Settings::default());
        let text = format!(
            "{{apiVersion: v1, kind: Pod, metadata: {{name: p, namespace: n}}, spec: {{{spec}containers: []}}, status: {status}}}"
        );
        let compiled = apply(&mut compiler, &text);
        let ModelEvent::PodUpserted(pod) = &compiled.events[0] else { panic!() };
        assert_eq!(
            (pod.ips.len(), pod.active, pod.host_network),
            (ips, active, host),
            "{status} {spec}"
        );
    }
}

#[test]
fn invalid_pods_and_nodes_name_the_field() {
    let cases = [
        ("{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.0.0.300}}", "status.podIP"),
        ("{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIPs: [{ip: x}]}}", "status.podIPs[0].ip"),
        (
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, ports: [{containerPort: 0}]}]}}",
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, ports: [{containerPort: 80, name: HTTP}]}]}}",
            "spec.containers[0].ports[0].name",
        ),
        (
            "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, ports: [{name: http}]}]}}",
            "spec.containers[0].ports[0].containerPort",
        ),
        ("{apiVersion: v1, kind: Pod, metadata: {name: p, labels: [a]}}", "metadata.labels"),
        ("{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {hostNetwork: 'yes'}}", "spec.hostNetwork"),
        ("{apiVersion: v1, kind: Namespace, metadata: {name: n, annotations: {a: 1}}}", "metadata.annotations.a"),
        (
            "{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{type: InternalIP, address: nope}]}}",
            "status.addresses[0].address",
        ),
    ];
    for (text, field) in cases {
        let err = reject(&mut Compiler::new(Settings::default()), text);
        assert_eq!(err.field(), Some(field), "{text}: {err}");
    }
}

#[test]
fn nodes_and_deletes() {
    let mut compiler = Compiler::new(Settings::default());
    let compiled = apply(
        &mut compiler,
        "{apiVersion: v1, kind: Node, metadata: {name: node-1}, status: {addresses: [\
           {type: Hostname, address: node-1}, {type: InternalIP, address: 172.18.0.2}, \
           {type: ExternalIP, address: 203.0.113.7}, {type: InternalIP, address: 172.18.0.2}]}}",
    );
    assert_eq!(
        compiled.events,
        vec![ModelEvent::NodeUpserted(Node {
            name: "node-1".into(),
            addresses: vec!["172.18.0.2".parse().unwrap(), "203.0.113.7".parse().unwrap()],
        })]
    );
    apply(&mut compiler, POD);
    let node = ObjectKey::new("", "Node", None, "node-1");
    let pod = ObjectKey::new("", "Pod", Some("default"), "a");
    assert_eq!(compiler.delete(&node), vec![ModelEvent::NodeDeleted { name: "node-1".into() }]);
    assert_eq!(
        compiler.delete(&pod),
        vec![ModelEvent::PodDeleted { namespace: "default".into(), name: "a".into() }]
    );
    assert!(compiler.delete(&pod).is_empty());
    assert!(compiler.delete(&ObjectKey::new("apps", "Deployment", Some("x"), "d")).is_empty());
}

const MANIFEST: &str = r#"
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: allow-web}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata:
      name: default
      annotations: {net.beta.kubernetes.io/network-policy: '{"ingress": {"isolation": "DefaultDeny"}}'}
  - {apiVersion: v1, kind: Pod, metadata: {name: web}, status: {podIP: 10.0.0.2}}
  - {apiVersion: apps/v1, kind: Deployment, metadata: {name: web}}
---
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
"#;

#[test]
fn a_whole_manifest_through_the_store() {
    let docs = source::parse_str(MANIFEST, Path::new("m.yaml")).unwrap();
    assert_eq!(docs.len(), 5, "List items expanded, empty documents skipped");
    let mut store = Store::new();
    for doc in docs {
        store.apply(doc.object).unwrap();
    }
    let mut compiler = Compiler::new(Settings::default());
    let report = compiler.compile_store(&store);
    // Namespaces, nodes, pods first, then policies; the beta policy is in
    // force because the namespace is annotated.
    let kinds: Vec<&str> = report
        .events
        .iter()
        .map(|e| match e {
            ModelEvent::NamespaceUpserted(_) => "namespace",
            ModelEvent::NodeUpserted(_) => "node",
            ModelEvent::PodUpserted(_) => "pod",
            ModelEvent::PolicyUpserted(_) => "policy",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["namespace", "policy", "node", "pod", "policy"]);
    assert_eq!(
        policy_events(&report.events),
        ["+v1 Namespace default/default", "+extensions/v1beta1 NetworkPolicy default/allow-web"]
    );
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].is_unsupported_kind());
    assert!(report.warnings.is_empty());
}

#[test]
fn store_and_compiler_stay_in_step() {
    let mut store = Store::new();
    let mut compiler = Compiler::new(Settings::default());
    let (key, compiled) = compiler.apply_stored(&mut store, yaml(POD)).unwrap();
    assert_eq!(compiled.events.len(), 1);
    assert!(store.contains(&key));
    assert!(compiler
        .apply_stored(&mut store, yaml("{apiVersion: v1, kind: Service, metadata: {name: s}}"))
        .is_err());
    assert_eq!(store.len(), 1, "rejected objects are not stored");
    let events = compiler.delete_stored(&mut store, &key).unwrap();
    assert_eq!(events.len(), 1);
    assert!(store.is_empty());
}
