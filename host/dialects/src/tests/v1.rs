use palisade_model::policy::{PeerSelector, PodSet, PortSelector, TierRank};
use palisade_model::{Action, Cidr, ModelEvent, Protocol};
use palisade_store::ObjectKey;

use super::*;
use crate::{Problem, Settings};

const FULL: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: full, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from:
        - podSelector: {matchLabels: {role: api}}
        - namespaceSelector: {matchLabels: {team: ops}}
        - namespaceSelector: {matchLabels: {team: dev}}
          podSelector: {matchLabels: {role: debug}}
        - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}
      ports:
        - port: 5432
        - {port: 8000, endPort: 8100, protocol: UDP}
        - {port: metrics, protocol: SCTP}
        - {protocol: UDP}
    - {}
  egress:
    - to: []
      ports: [{port: 53, protocol: UDP}]
"#;

#[test]
fn every_part_of_the_spec_lands_in_the_model() {
    let mut compiler = Compiler::new(Settings::default());
    let p = the_policy(&apply(&mut compiler, FULL));
    assert_eq!(p.object, policy_ref("networking.k8s.io/v1 NetworkPolicy", "prod", "full"));
    assert_eq!(p.tier, TierRank::NetworkPolicy);
    assert_eq!(
        p.subject,
        PodSet {
            namespaces: NamespaceScope::Named("prod".into()),
            pods: match_labels(&[("app", "db")]),
            ..PodSet::default()
        }
    );
    let ingress = p.ingress.unwrap();
    assert_eq!(ingress.len(), 2);
    assert_eq!(ingress[0].label, "ingress[0]");
    assert_eq!(ingress[0].action, Action::Allow);
    assert_eq!(
        ingress[0].peers,
        vec![
            // podSelector alone: the policy's own namespace.
            pods_in("prod", match_labels(&[("role", "api")])),
            // namespaceSelector alone: every pod of the matching namespaces.
            pods_where(match_labels(&[("team", "ops")]), LabelSelector::everything()),
            // both in one peer: AND.
            pods_where(match_labels(&[("team", "dev")]), match_labels(&[("role", "debug")])),
            PeerSelector::IpBlock {
                cidr: "10.0.0.0/16".parse::<Cidr>().unwrap(),
                except: vec!["10.0.1.0/24".parse().unwrap()],
            },
        ]
    );
    assert_eq!(
        ingress[0].ports,
        vec![
            tcp(5432, 5432), // protocol defaulted to TCP
            PortSelector::Range { protocol: Protocol::Udp, first: 8000, last: 8100 },
            PortSelector::Named { protocol: Protocol::Sctp, name: "metrics".into() },
            // a protocol without a port: every port of it
            PortSelector::Range { protocol: Protocol::Udp, first: 1, last: 65535 },
        ]
    );
    // An empty rule: from everywhere, every port.
    assert_eq!(ingress[1].label, "ingress[1]");
    assert_eq!(ingress[1].peers, vec![PeerSelector::Any]);
    assert!(ingress[1].ports.is_empty());
    // Egress present, so policyTypes defaulted to [Ingress, Egress].
    let egress = p.egress.unwrap();
    assert_eq!(egress[0].label, "egress[0]");
    assert_eq!(egress[0].peers, vec![PeerSelector::Any], "empty `to` = everywhere");
    assert_eq!(
        egress[0].ports,
        vec![PortSelector::Range { protocol: Protocol::Udp, first: 53, last: 53 }]
    );
}

#[test]
fn policy_types_decide_which_directions_are_governed() {
    // (spec, ingress governed?, egress governed?)
    let cases = [
        ("{podSelector: {}}", Some(0), None),
        ("{podSelector: {}, policyTypes: [Ingress]}", Some(0), None),
        ("{podSelector: {}, policyTypes: [Egress]}", None, Some(0)),
        ("{podSelector: {}, policyTypes: [Ingress, Egress]}", Some(0), Some(0)),
        // Rules of a direction not listed are ignored.
        ("{podSelector: {}, policyTypes: [Egress], ingress: [{}]}", None, Some(0)),
        ("{podSelector: {}, policyTypes: [Ingress], egress: [{}]}", Some(0), None),
        // Defaulting: Egress added only when egress rules exist.
        ("{podSelector: {}, egress: [{}]}", Some(0), Some(1)),
        ("{podSelector: {}, ingress: [{}, {}]}", Some(2), None),
        ("{podSelector: {}, egress: []}", Some(0), None),
    ];
    for (spec, ingress, egress) in cases {
        let mut compiler = Compiler::new(Settings::default());
        let text = format!(
            "{{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {{name: p}}, spec: {spec}}}"
        );
        let p = the_policy(&apply(&mut compiler, &text));
        assert_eq!(p.ingress.map(|r| r.len()), ingress, "{spec}");
        assert_eq!(p.egress.map(|r| r.len()), egress, "{spec}");
        assert_eq!(p.object.namespace, "default", "no namespace means default");
    }
}

/// Each case: a spec fragment that must be rejected, the field path the
/// error must name, and the problem.
fn invalid_cases() -> Vec<(&'static str, &'static str, Problem)> {
    vec![
        (
            "{ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}",
            "spec.ingress[0].from[1].ipBlock.except[0]",
            Problem::ExceptOutsideCidr { except: "11.0.0.0/16".into(), cidr: "10.0.0.0/8".into() },
        ),
        (
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}",
            "spec.ingress[0].from[0].ipBlock.except[0]",
            Problem::ExceptOutsideCidr { except: "10.0.0.0/8".into(), cidr: "10.0.0.0/8".into() },
        ),
        (
            "{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
            "spec.egress[0].to[0].ipBlock.cidr",
            Problem::BadCidr { value: "10.0.0.0/33".into(), reason: "`10.0.0.0/33` has a prefix length beyond the address width".into() },
        ),
        (
            "{egress: [{to: [{ipBlock: {except: [10.0.0.0/24]}}]}]}",
            "spec.egress[0].to[0].ipBlock.cidr",
            Problem::Missing,
        ),
        ("{ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port", Problem::PortOutOfRange("0".into())),
        ("{ingress: [{}, {ports: [{port: 65536}]}]}", "spec.ingress[1].ports[0].port", Problem::PortOutOfRange("65536".into())),
        (
            "{ingress: [{ports: [{port: 100, endPort: 99}]}]}",
            "spec.ingress[0].ports[0].endPort",
            Problem::EndPortBelowPort { port: 100, end: 99 },
        ),
        (
            "{ingress: [{ports: [{port: 100, endPort: 70000}]}]}",
            "spec.ingress[0].ports[0].endPort",
            Problem::PortOutOfRange("70000".into()),
        ),
        (
            "{ingress: [{ports: [{port: http, endPort: 99}]}]}",
            "spec.ingress[0].ports[0].endPort",
            Problem::EndPortWithNamedPort("http".into()),
        ),
        ("{ingress: [{ports: [{endPort: 99}]}]}", "spec.ingress[0].ports[0].endPort", Problem::EndPortWithoutPort),
        ("{ingress: [{ports: [{port: 80, protocol: ICMP}]}]}", "spec.ingress[0].ports[0].protocol", Problem::Protocol("ICMP".into())),
        // v1 wants the exact spelling.
        ("{ingress: [{ports: [{port: 80, protocol: tcp}]}]}", "spec.ingress[0].ports[0].protocol", Problem::Protocol("tcp".into())),
        (
            "{ingress: [{ports: [{port: Http}]}]}",
            "spec.ingress[0].ports[0].port",
            Problem::PortName { name: "Http".into(), reason: "may contain only lower-case letters, digits and '-'" },
        ),
        (
            "{ingress: [{ports: [{port: '8080'}]}]}",
            "spec.ingress[0].ports[0].port",
            Problem::PortName { name: "8080".into(), reason: "must contain at least one letter" },
        ),
        (
            "{ingress: [{ports: [{port: a-very-long-port-name}]}]}",
            "spec.ingress[0].ports[0].port",
            Problem::PortName { name: "a-very-long-port-name".into(), reason: "must be 1 to 15 characters long" },
        ),
        (
            "{podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}",
            "spec.podSelector.matchExpressions[0].operator",
            Problem::Operator("Equals".into()),
        ),
        (
            "{ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]}]}",
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
            Problem::ValuesRequired("In"),
        ),
        (
            "{egress: [{to: [{podSelector: {matchExpressions: [{key: a, operator: DoesNotExist, values: [x]}]}}]}]}",
            "spec.egress[0].to[0].podSelector.matchExpressions[0].values",
            Problem::ValuesForbidden("DoesNotExist"),
        ),
        (
            "{podSelector: app=db}",
            "spec.podSelector",
            Problem::WrongType { expected: "a map", found: "string" },
        ),
        (
            "{ingress: {from: []}}",
            "spec.ingress",
            Problem::WrongType { expected: "a list", found: "map" },
        ),
        (
            "{ingress: [{from: [default]}]}",
            "spec.ingress[0].from[0]",
            Problem::WrongType { expected: "a map", found: "string" },
        ),
        (
            "{ingress: [{from: [{podSelector: {matchLabels: {a: 1}}}]}]}",
            "spec.ingress[0].from[0].podSelector.matchLabels.a",
            Problem::WrongType { expected: "a string", found: "number" },
        ),
        ("{ingress: [{from: [{}]}]}", "spec.ingress[0].from[0]", Problem::EmptyPeer),
        (
            "{ingress: [{from: [{podSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]}",
            "spec.ingress[0].from[0].ipBlock",
            Problem::PeerConflict,
        ),
        ("{policyTypes: [Ingress, Both]}", "spec.policyTypes[1]", Problem::PolicyType("Both".into())),
        // Rules of an unlisted direction are still validated.
        ("{policyTypes: [Ingress], egress: [{ports: [{port: 0}]}]}", "spec.egress[0].ports[0].port", Problem::PortOutOfRange("0".into())),
        ("spec-as-a-string", "spec", Problem::WrongType { expected: "a map", found: "string" }),
    ]
}

#[test]
fn invalid_policies_are_rejected_naming_the_field() {
    for (spec, field, problem) in invalid_cases() {
        let mut compiler = Compiler::new(Settings::default());
        let text = format!(
            "{{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {{name: bad, namespace: ns}}, spec: {spec}}}"
        );
        let err = reject(&mut compiler, &text);
        let message = err.to_string();
        assert!(message.contains(field), "{spec}: {message}");
        assert!(message.contains("NetworkPolicy.networking.k8s.io ns/bad"), "{message}");
        assert_eq!(err.field(), Some(field), "{spec}");
        match err {
            DialectError::Invalid { problem: p, .. } => assert_eq!(p, problem, "{spec}"),
            other => panic!("{spec}: {other}"),
        }
        assert_eq!(compiler.policies_in_force().count(), 0, "nothing half-applied: {spec}");
    }
}

#[test]
fn an_invalid_replacement_keeps_the_previous_version() {
    let mut compiler = Compiler::new(Settings::default());
    let good = "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}, \
                spec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}}";
    let first = the_policy(&apply(&mut compiler, good));
    let bad = "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}, \
               spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}}";
    reject(&mut compiler, bad);
    assert_eq!(
        compiler.policies_in_force().cloned().collect::<Vec<_>>(),
        vec![first.object.clone()]
    );
    // The store is left alone too.
    let mut store = palisade_store::Store::new();
    compiler.apply_stored(&mut store, yaml(good)).unwrap();
    assert!(compiler.apply_stored(&mut store, yaml(bad)).is_err());
    let key = ObjectKey::new("networking.k8s.io", "NetworkPolicy", Some("default"), "p");
    assert_eq!(store.get(&key).unwrap()["spec"]["ingress"][0]["ports"][0]["port"], 80);
    // Deleting withdraws the version in force.
    assert_eq!(compiler.delete(&key), vec![ModelEvent::PolicyDeleted(first.object)]);
    assert!(compiler.delete(&key).is_empty(), "second delete: nothing left");
}

#[test]
fn v1_and_beta_objects_of_one_name_are_different_policies() {
    let mut compiler =
        Compiler::new(Settings { beta_rule: crate::BetaRule::V1, ..Settings::default() });
    let v1 = the_policy(&apply(
        &mut compiler,
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}, spec: {podSelector: {}}}",
    ));
    let beta = the_policy(&apply(
        &mut compiler,
        "{apiVersion: extensions/v1beta1, kind: NetworkPolicy, metadata: {name: p}, spec: {podSelector: {}}}",
    ));
    assert_ne!(v1.object, beta.object);
    assert_eq!(beta.object.kind, "extensions/v1beta1 NetworkPolicy");
    assert_eq!(compiler.policies_in_force().count(), 2);
    let events =
        compiler.delete(&ObjectKey::new("extensions", "NetworkPolicy", Some("default"), "p"));
    assert_eq!(policy_events(&events), ["-extensions/v1beta1 NetworkPolicy default/p"]);
}

#[test]
fn unsupported_kinds_are_reported_not_fatal() {
    let mut compiler = Compiler::new(Settings::default());
    for text in [
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: x}}",
        "{apiVersion: networking.k8s.io/v1beta1, kind: NetworkPolicy, metadata: {name: p}}",
        "{apiVersion: v1, kind: Service, metadata: {name: s}}",
    ] {
        let err = reject(&mut compiler, text);
        assert!(err.is_unsupported_kind(), "{err}");
        assert!(err.object().is_some());
    }
    let err = reject(
        &mut compiler,
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: x}}",
    );
    assert_eq!(
        err.to_string(),
        "Deployment.apps x/d: unsupported kind `Deployment` of apiVersion `apps/v1`"
    );
    // An object without a name cannot even be keyed.
    let err = reject(&mut compiler, "{apiVersion: v1, kind: Pod, metadata: {namespace: x}}");
    assert!(err.to_string().contains("metadata.name"), "{err}");
}

#[test]
fn ipv6_blocks_and_host_bits() {
    let mut compiler = Compiler::new(Settings::default());
    let p = the_policy(&apply(
        &mut compiler,
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}, spec: {podSelector: {}, \
          policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 'fd00::1/64', except: ['fd00::/120']}}]}]}}",
    ));
    let PeerSelector::IpBlock { cidr, except } = &p.egress.unwrap()[0].peers[0] else { panic!() };
    assert_eq!(cidr.to_string(), "fd00::/64");
    assert_eq!(except[0].to_string(), "fd00::/120");
}
