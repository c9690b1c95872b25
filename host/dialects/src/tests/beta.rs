use palisade_model::policy::PodSet;
use palisade_model::{ModelEvent, Protocol};
use palisade_store::ObjectKey;

use super::*;
use crate::{BetaRule, Settings};

const DENY: &str = r#"{"ingress": {"isolation": "DefaultDeny"}}"#;

fn namespace(name: &str, annotations: &[(&str, &str)]) -> Value {
    let mut ns = yaml(&format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: {name}}}}}"));
    if !annotations.is_empty() {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        ns["metadata"]["annotations"] = Value::Object(map);
    }
    ns
}

const BETA_POLICY: &str = r#"
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: test-network-policy, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {project: myproject}}
        - podSelector: {matchLabels: {role: frontend}}
      ports:
        - protocol: tcp
          port: 6379
"#;

const BETA: &str = "extensions/v1beta1 NetworkPolicy";

#[test]
fn lower_case_protocols_are_accepted_with_a_warning() {
    let mut compiler = Compiler::new(Settings { beta_rule: BetaRule::V1, ..Settings::default() });
    let compiled = apply(&mut compiler, BETA_POLICY);
    let p = the_policy(&compiled);
    assert_eq!(p.object, policy_ref(BETA, "default", "test-network-policy"));
    let rule = &p.ingress.unwrap()[0];
    assert_eq!(rule.ports, vec![tcp(6379, 6379)]);
    assert_eq!(
        rule.peers,
        vec![
            pods_where(match_labels(&[("project", "myproject")]), LabelSelector::everything()),
            pods_in("default", match_labels(&[("role", "frontend")])),
        ]
    );
    assert_eq!(compiled.warnings.len(), 1);
    let warning = compiled.warnings[0].to_string();
    assert!(warning.contains("spec.ingress[0].ports[0].protocol"), "{warning}");
    assert!(warning.contains("default/test-network-policy"), "{warning}");
    // Still no ICMP.
    let err = reject(&mut compiler, &BETA_POLICY.replace("tcp", "icmp"));
    assert_eq!(err.field(), Some("spec.ingress[0].ports[0].protocol"));
}

#[test]
fn beta_rule_policies_wait_for_default_deny() {
    let mut compiler = Compiler::new(Settings::default());
    assert_eq!(compiler.settings().beta_rule, BetaRule::Beta, "beta is the default");
    // A namespace without the annotation: the policy is kept but not in force.
    let events = compiler.apply(&namespace("default", &[])).unwrap().events;
    assert!(policy_events(&events).is_empty());
    assert!(policy_events(&apply(&mut compiler, BETA_POLICY).events).is_empty());
    // The annotation appears: the implicit deny policy and the beta policy.
    let compiled = compiler
        .apply(&namespace("default", &[("net.beta.kubernetes.io/network-policy", DENY)]))
        .unwrap();
    assert!(
        matches!(&compiled.events[0], ModelEvent::NamespaceUpserted(ns) if ns.name == "default")
    );
    assert_eq!(
        policy_events(&compiled.events),
        [
            "+v1 Namespace default/default",
            "+extensions/v1beta1 NetworkPolicy default/test-network-policy"
        ]
    );
    let deny = compiled
        .events
        .iter()
        .find_map(|e| match e {
            ModelEvent::PolicyUpserted(p) if p.object.kind == "v1 Namespace" => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(deny, crate::v1beta1::annotation_policy("default"));
    assert_eq!(
        deny.subject,
        PodSet {
            namespaces: NamespaceScope::Named("default".into()),
            pods: LabelSelector::everything(),
            ..PodSet::default()
        }
    );
    assert_eq!(deny.ingress, Some(vec![]));
    assert_eq!(deny.egress, None);
    // Re-applying the same namespace changes nothing in force.
    let again = compiler
        .apply(&namespace("default", &[("net.beta.kubernetes.io/network-policy", DENY)]))
        .unwrap();
    assert!(policy_events(&again.events).is_empty());
    // A replaced policy in an annotated namespace is upserted at once.
    let replaced = apply(&mut compiler, &BETA_POLICY.replace("6379", "6380"));
    assert_eq!(the_policy(&replaced).ingress.unwrap()[0].ports, vec![tcp(6380, 6380)]);
    // The annotation goes away: both withdrawn.
    let events = compiler.apply(&namespace("default", &[])).unwrap().events;
    assert_eq!(
        policy_events(&events),
        [
            "-v1 Namespace default/default",
            "-extensions/v1beta1 NetworkPolicy default/test-network-policy"
        ]
    );
    assert_eq!(compiler.policies_in_force().count(), 0);
    // Deleting a policy not in force emits nothing.
    let key = ObjectKey::new("extensions", "NetworkPolicy", Some("default"), "test-network-policy");
    assert!(compiler.delete(&key).is_empty());
}

#[test]
fn v1_networkpolicies_ignore_the_beta_rule() {
    let mut compiler = Compiler::new(Settings::default());
    let p = apply(
        &mut compiler,
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: plain}, spec: {podSelector: {}}}",
    );
    assert_eq!(policy_events(&p.events), ["+networking.k8s.io/v1 NetworkPolicy plain/p"]);
}

#[test]
fn v1_rule_keeps_beta_policies_in_force_everywhere() {
    let mut compiler = Compiler::new(Settings { beta_rule: BetaRule::V1, ..Settings::default() });
    compiler.apply(&namespace("default", &[])).unwrap();
    assert_eq!(
        policy_events(&apply(&mut compiler, BETA_POLICY).events),
        ["+extensions/v1beta1 NetworkPolicy default/test-network-policy"]
    );
    // The annotation still isolates (implicit policy) but does not gate.
    let events = compiler
        .apply(&namespace("default", &[("net.beta.kubernetes.io/network-policy", DENY)]))
        .unwrap()
        .events;
    assert_eq!(policy_events(&events), ["+v1 Namespace default/default"]);
    let events = compiler.apply(&namespace("default", &[])).unwrap().events;
    assert_eq!(policy_events(&events), ["-v1 Namespace default/default"]);
    assert_eq!(compiler.policies_in_force().count(), 1);
}

#[test]
fn deleting_an_annotated_namespace_withdraws_its_policies() {
    let mut compiler = Compiler::new(Settings::default());
    compiler
        .apply(&namespace("default", &[("net.beta.kubernetes.io/network-policy", DENY)]))
        .unwrap();
    apply(&mut compiler, BETA_POLICY);
    let events = compiler.delete(&ObjectKey::new("", "Namespace", None, "default"));
    assert_eq!(events[0], ModelEvent::NamespaceDeleted { name: "default".into() });
    assert_eq!(
        policy_events(&events),
        [
            "-v1 Namespace default/default",
            "-extensions/v1beta1 NetworkPolicy default/test-network-policy"
        ]
    );
    assert!(compiler.delete(&ObjectKey::new("", "Namespace", None, "default")).is_empty());
}

#[test]
fn annotation_values_that_are_not_default_deny() {
    // (annotation value, isolated?, warned?)
    let cases = [
        (DENY, true, false),
        (r#"{"ingress": {"isolation": "DefaultDeny"}, "egress": {}}"#, true, false),
        (r#"{"ingress": {}}"#, false, false),
        ("{}", false, false),
        (r#"{"ingress": {"isolation": "DefaultAllow"}}"#, false, true),
        ("{ingress: DefaultDeny", false, true), // not JSON
        ("DefaultDeny", false, true),
    ];
    for (value, isolated, warned) in cases {
        let mut compiler = Compiler::new(Settings::default());
        let compiled = compiler
            .apply(&namespace("n", &[("net.beta.kubernetes.io/network-policy", value)]))
            .unwrap();
        assert_eq!(!policy_events(&compiled.events).is_empty(), isolated, "{value}");
        assert_eq!(!compiled.warnings.is_empty(), warned, "{value}");
        if warned {
            let w = compiled.warnings[0].to_string();
            assert!(
                w.contains("metadata.annotations.net.beta.kubernetes.io/network-policy"),
                "{w}"
            );
        }
    }
}

#[test]
fn romana_key_needs_the_setting() {
    let romana = [("net.beta.kubernetes.io/networkpolicy", DENY)];
    let mut plain = Compiler::new(Settings::default());
    assert!(policy_events(&plain.apply(&namespace("n", &romana)).unwrap().events).is_empty());
    let mut compat = Compiler::new(Settings { romana_annotation: true, ..Settings::default() });
    assert_eq!(
        policy_events(&compat.apply(&namespace("n", &romana)).unwrap().events),
        ["+v1 Namespace n/n"]
    );
}

#[test]
fn beta_and_v1_share_validation() {
    let mut compiler = Compiler::new(Settings::default());
    let err = reject(
        &mut compiler,
        "{apiVersion: extensions/v1beta1, kind: NetworkPolicy, metadata: {name: p}, \
          spec: {ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.0/16]}}]}]}}",
    );
    assert_eq!(err.field(), Some("spec.ingress[0].from[0].ipBlock.except[0]"));
    assert!(err.to_string().starts_with("NetworkPolicy.extensions default/p"), "{err}");
    // Mixed-case SCTP is fine too.
    let compiled = apply(
        &mut Compiler::new(Settings { beta_rule: BetaRule::V1, ..Settings::default() }),
        "{apiVersion: extensions/v1beta1, kind: NetworkPolicy, metadata: {name: p}, \
          spec: {ingress: [{ports: [{protocol: Sctp, port: 9}]}]}}",
    );
    let ports = the_policy(&compiled).ingress.unwrap()[0].ports.clone();
    assert_eq!(
        ports,
        vec![palisade_model::policy::PortSelector::Range {
            protocol: Protocol::Sctp,
            first: 9,
            last: 9
        }]
    );
}
