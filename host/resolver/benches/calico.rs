//! Calico benchmark (a bench binary, not a timed test).
//!
//! `cargo bench -p palisade-resolver --bench calico [-- PODS POLICIES]`
//!
//! 1. Selector evaluation per label map: 200 distinct Calico selectors
//!    (every operator, implicit `pcns.`/`pcsa.` labels) against pods' label
//!    views.
//! 2. The full resolve of a cluster of PODS pods (default 10,000) in 100
//!    namespaces, 500 labelled ServiceAccounts, 200 network sets (100
//!    namespaced, 100 global) and POLICIES Calico policies (default 2,000;
//!    NetworkPolicies and GlobalNetworkPolicies over 5 tiers, the default
//!    one included) drawn from 200 distinct selectors, with Allow, Deny,
//!    Pass and Log rules, nets and notNets, notSelector, namespaceSelector,
//!    service accounts, port ranges and named ports. The objects go through
//!    the dialect compiler first (timed apart).
//! 3. The same cluster with POLICIES Kubernetes NetworkPolicies of the same
//!    shape (200 distinct pod selectors), for comparison.
//!
//! Each resolve is for one node (`node-0`, 100 local pods) and in model
//! mode (every pod an endpoint).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palisade_dialects::{Compiler, Settings as DialectSettings};
use palisade_model::calico_selector::Selector;
use palisade_model::ModelEvent;
use palisade_resolver::{Resolver, Settings};
use serde_json::{json, Value};

const NAMESPACES: usize = 100;
const APPS: usize = 50;
const SELECTORS: usize = 200;

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", i / 65536 + 1, i / 256 % 256, i % 256)
}

fn cluster(pods: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for n in 0..NAMESPACES {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{n}"), "labels": {"team": format!("team-{}", n % 20), "env": (["prod", "dev"][n % 2])}}}));
        for a in 0..5 {
            out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": format!("sa-{a}"), "namespace": format!("ns-{n}"),
                             "labels": {"role": format!("role-{}", (n + a) % 10)}}}));
        }
    }
    for n in 0..100 {
        out.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", n + 1)}]}}));
    }
    for i in 0..pods {
        let app = (i / NAMESPACES) % APPS;
        out.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
                         "labels": {"app": format!("app-{app}"), "tier": (["web", "api", "db"][i % 3]), "version": format!("v{}", i % 4)}},
            "spec": {"nodeName": format!("node-{}", i % 100), "serviceAccountName": format!("sa-{}", i % 5),
                     "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": if i % 3 == 0 { 80 } else { 8080 }}, {"name": "metrics", "containerPort": 9090}]}]},
            "status": {"podIP": ip(i)}}));
    }
    for s in 0..100 {
        out.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
            "metadata": {"name": format!("set-{s}"), "namespace": format!("ns-{}", s % NAMESPACES), "labels": {"role": format!("ext-{}", s % 20)}},
            "spec": {"nets": [format!("192.0.{}.0/24", s), format!("198.51.{}.0/25", s)]}}));
        out.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
            "metadata": {"name": format!("gset-{s}"), "labels": {"role": format!("ext-{}", s % 20), "zone": format!("z{}", s % 4)}},
            "spec": {"nets": [format!("203.{}.0.0/16", s)]}}));
    }
    out
}

/// Selector number `k` of 200 distinct ones, over every operator.
fn selector(k: usize) -> String {
    let app = format!("app-{}", k % APPS);
    match k % 8 {
        0 => format!("app == '{app}'"),
        1 => format!("app == '{app}' && tier in {{'web', 'api'}}"),
        2 => format!("app == '{app}' && version != 'v{}'", k % 4),
        3 => format!("app in {{'{app}', 'app-{}'}} && !has(legacy)", (k + 7) % APPS),
        4 => format!("app == '{app}' && pcns.team == 'team-{}'", k % 20),
        5 => format!("app starts with '{app}' && tier not in {{'db'}}"),
        6 => format!("app == '{app}' && (pcsa.role == 'role-{}' || version ends with '1')", k % 10),
        _ => format!("app == '{app}' && projectcalico.org/namespace contains '{}'", k % 10),
    }
}

fn tiers() -> Vec<Value> {
    (0..4)
        .map(|t| json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": format!("tier-{t}")},
            "spec": {"order": 100 * (t + 1), "defaultAction": if t % 2 == 0 { "Pass" } else { "Deny" }}}))
        .collect()
}

fn calico_policy(k: usize) -> Value {
    let tier = k % 5;
    let ns = k % NAMESPACES;
    let peer = selector((k * 7 + 3) % SELECTORS);
    let mut ingress = vec![
        json!({"action": "Allow", "protocol": "TCP", "source": {"selector": peer},
               "destination": {"ports": [80, "8000:8100", "http"]}}),
        json!({"action": "Deny", "source": {"nets": [format!("10.{}.0.0/16", k % 3 + 1)], "notNets": [format!("10.{}.{}.0/24", k % 3 + 1, k % 256)]}}),
        json!({"action": "Allow", "source": {"selector": format!("role == 'ext-{}'", k % 20)}}),
    ];
    if k.is_multiple_of(4) {
        ingress.insert(0, json!({"action": "Log"}));
    }
    if k % 5 == 1 {
        ingress.push(
            json!({"action": "Pass", "source": {"notSelector": selector((k + 11) % SELECTORS)}}),
        );
    }
    let egress = vec![
        json!({"action": "Allow", "protocol": "UDP", "destination": {"ports": [53], "namespaceSelector": "team == 'team-0'"}}),
        json!({"action": "Allow", "destination": {"serviceAccounts": {"selector": format!("role == 'role-{}'", k % 10)}}}),
    ];
    let mut spec =
        json!({"order": (k % 17) * 10, "selector": selector(k % SELECTORS), "ingress": ingress});
    if tier < 4 {
        spec["tier"] = json!(format!("tier-{tier}"));
    }
    if k.is_multiple_of(3) {
        spec["egress"] = json!(egress);
    }
    if k.is_multiple_of(2) {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
               "metadata": {"name": format!("p-{k}"), "namespace": format!("ns-{ns}")}, "spec": spec})
    } else {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
               "metadata": {"name": format!("g-{k}")}, "spec": spec})
    }
}

/// The Kubernetes NetworkPolicy of the same shape: subject and peer from
/// 200 distinct matchLabels selectors.
fn k8s_policy(k: usize) -> Value {
    let sel = |s: usize| {
        let mut m = BTreeMap::new();
        m.insert("app", format!("app-{}", s % APPS));
        if !s.is_multiple_of(4) {
            m.insert("tier", ["web", "api", "db"][s % 3].to_string());
        }
        if s % 8 >= 6 {
            m.insert("version", format!("v{}", s % 4));
        }
        json!({"matchLabels": m})
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("k-{k}"), "namespace": format!("ns-{}", k % NAMESPACES)},
        "spec": {"podSelector": sel(k % SELECTORS),
                 "ingress": [
                    {"from": [{"podSelector": sel((k * 7 + 3) % SELECTORS), "namespaceSelector": {}}],
                     "ports": [{"port": 80}, {"port": 8000, "endPort": 8100}, {"port": "http"}]},
                    {"from": [{"ipBlock": {"cidr": format!("10.{}.0.0/16", k % 3 + 1), "except": [format!("10.{}.{}.0/24", k % 3 + 1, k % 256)]}}]}],
                 "egress": if k.is_multiple_of(3) { json!([{"to": [{"namespaceSelector": {"matchLabels": {"team": "team-0"}}}], "ports": [{"port": 53, "protocol": "UDP"}]}]) } else { json!([]) },
                 "policyTypes": if k.is_multiple_of(3) { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) }}})
}

fn compile(objects: &[Value]) -> (Vec<ModelEvent>, Duration) {
    let mut compiler = Compiler::new(DialectSettings::default());
    let mut events = Vec::new();
    let t = Instant::now();
    for o in objects {
        match compiler.apply(o) {
            Ok(c) => events.extend(c.events),
            Err(e) => panic!("the bench's objects compile: {e}"),
        }
    }
    (events, t.elapsed())
}

fn peak_memory_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn resolve(what: &str, events: &[ModelEvent], node: Option<&str>) {
    let mut r = Resolver::new(Settings { node: node.map(str::to_string), ..Settings::default() });
    let t = Instant::now();
    r.handle_all(events.to_vec());
    let full = t.elapsed();
    let rs = r.rule_set();
    println!(
        "  {what}, {}: full resolve {:.3} s; {} endpoints, {} endpoint policies, {} rules, {} sets; peak RSS so far {:.0} MB",
        node.unwrap_or("model mode"),
        full.as_secs_f64(),
        rs.endpoints.len(),
        rs.policies.len(),
        rs.rule_count(),
        rs.sets.len(),
        peak_memory_mb()
    );
}

fn selector_evaluation() {
    let sels: Vec<Selector> = (0..SELECTORS)
        .map(|k| Selector::parse(&selector(k)).unwrap_or_else(|e| panic!("{}: {e}", selector(k))))
        .collect();
    // Pods' label maps with the implicit labels written out (what the
    // resolver's view answers), 1,000 distinct ones.
    let maps: Vec<BTreeMap<String, String>> = (0..1000)
        .map(|i| {
            let mut m = BTreeMap::new();
            m.insert("app".to_string(), format!("app-{}", i % APPS));
            m.insert("tier".to_string(), ["web", "api", "db"][i % 3].to_string());
            m.insert("version".to_string(), format!("v{}", i % 4));
            m.insert("projectcalico.org/namespace".to_string(), format!("ns-{}", i % NAMESPACES));
            m.insert("projectcalico.org/orchestrator".to_string(), "k8s".to_string());
            m.insert("pcns.team".to_string(), format!("team-{}", i % 20));
            m.insert("pcsa.role".to_string(), format!("role-{}", i % 10));
            m
        })
        .collect();
    let rounds = 50;
    let mut matched = 0usize;
    let t = Instant::now();
    for _ in 0..rounds {
        for m in &maps {
            for s in &sels {
                matched += usize::from(s.matches(m));
            }
        }
    }
    let n = rounds * maps.len() * sels.len();
    let ns = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!("selector evaluation: {ns:.0} ns per selector and label map ({n} evaluations over {} selectors, {} matched)", sels.len(), matched);
    let t = Instant::now();
    let texts: Vec<String> = (0..SELECTORS).map(selector).collect();
    let reps = 200;
    for _ in 0..reps {
        for text in &texts {
            std::hint::black_box(Selector::parse(text).ok());
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / (reps * texts.len()) as f64;
    println!("selector parse: {us:.2} µs per selector");
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pods = args.first().copied().unwrap_or(10_000);
    let policies = args.get(1).copied().unwrap_or(2_000);
    selector_evaluation();

    let base = cluster(pods);
    let mut calico = base.clone();
    calico.extend(tiers());
    calico.extend((0..policies).map(calico_policy));
    let (events, compiled) = compile(&calico);
    println!(
        "{pods} pods, {policies} Calico policies over 5 tiers, {SELECTORS} distinct selectors, 200 network sets: compile {:.3} s ({} events)",
        compiled.as_secs_f64(),
        events.len()
    );
    resolve("Calico", &events, Some("node-0"));
    resolve("Calico", &events, None);

    let mut k8s = base;
    k8s.extend((0..policies).map(k8s_policy));
    let (events, compiled) = compile(&k8s);
    println!(
        "{pods} pods, {policies} Kubernetes NetworkPolicies, {SELECTORS} distinct selectors: compile {:.3} s ({} events)",
        compiled.as_secs_f64(),
        events.len()
    );
    resolve("NetworkPolicy", &events, Some("node-0"));
    resolve("NetworkPolicy", &events, None);
}
