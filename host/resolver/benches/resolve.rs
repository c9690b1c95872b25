//! Resolver benchmark (a bench binary, not a timed test).
//!
//! `cargo bench -p palisade-resolver --bench resolve [-- PODS POLICIES...]`
//!
//! For each policy count: a full resolve of a synthetic cluster (many
//! namespaces, label selectors, ipBlocks with except, named ports), then one
//! pod label change and one added policy (each timed over many repetitions,
//! delta taken; mean, p99 and worst per event), and the process's peak
//! resident memory (VmHWM).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use palisade_model::policy::{
    ContainerPort, LabelSelector, Labels, Namespace, NamespaceScope, Node, ObjectRef, PeerSelector,
    Pod, PodSet, Policy, PolicyRule, PortSelector, Requirement, SelectorOp, TierRank,
};
use palisade_model::{Action, Cidr, ModelEvent, Protocol};
use palisade_resolver::{Resolver, Settings};

const NAMESPACES: usize = 100;
const APPS: usize = 25;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn sel(pairs: &[(&str, String)]) -> LabelSelector {
    LabelSelector { match_labels: labels(pairs), match_expressions: vec![] }
}

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (i / 65536) as u8 + 1, (i / 256 % 256) as u8, (i % 256) as u8))
}

fn pod(i: usize, app: usize) -> Pod {
    let ns = i % NAMESPACES;
    let http = if i.is_multiple_of(3) { 80 } else { 8080 };
    Pod {
        namespace: format!("ns-{ns}"),
        name: format!("pod-{i}"),
        labels: labels(&[
            ("app", format!("app-{app}")),
            ("tier", ["web", "api", "db"][i % 3].to_string()),
            ("version", format!("v{}", i % 2)),
        ]),
        node: Some(format!("node-{}", i % 100)),
        ips: vec![ip(i)],
        ports: vec![
            ContainerPort { name: Some("http".into()), port: http, protocol: Protocol::Tcp },
            ContainerPort { name: Some("metrics".into()), port: 9090, protocol: Protocol::Tcp },
        ],
        host_network: false,
        active: true,
        service_account: "default".into(),
    }
}

fn tcp(port: u16) -> PortSelector {
    PortSelector::Range { protocol: Protocol::Tcp, first: port, last: port }
}

fn policy(k: usize) -> Policy {
    let ns = format!("ns-{}", k % NAMESPACES);
    let app = format!("app-{}", (k / NAMESPACES) % APPS);
    let own = |pairs: &[(&str, String)]| PodSet {
        namespaces: NamespaceScope::Named(ns.clone()),
        pods: sel(pairs),
        ..PodSet::default()
    };
    let rule = |peers, ports, label: &str| PolicyRule {
        action: Action::Allow,
        peers,
        ports,
        label: label.into(),
        local: None,
    };
    let subject = own(&[("app", app.clone())]);
    let (ingress, egress) = match (k + k / NAMESPACES) % 5 {
        0 => (
            Some(vec![rule(
                vec![PeerSelector::Pods(own(&[("tier", "web".into())]))],
                vec![tcp(8080)],
                "ingress[0]",
            )]),
            None,
        ),
        1 => (
            Some(vec![rule(
                vec![PeerSelector::Pods(PodSet {
                    namespaces: NamespaceScope::Selector(sel(&[("team", format!("t{}", k % 10))])),
                    pods: sel(&[("tier", "api".into())]),
                    ..PodSet::default()
                })],
                vec![PortSelector::Named { protocol: Protocol::Tcp, name: "http".into() }],
                "ingress[0]",
            )]),
            None,
        ),
        2 => (
            Some(vec![]),
            Some(vec![
                rule(
                    vec![PeerSelector::IpBlock {
                        cidr: "10.0.0.0/8".parse::<Cidr>().unwrap_or_else(|e| panic!("{e}")),
                        except: vec![Cidr::new(
                            IpAddr::V4(Ipv4Addr::new(10, 1, (k % 40) as u8, 0)),
                            24,
                        )],
                    }],
                    vec![tcp(443)],
                    "egress[0]",
                ),
                rule(
                    vec![PeerSelector::Pods(PodSet {
                        namespaces: NamespaceScope::Selector(LabelSelector::everything()),
                        pods: sel(&[("tier", "db".into())]),
                        ..PodSet::default()
                    })],
                    vec![tcp(5432)],
                    "egress[1]",
                ),
            ]),
        ),
        3 => (
            Some(vec![rule(
                vec![PeerSelector::Pods(PodSet {
                    namespaces: NamespaceScope::Named(ns.clone()),
                    pods: LabelSelector {
                        match_labels: Labels::new(),
                        match_expressions: vec![Requirement {
                            key: "app".into(),
                            op: SelectorOp::In,
                            values: vec![
                                format!("app-{}", (k + 1) % APPS),
                                format!("app-{}", (k + 2) % APPS),
                            ],
                        }],
                    },
                    ..PodSet::default()
                })],
                vec![
                    tcp(80),
                    PortSelector::Named { protocol: Protocol::Tcp, name: "metrics".into() },
                ],
                "ingress[0]",
            )]),
            None,
        ),
        _ => (
            None,
            Some(vec![rule(
                vec![PeerSelector::Pods(own(&[("tier", "api".into())]))],
                vec![PortSelector::Named { protocol: Protocol::Tcp, name: "http".into() }],
                "egress[0]",
            )]),
        ),
    };
    Policy {
        order: None,
        order_name: String::new(),
        object: ObjectRef {
            kind: "networking.k8s.io/v1 NetworkPolicy".into(),
            namespace: ns,
            name: format!("policy-{k}"),
        },
        tier: TierRank::NetworkPolicy,
        subject,
        ingress,
        egress,
    }
}

fn cluster(pods: usize, policies: usize) -> Vec<ModelEvent> {
    let mut events = Vec::new();
    for n in 0..NAMESPACES {
        let name = format!("ns-{n}");
        events.push(ModelEvent::NamespaceUpserted(Namespace {
            name: name.clone(),
            labels: labels(&[
                ("kubernetes.io/metadata.name", name),
                ("team", format!("t{}", n % 10)),
            ]),
        }));
    }
    for n in 0..100 {
        events.push(ModelEvent::NodeUpserted(Node {
            name: format!("node-{n}"),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(172, 18, 0, n as u8 + 1))],
        }));
    }
    for i in 0..pods {
        events.push(ModelEvent::PodUpserted(pod(i, (i / NAMESPACES) % APPS)));
    }
    for k in 0..policies {
        events.push(ModelEvent::PolicyUpserted(policy(k)));
    }
    events
}

fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// "mean …, p99 …, worst … µs over N" of per-event times.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let n = times.len();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|&d| us(d)).sum::<f64>() / n as f64;
    // Nearest rank: the smallest time at or above 99 % of the events.
    let p99 = times[(n * 99).div_ceil(100).saturating_sub(1)];
    let worst = times[n - 1];
    format!("mean {mean:.1} µs, p99 {:.1} µs, worst {:.1} µs over {n}", us(p99), us(worst))
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pods = args.first().copied().unwrap_or(10_000);
    let counts: Vec<usize> = if args.len() > 1 { args[1..].to_vec() } else { vec![1_000, 10_000] };
    for policies in counts {
        let events = cluster(pods, policies);
        let mut r = Resolver::new(Settings::default());
        let start = Instant::now();
        r.handle_all(events);
        let full = start.elapsed();
        let delta = r.take_delta();
        let rs = r.rule_set();
        println!(
            "{pods} pods x {policies} policies: full resolve {:.3} s; {} endpoints, {} endpoint policies, {} rules, {} sets, {} origins; first delta {} records; peak RSS {:.0} MB",
            full.as_secs_f64(),
            rs.endpoints.len(),
            rs.policies.len(),
            rs.rule_count(),
            rs.sets.len(),
            rs.origins.len(),
            delta.size(),
            peak_memory_mb().unwrap_or(f64::NAN),
        );

        // One pod label change (app moves to another app's selectors), and back.
        let reps = 200;
        let mut times = Vec::with_capacity(reps);
        for n in 0..reps {
            let i = (n * 37) % pods;
            let t = Instant::now();
            r.handle(ModelEvent::PodUpserted(pod(i, (i / NAMESPACES + 1) % APPS)));
            let _ = r.take_delta();
            times.push(t.elapsed());
        }
        println!("  pod label change (+ take_delta): {}", summary(&mut times));

        // One policy added.
        let reps = 100;
        let mut times = Vec::with_capacity(reps);
        for n in 0..reps {
            let mut p = policy(policies + n);
            p.object.name = format!("added-{n}");
            let t = Instant::now();
            r.handle(ModelEvent::PolicyUpserted(p));
            let _ = r.take_delta();
            times.push(t.elapsed());
        }
        println!("  policy added (+ take_delta): {}", summary(&mut times));
    }
}
