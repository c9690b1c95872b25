//! Evaluator tests over hand-written rule sets: tier order, pass, log,
//! no-match outcomes, both directions.

use palisade_model::{
    Action, AddressSet, Direction, Endpoint, EndpointPolicy, NoMatch, Origin, Peer, PortRange,
    Protocol, Rule, RuleSet, Tier,
};

use crate::{explain, Decision, Evaluator, Flow};

fn rule(action: Action, peer: Peer, ports: Vec<PortRange>, origin: u32) -> Rule {
    Rule { action, peer, ports, origin }
}

/// Endpoints a (10.0.0.1) and b (10.0.0.2); set 0 = {10.0.0.2}.
fn rule_set(a_ingress: Vec<Tier>, b_egress: Option<Vec<Tier>>) -> RuleSet {
    let mut rs = RuleSet {
        generation: 1,
        endpoints: vec![
            Endpoint { id: 0, name: "x/a".into(), addresses: vec!["10.0.0.1".parse().unwrap()] },
            Endpoint { id: 1, name: "x/b".into(), addresses: vec!["10.0.0.2".parse().unwrap()] },
        ],
        sets: vec![AddressSet { id: 0, prefixes: vec!["10.0.0.2/32".parse().unwrap()] }],
        policies: vec![EndpointPolicy {
            endpoint: 0,
            direction: Direction::Ingress,
            tiers: a_ingress,
        }],
        origins: (0..3)
            .map(|i| Origin {
                id: i,
                kind: "networking.k8s.io/v1 NetworkPolicy".into(),
                namespace: "x".into(),
                name: format!("p{i}"),
                rule: "ingress[0]".into(),
            })
            .collect(),
    };
    if let Some(tiers) = b_egress {
        rs.policies.push(EndpointPolicy { endpoint: 1, direction: Direction::Egress, tiers });
    }
    rs.canonicalize();
    rs
}

fn flow(from: &str, to: &str, port: u16) -> Flow {
    Flow {
        source: from.parse().unwrap(),
        destination: to.parse().unwrap(),
        protocol: Protocol::Tcp,
        port,
    }
}

#[test]
fn tiers_rules_and_outcomes() {
    let tcp80 = vec![PortRange::single(Protocol::Tcp, 80)];
    struct Case {
        name: &'static str,
        tiers: Vec<Tier>,
        port: u16,
        allowed: bool,
    }
    let cases = vec![
        Case {
            name: "isolating tier without rules denies",
            tiers: vec![Tier { rules: vec![], no_match: NoMatch::Deny }],
            port: 80,
            allowed: false,
        },
        Case {
            name: "allow rule on the port",
            tiers: vec![Tier {
                rules: vec![rule(Action::Allow, Peer::Set(0), tcp80.clone(), 0)],
                no_match: NoMatch::Deny,
            }],
            port: 80,
            allowed: true,
        },
        Case {
            name: "allow rule on another port",
            tiers: vec![Tier {
                rules: vec![rule(Action::Allow, Peer::Set(0), tcp80.clone(), 0)],
                no_match: NoMatch::Deny,
            }],
            port: 81,
            allowed: false,
        },
        Case {
            name: "pass skips the rest of the tier, next-tier after the last allows",
            tiers: vec![
                Tier {
                    rules: vec![
                        rule(Action::Pass, Peer::Any, vec![], 0),
                        rule(Action::Deny, Peer::Any, vec![], 1),
                    ],
                    no_match: NoMatch::Deny,
                },
                Tier { rules: vec![], no_match: NoMatch::NextTier },
            ],
            port: 80,
            allowed: true,
        },
        Case {
            name: "log continues; deny in an earlier tier wins",
            tiers: vec![
                Tier {
                    rules: vec![
                        rule(Action::Log, Peer::Any, vec![], 0),
                        rule(Action::Deny, Peer::Set(0), vec![], 1),
                    ],
                    no_match: NoMatch::NextTier,
                },
                Tier {
                    rules: vec![rule(Action::Allow, Peer::Any, vec![], 2)],
                    no_match: NoMatch::Deny,
                },
            ],
            port: 80,
            allowed: false,
        },
    ];
    for case in cases {
        let rs = rule_set(case.tiers, None);
        let t = Evaluator::new(&rs).evaluate(flow("10.0.0.2", "10.0.0.1", case.port));
        assert_eq!(t.allowed, case.allowed, "{}", case.name);
        assert_eq!(t.egress.decision, Decision::NoPolicy, "{}", case.name);
    }
}

#[test]
fn both_directions_must_allow_and_the_trace_names_the_rule() {
    let rs = rule_set(
        vec![Tier {
            rules: vec![rule(Action::Allow, Peer::Set(0), vec![], 2)],
            no_match: NoMatch::Deny,
        }],
        Some(vec![Tier { rules: vec![], no_match: NoMatch::Deny }]),
    );
    let ev = Evaluator::new(&rs);
    let t = ev.evaluate(flow("10.0.0.2", "10.0.0.1", 80));
    assert!(!t.allowed);
    assert!(t.ingress.allowed);
    assert_eq!(t.egress.decision, Decision::TierDefault { tier: 0 });
    match &t.ingress.decision {
        Decision::Rule { position, action } => {
            assert_eq!(*action, Action::Allow);
            assert_eq!(position.origin.as_ref().unwrap().name, "p2");
        }
        other => panic!("{other:?}"),
    }
    let text = explain(&t, &|_, _| vec!["NetworkPolicy x/p2".to_string()]);
    assert!(text.starts_with("DENIED: x/b (10.0.0.2) -> x/a (10.0.0.1) TCP/80"), "{text}");
    assert!(
        text.contains(
            "allowed by rule ingress[0] (Allow) of networking.k8s.io/v1 NetworkPolicy x/p2"
        ),
        "{text}"
    );
    assert!(text.contains("the source's egress denies it"), "{text}");

    // Outside addresses are judged only on the pod's side.
    let t = ev.evaluate(flow("192.0.2.1", "10.0.0.1", 80));
    assert_eq!(t.egress.decision, Decision::NotAnEndpoint);
    assert!(!t.allowed);
}
