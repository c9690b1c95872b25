use palisade_model::policy::{PeerSelector, PortSelector};
use palisade_model::{Action, Protocol};
use palisade_store::ObjectKey;

use super::*;
use crate::Settings;

const EXP: &str = "experimental.kubernetes.io/v1 NetworkPolicy";

fn isolation(ns: &str, value: &str) -> String {
    format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: {ns}}}, spec: {{isolation: {value}}}}}")
}

const PROPOSAL: &str = r#"
apiVersion: experimental.kubernetes.io/v1
kind: NetworkPolicy
metadata: {name: database-policy, namespace: isolated-app}
spec:
  selector: {tier: database}
  allowFrom:
    - namespaces: {foo: bar}
    - pods: {tier: database}
      protocol: TCP
      ports: [4001]
    - namespaces: {foo: bar}
      pods: {role: client}
      protocol: udp
    - ports: [{port: 53, protocol: UDP}, 80]
"#;

const DEMO: &str = r#"
apiVersion: experimental.kubernetes.io/v1
kind: NetworkPolicy
metadata: {name: awesome-policy, namespace: default}
selector: {tier: database}
allowIncoming:
  pods: [{tier: database}]
  ports: [{protocol: TCP, port: 4001}]
  namespaces: [{foo: bar}]
"#;

#[test]
fn proposal_form_entries_are_rules_of_their_own() {
    let mut compiler = Compiler::new(Settings::default());
    compiler.apply(&yaml(&isolation("isolated-app", "'yes'"))).unwrap();
    let compiled = apply(&mut compiler, PROPOSAL);
    let p = the_policy(&compiled);
    assert_eq!(p.object, policy_ref(EXP, "isolated-app", "database-policy"));
    assert_eq!(p.subject.pods, match_labels(&[("tier", "database")]));
    assert_eq!(p.egress, None, "egress is never restricted");
    let rules = p.ingress.unwrap();
    let labels: Vec<&str> = rules.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["allowFrom[0]", "allowFrom[1]", "allowFrom[2]", "allowFrom[3]"]);
    assert!(rules.iter().all(|r| r.action == Action::Allow));
    // namespaces alone: every pod of the matching namespaces, every port.
    assert_eq!(
        rules[0].peers,
        vec![pods_where(match_labels(&[("foo", "bar")]), LabelSelector::everything())]
    );
    assert!(rules[0].ports.is_empty());
    // pods alone: the policy's namespace; protocol + ports.
    assert_eq!(
        rules[1].peers,
        vec![pods_in("isolated-app", match_labels(&[("tier", "database")]))]
    );
    assert_eq!(rules[1].ports, vec![tcp(4001, 4001)]);
    // both: AND; a protocol without ports is every port of it (any case, warned).
    assert_eq!(
        rules[2].peers,
        vec![pods_where(match_labels(&[("foo", "bar")]), match_labels(&[("role", "client")]))]
    );
    assert_eq!(
        rules[2].ports,
        vec![PortSelector::Range { protocol: Protocol::Udp, first: 1, last: 65535 }]
    );
    assert_eq!(compiled.warnings.len(), 1);
    assert!(compiled.warnings[0].field.ends_with("allowFrom[2].protocol"));
    // no source: from anywhere; map and bare-number ports (TCP by default).
    assert_eq!(rules[3].peers, vec![PeerSelector::Any]);
    assert_eq!(
        rules[3].ports,
        vec![PortSelector::Range { protocol: Protocol::Udp, first: 53, last: 53 }, tcp(80, 80)]
    );
}

#[test]
fn demo_form_allows_any_listed_source_on_any_listed_port() {
    let mut compiler = Compiler::new(Settings::default());
    compiler.apply(&yaml(&isolation("default", "'yes'"))).unwrap();
    let p = the_policy(&apply(&mut compiler, DEMO));
    assert_eq!(p.object, policy_ref(EXP, "default", "awesome-policy"));
    assert_eq!(p.subject.pods, match_labels(&[("tier", "database")]));
    let rules = p.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].label, "allowIncoming");
    assert_eq!(
        rules[0].peers,
        vec![
            pods_in("default", match_labels(&[("tier", "database")])),
            pods_where(match_labels(&[("foo", "bar")]), LabelSelector::everything()),
        ]
    );
    assert_eq!(rules[0].ports, vec![tcp(4001, 4001)]);
}

#[test]
fn policies_follow_namespace_isolation() {
    let mut compiler = Compiler::new(Settings::default());
    // Policy first, namespace unknown: kept, not in force.
    assert!(policy_events(&apply(&mut compiler, DEMO).events).is_empty());
    // Isolation on: the namespace's isolation policy and the 2016 policy.
    let on = compiler.apply(&yaml(&isolation("default", "'yes'"))).unwrap();
    assert_eq!(
        policy_events(&on.events),
        ["+v1 Namespace default/default:spec.isolation", &format!("+{EXP} default/awesome-policy")]
    );
    let iso = crate::experimental::isolation_policy("default");
    assert!(on.events.contains(&ModelEvent::PolicyUpserted(iso.clone())));
    assert_eq!(iso.subject.pods, LabelSelector::everything());
    let rules = iso.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].peers, vec![PeerSelector::Nodes]);
    assert_eq!(rules[0].label, "node-exemption");
    assert!(rules[0].ports.is_empty());
    assert_eq!(iso.egress, None);
    // Off again: both withdrawn, the policy is kept.
    let off = compiler.apply(&yaml(&isolation("default", "'no'"))).unwrap();
    assert_eq!(
        policy_events(&off.events),
        ["-v1 Namespace default/default:spec.isolation", &format!("-{EXP} default/awesome-policy")]
    );
    // YAML booleans work as well; the kept policy comes back.
    let on = compiler.apply(&yaml(&isolation("default", "true"))).unwrap();
    assert_eq!(policy_events(&on.events).len(), 2);
    let events = compiler.delete(&ObjectKey::new(
        "experimental.kubernetes.io",
        "NetworkPolicy",
        Some("default"),
        "awesome-policy",
    ));
    assert_eq!(policy_events(&events), [format!("-{EXP} default/awesome-policy")]);
}

#[test]
fn isolation_values() {
    // (spec.isolation as YAML, isolated?, warned?)
    let cases = [
        ("'yes'", true, false),
        ("'YES'", true, false),
        ("yes", true, false), // a string in YAML 1.2
        ("true", true, false),
        ("'on'", true, false),
        ("'no'", false, false),
        ("false", false, false),
        ("'maybe'", false, true),
        ("1", false, true),
    ];
    for (value, isolated, warned) in cases {
        let mut compiler = Compiler::new(Settings::default());
        let compiled = compiler.apply(&yaml(&isolation("n", value))).unwrap();
        assert_eq!(!policy_events(&compiled.events).is_empty(), isolated, "{value}");
        assert_eq!(!compiled.warnings.is_empty(), warned, "{value}");
    }
}

#[test]
fn isolation_and_default_deny_coexist() {
    let mut compiler = Compiler::new(Settings::default());
    let compiled = compiler
        .apply(&yaml(
            r#"{apiVersion: v1, kind: Namespace, metadata: {name: n, annotations: {net.beta.kubernetes.io/network-policy: '{"ingress": {"isolation": "DefaultDeny"}}'}}, spec: {isolation: 'yes'}}"#,
        ))
        .unwrap();
    assert_eq!(
        policy_events(&compiled.events),
        ["+v1 Namespace n/n", "+v1 Namespace n/n:spec.isolation"]
    );
}

#[test]
fn invalid_2016_policies_name_the_field() {
    // (policy body after metadata, field)
    let cases = [
        ("spec: {selector: {tier: 1}}", "spec.selector.tier"),
        ("spec: {allowFrom: {pods: {}}}", "spec.allowFrom"),
        ("spec: {allowFrom: [{pods: {a: b}}, {pods: x}]}", "spec.allowFrom[1].pods"),
        ("spec: {allowFrom: [{ports: [0]}]}", "spec.allowFrom[0].ports[0]"),
        ("spec: {allowFrom: [{protocol: ICMP}]}", "spec.allowFrom[0].protocol"),
        ("allowIncoming: {namespaces: [{a: b}, []]}", "allowIncoming.namespaces[1]"),
        ("allowIncoming: {ports: [{protocol: TCP, port: 70000}]}", "allowIncoming.ports[0].port"),
        ("selector: [a]", "selector"),
    ];
    for (body, field) in cases {
        let mut compiler = Compiler::new(Settings::default());
        let text = format!(
            "{{apiVersion: experimental.kubernetes.io/v1, kind: NetworkPolicy, metadata: {{name: p}}, {body}}}"
        );
        let err = reject(&mut compiler, &text);
        assert_eq!(err.field(), Some(field), "{body}: {err}");
        assert!(err.to_string().contains(field));
    }
}
