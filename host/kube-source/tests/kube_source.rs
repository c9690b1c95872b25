//! The Kubernetes source against a fake API server speaking the real wire
//! format, driving the real kube client: initial sync, updates, a dropped
//! watch, a 410 Gone, an API server gone for a while, Events and readiness.
//! Every rule set is compared with what the same objects give through the
//! manifest source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_daemon::{ManifestDir, Programmed};
use palisade_kube_source::{Backoff, Health, KubeConfig, KubeDaemon, Programmer, SourceConfig};
use palisade_model::ruleset::Peer;
use palisade_model::{Delta, RuleSet};
use palisade_pipeline::Pipeline;
use palisade_plugin_host::PluginError;
use serde_json::{json, Value};
use support::fake_api::FakeApi;

/// Records every rule set it is given; fails the first `failures` calls.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<RuleSet>>>, Arc<AtomicUsize>);

impl Programmer for Recorder {
    fn program(&mut self, rules: &RuleSet, _delta: &Delta) -> Result<Programmed, PluginError> {
        if self.1.load(Ordering::Relaxed) > 0 {
            self.1.fetch_sub(1, Ordering::Relaxed);
            return Err(PluginError::NotABackend { plugin: "recorder".into() });
        }
        self.0.lock().unwrap().push(rules.clone());
        Ok(Programmed::Full { generation: rules.generation, rules: 0, elapsed: Duration::ZERO })
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    daemon: KubeDaemon<Recorder>,
    recorder: Recorder,
    health: Arc<Health>,
}

fn node() -> Option<String> {
    Some("n1".into())
}

fn start(api: &FakeApi) -> Harness {
    start_failing(api, 0)
}

fn start_failing(api: &FakeApi, failures: usize) -> Harness {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = {
        let _guard = runtime.enter();
        kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap()
    };
    let config = KubeConfig {
        source: SourceConfig {
            backoff: Backoff { min: Duration::from_millis(50), max: Duration::from_millis(400) },
            settle: Duration::from_millis(30),
            ..SourceConfig::default()
        },
        resolver: palisade_resolver::Settings { node: node(), ..Default::default() },
        post_events: true,
        readiness_gates: true,
        ..KubeConfig::default()
    };
    let recorder = Recorder::default();
    recorder.1.store(failures, Ordering::Relaxed);
    let health = Health::new();
    let daemon =
        KubeDaemon::start(runtime.handle(), client, &config, recorder.clone(), health.clone());
    Harness { runtime, daemon, recorder, health }
}

/// The rule set the manifest source gives for `objects` (written to a
/// directory as YAML), generation aside.
fn through_manifests(objects: &[Value]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<String> = objects.iter().map(|o| serde_yaml::to_string(o).unwrap()).collect();
    std::fs::write(dir.path().join("all.yaml"), text.join("---\n")).unwrap();
    let mut pipeline = Pipeline::new(
        Default::default(),
        palisade_resolver::Settings { node: node(), ..Default::default() },
    );
    let report = ManifestDir::new(dir.path()).load_all(&mut pipeline).unwrap();
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    normalised(pipeline.rule_set())
}

/// The rule set without its numbering: ids are assigned in the order
/// objects arrive (which differs between a directory read in file order and
/// an API server's lists and watches), so endpoints are named, set
/// references are replaced by the sets' prefixes and origin references by
/// the origins; rules of a tier (allow rules here: their order carries no
/// meaning) are sorted.
fn normalised(rules: &RuleSet) -> Value {
    let sets: HashMap<u32, Value> =
        rules.sets.iter().map(|s| (s.id, serde_json::to_value(&s.prefixes).unwrap())).collect();
    let origins: HashMap<u32, Value> = rules
        .origins
        .iter()
        .map(|o| (o.id, json!([o.kind, o.namespace, o.name, o.rule])))
        .collect();
    let names: HashMap<u32, &str> =
        rules.endpoints.iter().map(|e| (e.id, e.name.as_str())).collect();
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|x| x.to_string());
        v
    };
    let endpoints = sorted(rules.endpoints.iter().map(|e| json!([e.name, e.addresses])).collect());
    let all_sets = sorted(sets.values().cloned().collect());
    let policies = sorted(
        rules
            .policies
            .iter()
            .map(|p| {
                let tiers: Vec<Value> = p
                    .tiers
                    .iter()
                    .map(|t| {
                        let rules = sorted(
                            t.rules
                                .iter()
                                .map(|r| {
                                    let peer = match r.peer {
                                        Peer::Any => json!("any"),
                                        Peer::Set(id) => sets[&id].clone(),
                                    };
                                    json!({"action": r.action, "peer": peer, "ports": r.ports,
                                           "origin": origins[&r.origin]})
                                })
                                .collect(),
                        );
                        json!({"rules": rules, "no_match": t.no_match})
                    })
                    .collect();
                json!({"endpoint": names[&p.endpoint], "direction": p.direction, "tiers": tiers})
            })
            .collect(),
    );
    json!({"endpoints": endpoints, "sets": all_sets, "policies": policies})
}

impl Harness {
    /// Runs rounds until the rule set equals `want` (generation aside).
    fn until_rule_set(&mut self, want: &Value, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if !self.daemon.pipeline().store().is_empty()
                && normalised(self.daemon.pipeline().rule_set()) == *want
                && self.health.is_ready()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the kube source never reached the manifest source's rule set\nhave: {:#}\nwant: {want:#}",
                normalised(self.daemon.pipeline().rule_set())
            );
            self.daemon.round(Duration::from_millis(100)).unwrap();
        }
    }
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod(ns: &str, name: &str, node: &str, labels: Value, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels,
                        "annotations": {"unrelated": "x"},
                        "managedFields": [{"manager": "kubelet"}]},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx",
                    "ports": [{"containerPort": 80, "name": "http"}]}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A small cluster: two namespaces, pods on this node and another, a node,
/// v1 policies and a 2016 policy in an isolated namespace.
fn cluster() -> Vec<Value> {
    vec![
        namespace("shop", json!({"team": "shop"})),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "legacy", "labels": {"team": "old"}},
               "spec": {"isolation": "yes"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"},
                                        {"type": "Hostname", "address": "n1"}]}}),
        pod("shop", "web", "n1", json!({"app": "web"}), "10.0.0.1"),
        pod("shop", "client", "n2", json!({"app": "client"}), "10.0.0.2"),
        pod("legacy", "db", "n1", json!({"app": "db"}), "10.0.0.3"),
        policy(
            "shop",
            "web-from-client",
            json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [{"port": "http"}]}]}),
        ),
        json!({"apiVersion": "experimental.kubernetes.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "db-from-shop", "namespace": "legacy"},
               "spec": {"selector": {"app": "db"},
                        "allowFrom": [{"namespaces": {"team": "shop"}}]}}),
    ]
}

fn load(api: &FakeApi, objects: &[Value]) {
    for o in objects {
        api.apply(o.clone());
    }
}

#[test]
fn initial_sync_and_updates_give_the_manifest_source_rule_set() {
    let api = FakeApi::start();
    let mut objects = cluster();
    load(&api, &objects);
    let mut h = start(&api);
    assert!(!h.health.is_ready());
    let want = through_manifests(&objects);
    let endpoints = want["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2, "the pods of n1 only: {want:#}");
    assert_eq!(want["policies"].as_array().unwrap().len(), 2, "web and db isolated: {want:#}");
    h.until_rule_set(&want, "initial sync");
    let first = h.recorder.0.lock().unwrap()[0].clone();
    assert_eq!(normalised(&first), want, "the first programmed rule set is the complete one");

    // Updates: a new policy, a relabelled pod, a deleted policy.
    let deny = policy(
        "shop",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    api.apply(deny.clone());
    objects.push(deny);
    let relabelled = pod("shop", "client", "n2", json!({"app": "other"}), "10.0.0.2");
    api.apply(relabelled.clone());
    objects.retain(|o| o["metadata"]["name"] != "client");
    objects.push(relabelled);
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("shop"), "web-from-client");
    objects.retain(|o| o["metadata"]["name"] != "web-from-client");
    h.until_rule_set(&through_manifests(&objects), "after updates");

    // A burst of changes to one pod is debounced: far fewer programming
    // rounds than changes.
    let before = h.recorder.count();
    for i in 0..50 {
        api.apply(pod(
            "shop",
            "web",
            "n1",
            json!({"app": "web", "rev": i.to_string()}),
            "10.0.0.1",
        ));
    }
    objects.retain(|o| o["metadata"]["name"] != "web");
    objects.push(pod("shop", "web", "n1", json!({"app": "web", "rev": "49"}), "10.0.0.1"));
    h.until_rule_set(&through_manifests(&objects), "after a burst");
    let rounds = h.recorder.count() - before;
    assert!(rounds < 10, "50 changes in a burst took {rounds} programming rounds");
    drop(h.runtime);
}

#[test]
fn a_dropped_watch_and_a_410_lose_no_change() {
    let mut api = FakeApi::start();
    let mut objects = cluster();
    load(&api, &objects);
    let mut h = start(&api);
    h.until_rule_set(&through_manifests(&objects), "initial sync");

    // The connections drop; changes made meanwhile arrive on the re-watch.
    api.drop_watches();
    let extra = pod("shop", "web2", "n1", json!({"app": "web"}), "10.0.0.9");
    api.apply(extra.clone());
    objects.push(extra);
    h.until_rule_set(&through_manifests(&objects), "after a dropped watch");
    let lists_before = list_requests(&api);

    // The API server goes, a policy is deleted, history is compacted: the
    // watch from the old resourceVersion gets 410 Gone, the watcher lists
    // again and the deletion it never saw as an event is applied.
    api.stop();
    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("shop"), "web-from-client");
    objects.retain(|o| o["metadata"]["name"] != "web-from-client");
    api.compact();
    api.start_again();
    h.until_rule_set(&through_manifests(&objects), "after a 410");
    assert!(list_requests(&api) > lists_before, "relisted after 410");
    let text = h.health.render();
    assert!(
        text.contains("palisade_lists_total{kind=\"NetworkPolicy.networking.k8s.io\"} 2"),
        "{text}"
    );
    drop(h.runtime);
}

fn list_requests(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET /apis/networking.k8s.io/v1/networkpolicies")
                && !r.contains("watch=true")
        })
        .count()
}

#[test]
fn while_the_api_server_is_gone_the_last_state_stays_in_force() {
    let mut api = FakeApi::start();
    let mut objects = cluster();
    load(&api, &objects);
    let mut h = start(&api);
    let want = through_manifests(&objects);
    h.until_rule_set(&want, "initial sync");
    let programmed = h.recorder.count();

    api.stop();
    // Nothing to program while it is gone; the rule set stays.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        h.daemon.round(Duration::from_millis(100)).unwrap();
    }
    assert_eq!(h.recorder.count(), programmed);
    assert_eq!(normalised(h.daemon.pipeline().rule_set()), want);
    let text = h.health.render();
    assert!(text.contains("palisade_api_reachable 0\n"), "{text}");
    assert!(
        text.contains("palisade_api_outages_total 1\n"),
        "one outage, not a flapping state: {text}"
    );
    assert!(h.health.is_ready(), "still enforcing: stays ready");

    let late = policy("shop", "late", json!({"podSelector": {"matchLabels": {"app": "web"}}}));
    api.apply(late.clone());
    objects.push(late);
    api.start_again();
    h.until_rule_set(&through_manifests(&objects), "after the API server came back");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.health.render().contains("palisade_api_reachable 1\n") {
        assert!(Instant::now() < deadline, "never reachable again");
        h.daemon.round(Duration::from_millis(100)).unwrap();
    }
    assert!(h.health.render().contains("palisade_api_outages_total 1\n"));
    drop(h.runtime);
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn an_invalid_policy_gets_an_event_and_readiness_waits_for_the_first_sync() {
    let api = FakeApi::start();
    let mut objects = cluster();
    let bad = policy(
        "shop",
        "bad-port",
        json!({"podSelector": {},
        "ingress": [{"ports": [{"port": 70000}]}]}),
    );
    load(&api, &objects);
    api.apply(bad);
    let mut h = start(&api);
    let addr = palisade_kube_source::health::serve(
        h.runtime.handle(),
        "127.0.0.1:0".parse().unwrap(),
        h.health.clone(),
    )
    .unwrap();
    assert!(http_get(addr, "/readyz").starts_with("HTTP/1.1 503"));
    assert!(http_get(addr, "/healthz").starts_with("HTTP/1.1 200"));
    h.until_rule_set(&through_manifests(&objects), "initial sync without the invalid policy");
    assert!(http_get(addr, "/readyz").starts_with("HTTP/1.1 200"));
    let metrics = http_get(addr, "/metrics");
    assert!(metrics.contains("palisade_objects_watched{kind=\"Pod\"} 3"), "{metrics}");
    assert!(metrics.contains("palisade_objects_rejected_total 1"), "{metrics}");
    assert!(metrics.contains("palisade_programming_seconds_count 1"), "{metrics}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while api.events().is_empty() {
        assert!(Instant::now() < deadline, "no Event posted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = api.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["involvedObject"]["kind"], "NetworkPolicy");
    assert_eq!(e["involvedObject"]["name"], "bad-port");
    assert_eq!(e["involvedObject"]["namespace"], "shop");
    assert_eq!(e["involvedObject"]["uid"], "uid-shop-bad-port");
    assert_eq!(e["type"], "Warning");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("spec.ingress[0].ports[0].port"), "{message}");
    assert!(message.contains("bad-port"), "{message}");
    assert!(message.contains("outside 1-65535"), "{message}");
    assert_eq!(e["involvedObject"]["fieldPath"], "spec.ingress[0].ports[0].port");
    assert_eq!(e["reason"], "PolicyInvalid");

    // The same problem again (a relist) posts nothing new; fixing it lifts it.
    api.drop_watches();
    let fixed = policy(
        "shop",
        "bad-port",
        json!({"podSelector": {},
        "ingress": [{"ports": [{"port": 7000}]}]}),
    );
    api.apply(fixed.clone());
    objects.push(fixed);
    h.until_rule_set(&through_manifests(&objects), "the fixed policy");
    assert_eq!(api.events().len(), 1);
    drop(h.runtime);
}

#[test]
fn a_failed_first_programming_is_retried_without_a_change_and_only_then_ready() {
    let api = FakeApi::start();
    let objects = cluster();
    load(&api, &objects);
    let mut h = start_failing(&api, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(Instant::now() < deadline, "no first round");
        if let Some(round) = h.daemon.round(Duration::from_millis(100)).unwrap() {
            break round;
        }
    };
    assert!(first.programmed.is_err());
    assert!(!h.health.is_ready(), "not ready while nothing is programmed");
    let requests = api.requests().len();
    h.until_rule_set(&through_manifests(&objects), "after the retries");
    assert_eq!(h.recorder.count(), 1, "programmed once it succeeded");
    let sync = normalised(&h.recorder.0.lock().unwrap()[0]);
    assert_eq!(sync, through_manifests(&objects), "the retry sends the full rule set");
    assert!(h.health.render().contains("palisade_plugin_failures_total 2\n"));
    let relists = api.requests()[requests..]
        .iter()
        .filter(|r| !r.contains("watch=true") && !r.contains("/extensions/"))
        .count();
    assert_eq!(relists, 0, "the retries came without a new list");
    drop(h.runtime);
}

#[test]
fn an_unreadable_optional_kind_does_not_hold_up_the_first_sync() {
    let api = FakeApi::start();
    api.forbid("experimental.kubernetes.io/v1", "NetworkPolicy", true);
    let mut objects = cluster();
    load(&api, &objects);
    let experimental =
        objects.iter().position(|o| o["apiVersion"] == "experimental.kubernetes.io/v1").unwrap();
    let unreadable = objects.remove(experimental);
    let mut h = start(&api);
    h.until_rule_set(&through_manifests(&objects), "synced without the forbidden kind");

    // Readable again (RBAC fixed): its objects arrive.
    api.forbid("experimental.kubernetes.io/v1", "NetworkPolicy", false);
    objects.push(unreadable);
    h.until_rule_set(&through_manifests(&objects), "after the kind became readable");
    drop(h.runtime);
}

fn gated(mut pod: Value) -> Value {
    pod["spec"]["readinessGates"] = json!([{"conditionType": "palisade.io/policy-programmed"}]);
    pod
}

#[test]
fn pods_with_the_readiness_gate_get_their_condition_once_their_policy_is_programmed() {
    let api = FakeApi::start();
    let mut objects = cluster();
    // web (n1) asks for the gate; a gated pod on another node is not ours.
    objects.retain(|o| o["metadata"]["name"] != "web");
    objects.push(gated(pod("shop", "web", "n1", json!({"app": "web"}), "10.0.0.1")));
    objects.push(gated(pod("shop", "far", "n2", json!({"app": "far"}), "10.0.0.9")));
    load(&api, &objects);
    let mut h = start(&api);
    // Nothing programmed: no pod is ready, none patched.
    assert!(h.health.pod_programmed("shop/web").is_none());
    h.until_rule_set(&through_manifests(&objects), "initial sync");
    let generation = h.health.pod_programmed("shop/web").expect("web is programmed");
    assert_eq!(h.health.pod_programmed("legacy/db"), Some(generation), "db too (no gate)");
    assert_eq!(h.health.pod_programmed("shop/far"), None, "another node's pod");
    // The condition is set through pods/status, for web only.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.status_patches().is_empty() {
        assert!(Instant::now() < deadline, "no status patch: {:?}", api.requests());
        h.daemon.round(Duration::from_millis(50)).unwrap();
    }
    // A few more rounds: the MODIFIED pod comes back with its condition
    // set, and nothing is patched again.
    for _ in 0..10 {
        h.daemon.round(Duration::from_millis(50)).unwrap();
    }
    let patches = api.status_patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (ns, name, body) = &patches[0];
    assert_eq!((ns.as_str(), name.as_str()), ("shop", "web"));
    let c = &body["status"]["conditions"][0];
    assert_eq!(c["type"], "palisade.io/policy-programmed");
    assert_eq!(c["status"], "True");
    let stored = api.pod("shop", "web").unwrap();
    let conditions = stored["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "Ready"), "merged by type: {conditions:?}");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "palisade.io/policy-programmed" && c["status"] == "True"),
        "{conditions:?}"
    );
    assert!(h.health.render().contains("palisade_readiness_gates_set_total 1\n"));

    // A new gated pod: set once it is programmed.
    api.apply(gated(pod("shop", "late", "n1", json!({"app": "late"}), "10.0.0.7")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.status_patches().iter().any(|(_, n, _)| n == "late") {
        assert!(Instant::now() < deadline, "no patch for the new pod");
        h.daemon.round(Duration::from_millis(50)).unwrap();
    }
    assert!(h.health.pod_programmed("shop/late").is_some());
}

/// Calico's objects as custom resources (`crd.projectcalico.org/v1`), a
/// ServiceAccount read for `pcsa.` labels, a pod's `serviceAccountName`
/// kept through stripping: the same rule set as the manifest source, with
/// the tier before the default one and the Deny first in it.
#[test]
fn calico_custom_resources_and_service_accounts_give_the_manifest_source_rule_set() {
    let api = FakeApi::start();
    let mut web = pod("shop", "web", "n1", json!({"app": "web"}), "10.0.0.1");
    web["spec"]["serviceAccountName"] = json!("api");
    let objects = vec![
        namespace("shop", json!({"team": "shop"})),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "api", "namespace": "shop", "labels": {"tier": "front"}}}),
        web,
        pod("shop", "client", "n1", json!({"app": "client"}), "10.0.0.2"),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "Tier",
               "metadata": {"name": "security"}, "spec": {"order": 10}}),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkSet",
               "metadata": {"name": "partners", "labels": {"role": "partner"}},
               "spec": {"nets": ["203.0.113.0/24"]}}),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
               "metadata": {"name": "security.guard"},
               "spec": {"tier": "security", "selector": "pcsa.tier == 'front'",
                        "ingress": [{"action": "Deny", "source": {"selector": "role == 'partner'"}},
                                    {"action": "Pass"}]}}),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "web-from-client", "namespace": "shop"},
               "spec": {"selector": "app == 'web'",
                        "ingress": [{"action": "Allow", "source": {"selector": "app == 'client'"}}]}}),
    ];
    load(&api, &objects);
    let mut h = start(&api);
    let want = through_manifests(&objects);
    h.until_rule_set(&want, "Calico objects");
    let rules = h.daemon.pipeline().rule_set();
    let web = rules.endpoints.iter().find(|e| e.name == "shop/web").unwrap();
    let ingress = rules.policy(web.id, palisade_model::Direction::Ingress).unwrap();
    // The node exemption, the tier `security` (the account's labels picked
    // web), then the default tier.
    assert_eq!(ingress.tiers.len(), 3, "{ingress:?}");
    assert_eq!(ingress.tiers[1].rules[0].action, palisade_model::Action::Deny);
    assert_eq!(ingress.tiers[1].rules[1].action, palisade_model::Action::Pass);
    drop(h.runtime);
}
