//! Bench binary (not a timed test): the Kubernetes source against the fake
//! API server, over loopback HTTP with the real kube client.
//!
//! * initial sync: a cluster of 10 namespaces, 2,000 pods (100 on this node),
//!   200 policies, listed and programmed (into a recorder, no plugin);
//! * change latency: a policy created through the API until the rule set
//!   holding it is programmed (settle 5 ms), 50 times: median and worst;
//! * stripping: JSON size of a typical pod as the API server sends it
//!   (with managedFields, status conditions, volumes) and as stored.
//!
//! Run: `cargo bench -p palisade-kube-source --bench kube_sync`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use palisade_daemon::Programmed;
use palisade_kube_source::{Backoff, Health, KubeConfig, KubeDaemon, Programmer, SourceConfig};
use palisade_model::{Delta, RuleSet};
use palisade_plugin_host::PluginError;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Option<RuleSet>>>);

impl Programmer for Recorder {
    fn program(&mut self, rules: &RuleSet, _delta: &Delta) -> Result<Programmed, PluginError> {
        *self.0.lock().unwrap() = Some(rules.clone());
        Ok(Programmed::Full { generation: rules.generation, rules: 0, elapsed: Duration::ZERO })
    }
}

fn pod(i: usize) -> Value {
    let ns = format!("ns{}", i % 10);
    let node = if i.is_multiple_of(20) { "n1".to_string() } else { format!("n{}", 2 + i % 19) };
    let tier = ["web", "api", "db"][i % 3];
    let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": ns,
            "uid": format!("9c8e7f2a-0000-4000-8000-{i:012}"),
            "labels": {"app": format!("app{}", i % 40), "tier": tier,
                       "pod-template-hash": "5d8f7c9b6"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-5d8f7c9b6", "uid": "0b1e", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "time": "2026-11-20T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                             "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "subresource": "status",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}]},
        "spec": {"nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "containers": [{"name": "web", "image": "registry.example/web:1.2.3",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.2",
            "qosClass": "Burstable", "startTime": "2026-11-20T10:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"},
                           {"type": "ContainersReady", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                "image": "registry.example/web:1.2.3", "imageID": "sha256:abc",
                "containerID": "containerd://0123", "started": true,
                "state": {"running": {"startedAt": "2026-11-20T10:00:01Z"}}}]}})
}

fn policy(i: usize) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns{}", i % 10)},
        "spec": {"podSelector": {"matchLabels": {"app": format!("app{}", i % 40)}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}},
                                  {"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 5)}}}],
                         "ports": [{"port": "http"}]}]}})
}

fn main() {
    let api = FakeApi::start();
    for n in 0..10 {
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns{n}"), "labels": {"team": format!("t{}", n % 5)}}}));
    }
    api.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}}));
    for i in 0..2000 {
        api.apply(pod(i));
    }
    for i in 0..200 {
        api.apply(policy(i));
    }

    let raw = pod(7);
    let mut stripped = raw.clone();
    palisade_kube_source::strip::strip("", "Pod", &mut stripped);
    println!(
        "stripping: a pod as sent {} bytes of JSON, as stored {} bytes",
        raw.to_string().len(),
        stripped.to_string().len()
    );

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = {
        let _guard = runtime.enter();
        kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap()
    };
    let config = KubeConfig {
        source: SourceConfig {
            settle: Duration::from_millis(5),
            backoff: Backoff { min: Duration::from_millis(50), max: Duration::from_secs(1) },
            ..SourceConfig::default()
        },
        resolver: palisade_resolver::Settings { node: Some("n1".into()), ..Default::default() },
        ..KubeConfig::default()
    };
    let recorder = Recorder::default();
    let health = Health::new();
    let started = Instant::now();
    let mut daemon =
        KubeDaemon::start(runtime.handle(), client, &config, recorder.clone(), health.clone());
    while !health.is_ready() {
        daemon.round(Duration::from_millis(50)).unwrap();
    }
    let rules = recorder.0.lock().unwrap().clone().unwrap();
    println!(
        "initial sync: 2,211 objects listed and programmed in {:?} ({} endpoints, {} policies, {} sets)",
        started.elapsed(),
        rules.endpoints.len(),
        rules.policies.len(),
        rules.sets.len()
    );

    let mut latencies = Vec::new();
    for i in 0..50 {
        let name = format!("late-{i}");
        let mut p = policy(i);
        p["metadata"]["name"] = json!(name);
        // This node's pods are all in ns0: a policy there selecting every
        // pod changes the rule set.
        p["metadata"]["namespace"] = json!("ns0");
        p["spec"]["podSelector"] = json!({});
        let before = recorder.0.lock().unwrap().as_ref().map(|r| r.origins.len()).unwrap_or(0);
        let t = Instant::now();
        api.apply(p);
        loop {
            daemon.round(Duration::from_millis(20)).unwrap();
            let now = recorder.0.lock().unwrap().as_ref().map(|r| r.origins.len()).unwrap_or(0);
            if now != before {
                break;
            }
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "change latency (policy created through the API → programmed, settle 5 ms, 50 runs): median {:?}, worst {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop(runtime);
}
