//! Calico v3 objects. Expectations written from the semantics notes
//! (Calico's own code): types defaulting, selector composition, tiers,
//! rule sides, and the rejections.

use palisade_model::calico_selector::Selector;
use palisade_model::policy::{CalicoPeer, NamespaceScope, Order, PeerSelector, PodSet, TierRank};
use palisade_model::{Action, Cidr, ModelEvent, Protocol};

use super::*;
use crate::{Problem, Settings};

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap()
}

fn compiler() -> Compiler {
    Compiler::new(Settings::default())
}

fn problem(e: &DialectError) -> &Problem {
    match e {
        DialectError::Invalid { problem, .. } => problem,
        other => panic!("not an invalid field: {other}"),
    }
}

const NP: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  order: 10
  selector: app == 'db'
  serviceAccountSelector: role == 'backend'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'api'
      notNets: [10.9.0.0/16]
    destination:
      ports: [5432, '6000:6010', metrics]
  - action: Deny
    source: {nets: [192.0.2.0/24, 198.51.100.7]}
"#;

#[test]
fn a_namespaced_policy_lands_in_the_model() {
    let p = the_policy(&apply(&mut compiler(), NP));
    assert_eq!(p.object, policy_ref("projectcalico.org/v3 NetworkPolicy", "prod", "db"));
    assert_eq!(p.tier, TierRank::NetworkPolicy, "the default tier");
    assert_eq!(p.order, Some(Order(10.0)));
    assert_eq!(
        p.subject,
        PodSet {
            namespaces: NamespaceScope::Named("prod".into()),
            calico: Some(sel("app == 'db' && pcsa.role == 'backend'")),
            ..PodSet::default()
        }
    );
    assert!(p.egress.is_none(), "ingress rules only: types [Ingress]");
    let rules = p.ingress.unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].action, Action::Allow);
    assert_eq!(rules[0].label, "ingress[0]");
    let PeerSelector::Calico(peer) = &rules[0].peers[0] else { panic!("{:?}", rules[0].peers) };
    assert_eq!(
        **peer,
        CalicoPeer {
            nets: None,
            not_nets: vec!["10.9.0.0/16".parse().unwrap()],
            // A rule selector of a namespaced policy: its own namespace,
            // pods and network sets.
            selector: Some(PodSet {
                namespaces: NamespaceScope::Named("prod".into()),
                calico: Some(sel("app == 'api'")),
                network_sets: true,
                ..PodSet::default()
            }),
            not_selector: None,
            ip_version: None,
        }
    );
    assert_eq!(
        rules[0].ports,
        vec![
            tcp(5432, 5432),
            tcp(6000, 6010),
            PortSelector::Named { protocol: Protocol::Tcp, name: "metrics".into() }
        ]
    );
    assert!(rules[0].local.is_none(), "destination ports are no local condition");
    assert_eq!(rules[1].action, Action::Deny);
    let PeerSelector::Calico(peer) = &rules[1].peers[0] else { panic!() };
    let nets: Vec<Cidr> = vec!["192.0.2.0/24".parse().unwrap(), "198.51.100.7/32".parse().unwrap()];
    assert_eq!(peer.nets, Some(nets), "a bare address is one host");
    assert!(rules[1].ports.is_empty(), "no protocol, no ports: everything");
}

#[test]
fn types_default_from_the_rules() {
    let types = |spec: &str| {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: t}}\nspec: {spec}\n"
        );
        let p = the_policy(&apply(&mut compiler(), &text));
        (p.ingress.is_some(), p.egress.is_some())
    };
    assert_eq!(types("{}"), (true, false), "no rules: [Ingress]");
    assert_eq!(types("{egress: [{action: Allow}]}"), (false, true), "egress only: [Egress]");
    assert_eq!(types("{ingress: [{action: Allow}]}"), (true, false));
    assert_eq!(types("{ingress: [{action: Allow}], egress: [{action: Allow}]}"), (true, true));
    assert_eq!(types("{types: [Egress]}"), (false, true));
    assert_eq!(types("{types: [Ingress, Egress]}"), (true, true), "both, with no rules");
}

#[test]
fn a_global_policy_reads_namespace_and_account_labels_through_the_inherited_ones() {
    let text = r#"
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: has(app)
  namespaceSelector: team == 'a'
  egress:
  - action: Allow
    destination:
      namespaceSelector: all()
      serviceAccounts: {names: [api, web], selector: tier == 'x'}
"#;
    let p = the_policy(&apply(&mut compiler(), text));
    assert_eq!(
        p.object.kind, "projectcalico.org/v3 GlobalNetworkPolicy",
        "the CRD is the same kind"
    );
    assert_eq!(p.subject.namespaces, NamespaceScope::default());
    assert_eq!(p.subject.calico, Some(sel("has(app) && pcns.team == 'a'")));
    let rules = p.egress.unwrap();
    let PeerSelector::Calico(peer) = &rules[0].peers[0] else { panic!() };
    let positive = peer.selector.as_ref().unwrap();
    assert_eq!(
        positive.namespaces,
        NamespaceScope::default(),
        "a namespaceSelector replaces the scope"
    );
    assert_eq!(
        positive.calico,
        Some(sel(
            "projectcalico.org/serviceaccount in {'api', 'web'} && pcsa.tier == 'x' && has(projectcalico.org/namespace)"
        ))
    );
}

#[test]
fn a_not_selector_alone_is_scoped_in_a_namespaced_policy_only() {
    let rule = "ingress: [{action: Allow, source: {notSelector: app == 'x'}}]";
    let np = format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: n, namespace: a}}\nspec: {{{rule}}}\n"
    );
    let gnp = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: n}}\nspec: {{{rule}}}\n"
    );
    let peer = |text: &str| {
        let p = the_policy(&apply(&mut compiler(), text));
        let PeerSelector::Calico(peer) = p.ingress.unwrap()[0].peers[0].clone() else { panic!() };
        peer
    };
    let scoped = peer(&np);
    let positive = scoped.selector.unwrap();
    assert_eq!(positive.namespaces, NamespaceScope::Named("a".into()));
    assert_eq!(positive.calico, Some(Selector::All));
    assert_eq!(scoped.not_selector.unwrap().namespaces, NamespaceScope::default(), "never scoped");
    let global = peer(&gnp);
    assert!(global.selector.is_none(), "unknown addresses still match a notSelector");
}

#[test]
fn the_local_side_becomes_a_condition_on_the_endpoint() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: l, namespace: a}
spec:
  ingress:
  - action: Allow
    destination: {selector: role == 'x', notNets: [10.0.0.0/8]}
  egress:
  - action: Deny
    source: {nets: [10.1.0.0/16]}
    destination: {nets: [0.0.0.0/0]}
"#;
    let p = the_policy(&apply(&mut compiler(), text));
    let ingress = &p.ingress.unwrap()[0];
    assert_eq!(ingress.peers, vec![PeerSelector::Any]);
    let local = ingress.local.as_ref().unwrap();
    assert!(local.selector.is_some());
    assert_eq!(local.not_nets, vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
    let egress = &p.egress.unwrap()[0];
    assert_eq!(egress.local.as_ref().unwrap().nets, Some(vec!["10.1.0.0/16".parse().unwrap()]));
    let PeerSelector::Calico(remote) = &egress.peers[0] else { panic!() };
    assert_eq!(remote.nets, Some(vec!["0.0.0.0/0".parse().unwrap()]));
}

#[test]
fn ports_minus_not_ports_and_names_without_a_protocol() {
    let rules = |rule: &str| {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{ingress: [{rule}]}}\n"
        );
        the_policy(&apply(&mut compiler(), &text)).ingress.unwrap()
    };
    let r = rules("{action: Allow, protocol: UDP, destination: {notPorts: [53, '100:65535']}}");
    assert_eq!(
        r[0].ports,
        vec![
            PortSelector::Range { protocol: Protocol::Udp, first: 1, last: 52 },
            PortSelector::Range { protocol: Protocol::Udp, first: 54, last: 99 }
        ]
    );
    let r = rules("{action: Allow, protocol: 6, destination: {ports: [80], notPorts: [80]}}");
    assert!(r.is_empty(), "nothing left: the rule never matches, and is dropped");
    let r = rules("{action: Allow, destination: {ports: [web]}}");
    let named: Vec<_> = r[0]
        .ports
        .iter()
        .map(|p| match p {
            PortSelector::Named { protocol, name } => (*protocol, name.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        named,
        vec![(Protocol::Tcp, "web"), (Protocol::Udp, "web"), (Protocol::Sctp, "web")]
    );
    let r = rules("{action: Allow, protocol: sctp}");
    assert_eq!(
        r[0].ports,
        vec![PortSelector::Range { protocol: Protocol::Sctp, first: 1, last: 65535 }]
    );
}

#[test]
fn tiers_rank_their_policies_and_follow_their_changes() {
    let mut c = compiler();
    let policy = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {tier: security, ingress: [{action: Pass}]}\n";
    let e = reject(&mut c, policy);
    assert_eq!(e.field(), Some("spec.tier"));
    assert!(e.to_string().contains("tier `security` does not exist"), "{e}");

    apply(&mut c, "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n");
    let p = the_policy(&apply(&mut c, policy));
    assert_eq!(
        p.tier,
        TierRank::Calico { order: Some(Order(100.0)), name: "security".into(), pass: false }
    );
    assert_eq!(p.ingress.unwrap()[0].action, Action::Pass);

    // The tier changes: its policy is emitted again with the new rank.
    let changed = apply(
        &mut c,
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 5, defaultAction: Pass}\n",
    );
    let p = the_policy(&changed);
    assert_eq!(
        p.tier,
        TierRank::Calico { order: Some(Order(5.0)), name: "security".into(), pass: true }
    );

    // A tier in use is not deleted.
    let key = palisade_store::ObjectKey::new("projectcalico.org", "Tier", None, "security");
    assert!(c.delete(&key).is_empty());
    let p = the_policy(&apply(&mut c, policy));
    assert!(matches!(p.tier, TierRank::Calico { .. }), "the tier stayed");
    let pkey = palisade_store::ObjectKey::new("projectcalico.org", "NetworkPolicy", Some("a"), "p");
    assert_eq!(policy_events(&c.delete(&pkey)), vec!["-projectcalico.org/v3 NetworkPolicy a/p"]);
    c.delete(&key);
    let e = reject(&mut c, policy);
    assert_eq!(e.field(), Some("spec.tier"), "gone once unused");
}

#[test]
fn tiers_sort_by_order_with_the_default_tier_at_one_million() {
    let tier = |order: Option<f64>, name: &str| TierRank::Calico {
        order: order.map(Order),
        name: name.into(),
        pass: false,
    };
    let mut ranks = [
        TierRank::Baseline,
        tier(None, "a-unordered"),
        TierRank::NetworkPolicy,
        tier(Some(2_000_000.0), "late"),
        tier(Some(100.0), "b"),
        tier(Some(100.0), "a"),
        TierRank::Admin { priority: 3 },
    ];
    ranks.sort();
    let names: Vec<String> = ranks
        .iter()
        .map(|r| match r {
            TierRank::Calico { name, .. } => name.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        vec!["Admin { priority: 3 }", "a", "b", "NetworkPolicy", "late", "a-unordered", "Baseline"]
    );
}

#[test]
fn network_sets_and_service_accounts_become_model_objects() {
    let mut c = compiler();
    let set = apply(
        &mut c,
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: ext, namespace: a, labels: {role: db}}\nspec: {nets: [10.1.0.0/16, 10.1.2.0/24]}\n",
    );
    let ModelEvent::NetworkSetUpserted(s) = &set.events[0] else { panic!("{:?}", set.events) };
    assert_eq!(s.namespace.as_deref(), Some("a"));
    assert_eq!(s.nets, vec!["10.1.0.0/16".parse::<Cidr>().unwrap()], "normalized");
    let global = apply(
        &mut c,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: g, namespace: ignored}\nspec: {nets: ['2001:db8::/32']}\n",
    );
    let ModelEvent::NetworkSetUpserted(g) = &global.events[0] else { panic!() };
    assert_eq!(g.namespace, None, "cluster-scoped");
    let sa = apply(&mut c, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: a, labels: {tier: x}}\n");
    let ModelEvent::ServiceAccountUpserted(a) = &sa.events[0] else { panic!() };
    assert_eq!(a.labels, labels(&[("tier", "x")]));
    let key = palisade_store::ObjectKey::new("", "ServiceAccount", Some("a"), "api");
    assert_eq!(
        c.delete(&key),
        vec![ModelEvent::ServiceAccountDeleted { namespace: "a".into(), name: "api".into() }]
    );
}

#[test]
fn staged_policies_are_validated_and_not_enforced() {
    let mut c = compiler();
    let ok = apply(&mut c, "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: s, namespace: a}\nspec: {selector: all(), ingress: [{action: Deny}]}\n");
    assert!(ok.events.is_empty());
    assert!(ok.warnings[0].message.contains("not enforced"), "{:?}", ok.warnings);
    let knp = apply(&mut c, "apiVersion: projectcalico.org/v3\nkind: StagedKubernetesNetworkPolicy\nmetadata: {name: k, namespace: a}\nspec: {podSelector: {}}\n");
    assert!(knp.events.is_empty());
    let e = reject(&mut c, "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: s}\nspec: {selector: 'a =='}\n");
    assert_eq!(e.field(), Some("spec.selector"));
}

#[test]
fn bad_input_names_the_field() {
    let spec = |s: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: bad}}\nspec: {s}\n")
    };
    let cases: &[(&str, &str, &str)] = &[
        ("{selector: \"app == 'a' &&\"}", "spec.selector", "column 14"),
        ("{ingress: [{action: Accept}]}", "spec.ingress[0].action", "Allow, Deny, Pass or Log"),
        ("{ingress: [{}]}", "spec.ingress[0].action", "required"),
        (
            "{ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]}",
            "spec.ingress[0].destination.ports[0]",
            "above its end",
        ),
        (
            "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]}",
            "spec.ingress[0].destination.ports[0]",
            "outside 1-65535",
        ),
        (
            "{ingress: [{action: Allow, destination: {ports: [80]}}]}",
            "spec.ingress[0].destination.ports",
            "need the rule's protocol",
        ),
        (
            "{ingress: [{action: Allow, http: {methods: [GET]}}]}",
            "spec.ingress[0].http",
            "application layer",
        ),
        ("{ingress: [{action: Allow, protocol: ICMP}]}", "spec.ingress[0].protocol", "0.2.0"),
        ("{ingress: [{action: Allow, notProtocol: TCP}]}", "spec.ingress[0].notProtocol", "0.2.0"),
        (
            "{ingress: [{action: Allow, protocol: TCP, source: {ports: [80]}}]}",
            "spec.ingress[0].source.ports",
            "source port",
        ),
        (
            "{ingress: [{action: Allow, source: {selecter: all()}}]}",
            "spec.ingress[0].source.selecter",
            "unknown field",
        ),
        (
            "{ingress: [{action: Allow, protocol: TCP, destination: {notPorts: [web]}}]}",
            "spec.ingress[0].destination.notPorts",
            "named ports in notPorts",
        ),
        ("{order: NaN}", "spec.order", "finite"),
        ("{types: [Both]}", "spec.types[0]", "Ingress or Egress"),
        ("{types: [Egress], ingress: [{action: Allow}]}", "spec.ingress", "need Ingress"),
        ("{ingress: [{action: Allow, ipVersion: 5}]}", "spec.ingress[0].ipVersion", "4 or 6"),
        (
            "{ingress: [{action: Allow, source: {nets: [10.0.0.0/33]}}]}",
            "spec.ingress[0].source.nets[0]",
            "CIDR",
        ),
        ("{doNotTrack: true}", "spec.doNotTrack", "host endpoints"),
        (
            "{egress: [{action: Allow, destination: {notSelector: has(x), ports: [web]}}]}",
            "spec.egress[0].destination.notSelector",
            "not resolved yet",
        ),
    ];
    for (s, field, says) in cases {
        let e = reject(&mut compiler(), &spec(s));
        assert_eq!(e.field(), Some(*field), "{s}: {e}");
        assert!(e.to_string().contains(says), "{s}: {e}");
    }
    let e = reject(&mut compiler(), "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n, namespace: a}\nspec: {namespaceSelector: all()}\n");
    assert!(matches!(problem(&e), Problem::Conflict(_)), "{e}");
    let e = reject(&mut compiler(), "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Allow}\n");
    assert_eq!(e.field(), Some("spec.defaultAction"));
}

#[test]
fn a_rejected_replacement_keeps_the_previous_version() {
    let mut c = compiler();
    apply(&mut c, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: [{action: Deny}]}\n");
    reject(&mut c, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {ingress: [{action: Nope}]}\n");
    let in_force: Vec<_> = c.policies_in_force().map(|o| o.name.clone()).collect();
    assert_eq!(in_force, vec!["g"]);
}
