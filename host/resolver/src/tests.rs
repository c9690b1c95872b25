//! Table-driven tests of the resolver. Expectations come from the
//! NetworkPolicy semantics (docs/semantics.md), not from the code.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_model::policy::{
    ContainerPort, LabelSelector, Labels, Namespace, NamespaceScope, Node, ObjectRef, PeerSelector,
    Pod, PodSet, Policy, PolicyRule, PortSelector, TierRank,
};
use palisade_model::{Action, Direction, ModelEvent, NoMatch, Peer, Protocol, RuleSet};

use crate::{NodeTraffic, Resolver, Settings};

const NP: &str = "networking.k8s.io/v1 NetworkPolicy";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ns(name: &str, extra: &[(&str, &str)]) -> ModelEvent {
    let mut l = labels(extra);
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    ModelEvent::NamespaceUpserted(Namespace { name: name.into(), labels: l })
}

fn pod(namespace: &str, name: &str, l: &[(&str, &str)], ip: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: labels(l),
        node: Some("node-1".into()),
        ips: vec![ip.parse().unwrap()],
        ports: vec![],
        host_network: false,
        active: true,
        service_account: "default".into(),
    }
}

fn with_ports(mut p: Pod, ports: &[(&str, u16)]) -> Pod {
    p.ports = ports
        .iter()
        .map(|(n, port)| ContainerPort {
            name: Some(n.to_string()),
            port: *port,
            protocol: Protocol::Tcp,
        })
        .collect();
    p
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: labels(pairs), match_expressions: vec![] }
}

fn in_ns(namespace: &str, pairs: &[(&str, &str)]) -> PodSet {
    PodSet {
        namespaces: NamespaceScope::Named(namespace.into()),
        pods: sel(pairs),
        ..PodSet::default()
    }
}

fn rule(peers: Vec<PeerSelector>, ports: Vec<PortSelector>, label: &str) -> PolicyRule {
    PolicyRule { action: Action::Allow, peers, ports, label: label.into(), local: None }
}

fn tcp(port: u16) -> PortSelector {
    PortSelector::Range { protocol: Protocol::Tcp, first: port, last: port }
}

fn named(name: &str) -> PortSelector {
    PortSelector::Named { protocol: Protocol::Tcp, name: name.into() }
}

fn policy(
    namespace: &str,
    name: &str,
    subject: PodSet,
    ingress: Option<Vec<PolicyRule>>,
    egress: Option<Vec<PolicyRule>>,
) -> ModelEvent {
    ModelEvent::PolicyUpserted(Policy {
        order: None,
        order_name: String::new(),
        object: ObjectRef { kind: NP.into(), namespace: namespace.into(), name: name.into() },
        tier: TierRank::NetworkPolicy,
        subject,
        ingress,
        egress,
    })
}

/// A minimal evaluator, independent of the evaluator crate, for judging
/// rule sets in these tests.
fn allowed(rs: &RuleSet, from: &str, to: &str, port: u16) -> bool {
    let src: IpAddr = from.parse().unwrap();
    let dst: IpAddr = to.parse().unwrap();
    let judge = |ep_addr: IpAddr, peer_addr: IpAddr, direction: Direction| {
        let Some(ep) = rs.endpoints.iter().find(|e| e.addresses.contains(&ep_addr)) else {
            return true;
        };
        let Some(policy) = rs.policy(ep.id, direction) else {
            return true;
        };
        for tier in &policy.tiers {
            let mut decided = None;
            for r in &tier.rules {
                let peer_ok = match r.peer {
                    Peer::Any => true,
                    Peer::Set(id) => rs.set(id).unwrap().contains(&peer_addr),
                };
                if peer_ok && r.matches_port(Protocol::Tcp, port) {
                    match r.action {
                        Action::Allow => return true,
                        Action::Deny => return false,
                        Action::Pass => {
                            decided = Some(());
                            break;
                        }
                        Action::Log => {}
                    }
                }
            }
            if decided.is_none() && tier.no_match == NoMatch::Deny {
                return false;
            }
        }
        true
    };
    judge(src, dst, Direction::Egress) && judge(dst, src, Direction::Ingress)
}

fn resolver(events: Vec<ModelEvent>) -> Resolver {
    let mut r = Resolver::new(Settings::default());
    r.handle_all(events);
    r
}

/// Two namespaces, three pods: x/a (app=a), x/b (app=b), y/c (app=c).
fn cluster() -> Vec<ModelEvent> {
    vec![
        ns("x", &[("team", "x")]),
        ns("y", &[("team", "y")]),
        ModelEvent::NodeUpserted(Node {
            name: "node-1".into(),
            addresses: vec!["172.18.0.2".parse().unwrap()],
        }),
        ModelEvent::PodUpserted(with_ports(
            pod("x", "a", &[("app", "a")], "10.0.0.1"),
            &[("http", 80), ("metrics", 9090)],
        )),
        ModelEvent::PodUpserted(with_ports(
            pod("x", "b", &[("app", "b")], "10.0.0.2"),
            &[("http", 8080)],
        )),
        ModelEvent::PodUpserted(pod("y", "c", &[("app", "c")], "10.0.1.1")),
    ]
}

const A: &str = "10.0.0.1";
const B: &str = "10.0.0.2";
const C: &str = "10.0.1.1";
const NODE: &str = "172.18.0.2";
const OUTSIDE: &str = "192.0.2.7";

#[test]
fn verdicts_follow_networkpolicy_semantics() {
    struct Case {
        name: &'static str,
        policies: Vec<ModelEvent>,
        probes: Vec<(&'static str, &'static str, u16, bool)>,
    }
    let any_ns = |pods: &[(&str, &str)]| PodSet {
        namespaces: NamespaceScope::Selector(LabelSelector::everything()),
        pods: sel(pods),
        ..PodSet::default()
    };
    let cases = vec![
        Case {
            name: "no policy: everything allowed",
            policies: vec![],
            probes: vec![(B, A, 80, true), (C, A, 1, true), (OUTSIDE, A, 80, true)],
        },
        Case {
            name: "deny-all ingress isolates every pod of the namespace, only for ingress",
            policies: vec![policy("x", "deny", in_ns("x", &[]), Some(vec![]), None)],
            probes: vec![(B, A, 80, false), (C, A, 80, false), (A, C, 80, true), (A, B, 80, false)],
        },
        Case {
            name: "nodes are exempt from ingress isolation",
            policies: vec![policy("x", "deny", in_ns("x", &[]), Some(vec![]), None)],
            probes: vec![(NODE, A, 80, true), (OUTSIDE, A, 80, false)],
        },
        Case {
            name: "podSelector peer: same namespace only",
            policies: vec![policy(
                "x",
                "from-b",
                in_ns("x", &[("app", "a")]),
                Some(vec![rule(
                    vec![PeerSelector::Pods(in_ns("x", &[("app", "b")]))],
                    vec![tcp(80)],
                    "ingress[0]",
                )]),
                None,
            )],
            probes: vec![(B, A, 80, true), (B, A, 81, false), (C, A, 80, false), (A, B, 80, true)],
        },
        Case {
            name: "namespaceSelector peer",
            policies: vec![policy(
                "x",
                "from-y",
                in_ns("x", &[("app", "a")]),
                Some(vec![rule(
                    vec![PeerSelector::Pods(PodSet {
                        namespaces: NamespaceScope::Selector(sel(&[("team", "y")])),
                        pods: LabelSelector::everything(),
                        ..PodSet::default()
                    })],
                    vec![],
                    "ingress[0]",
                )]),
                None,
            )],
            probes: vec![(C, A, 5, true), (B, A, 5, false)],
        },
        Case {
            name: "stacked policies are a union",
            policies: vec![
                policy(
                    "x",
                    "p1",
                    in_ns("x", &[("app", "a")]),
                    Some(vec![rule(
                        vec![PeerSelector::Pods(in_ns("x", &[("app", "b")]))],
                        vec![tcp(80)],
                        "ingress[0]",
                    )]),
                    None,
                ),
                policy(
                    "x",
                    "p2",
                    in_ns("x", &[]),
                    Some(vec![rule(
                        vec![PeerSelector::Pods(any_ns(&[("app", "c")]))],
                        vec![tcp(81)],
                        "ingress[0]",
                    )]),
                    None,
                ),
            ],
            probes: vec![(B, A, 80, true), (C, A, 81, true), (C, A, 80, false), (B, A, 81, false)],
        },
        Case {
            name: "ipBlock with except applies to pod addresses",
            policies: vec![policy(
                "x",
                "block",
                in_ns("x", &[("app", "a")]),
                None,
                Some(vec![rule(
                    vec![PeerSelector::IpBlock {
                        cidr: "10.0.0.0/16".parse().unwrap(),
                        except: vec!["10.0.1.0/24".parse().unwrap()],
                    }],
                    vec![],
                    "egress[0]",
                )]),
            )],
            probes: vec![(A, B, 80, true), (A, C, 80, false), (A, OUTSIDE, 80, false)],
        },
        Case {
            name: "ingress named port resolves against the destination pod",
            policies: vec![policy(
                "x",
                "named",
                in_ns("x", &[]),
                Some(vec![rule(vec![PeerSelector::Any], vec![named("http")], "ingress[0]")]),
                None,
            )],
            probes: vec![
                (C, A, 80, true),
                (C, A, 8080, false),
                (C, B, 8080, true),
                (C, B, 80, false),
            ],
        },
        Case {
            name: "a named port the pod lacks matches nothing, not everything",
            policies: vec![policy(
                "x",
                "named",
                in_ns("x", &[]),
                Some(vec![rule(vec![PeerSelector::Any], vec![named("metrics")], "ingress[0]")]),
                None,
            )],
            probes: vec![(C, A, 9090, true), (C, B, 9090, false), (C, B, 8080, false)],
        },
        Case {
            name: "egress named port resolves per destination pod",
            policies: vec![policy(
                "y",
                "out",
                in_ns("y", &[]),
                None,
                Some(vec![rule(vec![PeerSelector::Any], vec![named("http")], "egress[0]")]),
            )],
            probes: vec![
                (C, A, 80, true),
                (C, B, 8080, true),
                (C, A, 8080, false),
                (C, B, 80, false),
                (C, OUTSIDE, 80, false),
            ],
        },
        Case {
            name: "policyTypes egress only does not isolate ingress",
            policies: vec![policy("x", "e", in_ns("x", &[("app", "a")]), None, Some(vec![]))],
            probes: vec![(B, A, 80, true), (A, B, 80, false), (A, C, 80, false)],
        },
    ];
    for case in cases {
        let mut events = cluster();
        events.extend(case.policies);
        let r = resolver(events);
        for (from, to, port, expected) in case.probes {
            assert_eq!(
                allowed(r.rule_set(), from, to, port),
                expected,
                "{}: {from} -> {to}:{port}",
                case.name
            );
        }
    }
}

#[test]
fn unselected_endpoints_have_no_policy_and_isolated_ones_have_the_tiers() {
    let mut events = cluster();
    events.push(policy("x", "deny", in_ns("x", &[("app", "a")]), Some(vec![]), None));
    let r = resolver(events);
    let rs = r.rule_set();
    assert_eq!(rs.endpoints.len(), 3);
    assert_eq!(rs.policies.len(), 1, "only x/a ingress");
    let p = &rs.policies[0];
    assert_eq!(p.direction, Direction::Ingress);
    assert_eq!(rs.endpoint(p.endpoint).unwrap().name, "x/a");
    assert_eq!(p.tiers.len(), 2, "node exemption, then the NetworkPolicy tier");
    assert_eq!(p.tiers[0].no_match, NoMatch::NextTier);
    let exemption = rs.origin(p.tiers[0].rules[0].origin).unwrap();
    assert_eq!((exemption.kind.as_str(), exemption.name.as_str()), ("palisade", "node-exemption"));
    assert_eq!(p.tiers[1].no_match, NoMatch::Deny);
    assert!(p.tiers[1].rules.is_empty());

    let mut r = Resolver::new(Settings { node: None, node_traffic: NodeTraffic::Policy });
    let mut events = cluster();
    events.push(policy("x", "deny", in_ns("x", &[("app", "a")]), Some(vec![]), None));
    r.handle_all(events);
    assert_eq!(r.rule_set().policies[0].tiers.len(), 1);
    assert!(!allowed(r.rule_set(), NODE, A, 80));
}

#[test]
fn identical_peers_share_one_set_and_sets_follow_label_changes() {
    let from_b = |name: &str, port| {
        policy(
            "x",
            name,
            in_ns("x", &[("app", "a")]),
            Some(vec![rule(
                vec![PeerSelector::Pods(in_ns("x", &[("app", "b")]))],
                vec![tcp(port)],
                "ingress[0]",
            )]),
            None,
        )
    };
    let mut events = cluster();
    events.push(from_b("p1", 80));
    events.push(from_b("p2", 81));
    let mut r = resolver(events);
    let set_ids = |rs: &RuleSet| -> Vec<u32> {
        rs.policies[0].tiers[1]
            .rules
            .iter()
            .map(|r| match r.peer {
                Peer::Set(id) => id,
                Peer::Any => u32::MAX,
            })
            .collect()
    };
    let ids = set_ids(r.rule_set());
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "same selector, same set");
    let _ = r.take_delta();

    // y/c gains nothing; x/c2 with app=b joins the set in place.
    r.handle(ModelEvent::PodUpserted(pod("x", "c2", &[("app", "b")], "10.0.0.3")));
    let d = r.take_delta();
    assert_eq!(d.sets_changed.len(), 1, "{d:?}");
    assert_eq!(d.sets_changed[0].id, ids[0]);
    assert_eq!(d.sets_changed[0].added, vec!["10.0.0.3/32".parse().unwrap()]);
    assert!(d.policies_upserted.is_empty(), "rules keep their set id");
    assert!(allowed(r.rule_set(), "10.0.0.3", A, 80));

    // Relabel x/b: it leaves the set.
    r.handle(ModelEvent::PodUpserted(pod("x", "b", &[("app", "other")], B)));
    assert!(!allowed(r.rule_set(), B, A, 80));
    assert!(allowed(r.rule_set(), "10.0.0.3", A, 80));
}

#[test]
fn deltas_replayed_on_an_empty_rule_set_reproduce_the_rule_set() {
    let mut r = Resolver::new(Settings::default());
    let mut replica = RuleSet::default();
    let mut steps = cluster();
    steps.push(policy(
        "x",
        "p",
        in_ns("x", &[]),
        Some(vec![rule(
            vec![PeerSelector::Pods(in_ns("y", &[]))],
            vec![named("http")],
            "ingress[0]",
        )]),
        Some(vec![rule(vec![PeerSelector::Any], vec![named("http")], "egress[0]")]),
    ));
    steps
        .push(ModelEvent::PodUpserted(with_ports(pod("y", "d", &[], "10.0.1.2"), &[("http", 81)])));
    steps.push(ModelEvent::PodDeleted { namespace: "x".into(), name: "b".into() });
    steps.push(ns("y", &[("team", "z")]));
    steps.push(ModelEvent::PolicyDeleted(ObjectRef {
        kind: NP.into(),
        namespace: "x".into(),
        name: "p".into(),
    }));
    for event in steps {
        r.handle(event);
        let d = r.take_delta();
        replica.apply_delta(&d).unwrap();
        assert_eq!(&replica, r.rule_set());
    }
    assert!(r.rule_set().policies.is_empty());
    assert!(r.rule_set().sets.is_empty(), "unused sets are dropped");
}

#[test]
fn equal_inputs_give_equal_ids() {
    let mut events = cluster();
    events.push(policy(
        "x",
        "p",
        in_ns("x", &[]),
        Some(vec![rule(vec![PeerSelector::Pods(in_ns("y", &[]))], vec![tcp(1)], "ingress[0]")]),
        Some(vec![rule(vec![PeerSelector::Any], vec![named("http")], "egress[0]")]),
    ));
    let a = resolver(events.clone());
    let b = resolver(events.clone());
    assert_eq!(a.rule_set(), b.rule_set());
    let mut one_by_one = Resolver::new(Settings::default());
    for e in events {
        one_by_one.handle(e);
    }
    let (mut x, mut y) = (a.rule_set().clone(), one_by_one.rule_set().clone());
    x.generation = 0;
    y.generation = 0;
    assert_eq!(x.endpoints, y.endpoints);
    assert_eq!(x.origins, y.origins);
}

#[test]
fn node_mode_keeps_remote_pods_as_peers_only() {
    let mut r =
        Resolver::new(Settings { node: Some("node-1".into()), node_traffic: NodeTraffic::Allow });
    let mut remote = pod("x", "remote", &[("app", "b")], "10.0.9.9");
    remote.node = Some("node-2".into());
    let mut host = pod("x", "host", &[("app", "b")], "172.18.0.2");
    host.host_network = true;
    let mut done = pod("x", "done", &[("app", "b")], "10.0.9.8");
    done.active = false;
    let mut events = cluster();
    events.extend([
        ModelEvent::PodUpserted(remote),
        ModelEvent::PodUpserted(host),
        ModelEvent::PodUpserted(done),
        policy(
            "x",
            "p",
            in_ns("x", &[]),
            Some(vec![rule(
                vec![PeerSelector::Pods(in_ns("x", &[("app", "b")]))],
                vec![],
                "ingress[0]",
            )]),
            None,
        ),
    ]);
    r.handle_all(events);
    let rs = r.rule_set();
    let names: Vec<&str> = rs.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["x/a", "x/b", "y/c"]);
    let peers = rs.sets.iter().find(|s| s.contains(&B.parse().unwrap())).unwrap();
    let members: Vec<String> = peers.prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        members,
        vec!["10.0.0.2/32", "10.0.9.9/32"],
        "remote pod is a peer; host-network and finished pods are not"
    );
}

#[test]
fn namespace_relabel_and_pod_changes_are_incremental() {
    let mut events = cluster();
    events.push(policy(
        "x",
        "from-team-z",
        in_ns("x", &[("app", "a")]),
        Some(vec![rule(
            vec![PeerSelector::Pods(PodSet {
                namespaces: NamespaceScope::Selector(sel(&[("team", "z")])),
                pods: LabelSelector::everything(),
                ..PodSet::default()
            })],
            vec![],
            "ingress[0]",
        )]),
        None,
    ));
    let mut r = resolver(events);
    assert!(!allowed(r.rule_set(), C, A, 80));
    r.handle(ns("y", &[("team", "z")]));
    assert!(allowed(r.rule_set(), C, A, 80));
    // A pod that stops being selected as subject loses its policy.
    r.handle(ModelEvent::PodUpserted(pod("x", "a", &[("app", "moved")], A)));
    assert!(allowed(r.rule_set(), B, A, 80));
    assert!(r.rule_set().policies.is_empty());
    let gen = r.rule_set().generation;
    r.handle(ModelEvent::PodUpserted(pod("x", "a", &[("app", "moved")], A)));
    assert_eq!(r.rule_set().generation, gen, "no change, no new generation");
    let _ = BTreeMap::<u8, u8>::new();
}

#[test]
fn ipblock_prefixes_subtract_the_excepts() {
    let p = crate::block_prefixes(
        &"10.0.0.0/24".parse().unwrap(),
        &["10.0.0.0/25".parse().unwrap(), "10.0.0.200/32".parse().unwrap()],
    );
    let s: Vec<String> = p.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        s,
        vec![
            "10.0.0.128/26",
            "10.0.0.192/29",
            "10.0.0.201/32",
            "10.0.0.202/31",
            "10.0.0.204/30",
            "10.0.0.208/28",
            "10.0.0.224/27"
        ]
    );
}

mod calico;
