//! Pure tests of the JSON generation (no kernel, no capability calls).

mod common;

use common::*;
use palisade_nftables::delta::{self, Plan};
use palisade_nftables::{nft::Table, render};
use palisade_plugin_sdk::types::{
    Action, Direction, NoMatch, Peer, PolicyKey, Protocol, SetChange,
};
use serde_json::{json, Value};

fn cmds(batch: &Value) -> &Vec<Value> {
    batch["nftables"].as_array().unwrap()
}

/// Rules of one chain, as their expression lists.
fn chain_rules(batch: &Value, chain: &str) -> Vec<Value> {
    cmds(batch)
        .iter()
        .filter_map(|c| c["add"]["rule"].as_object())
        .filter(|r| r["chain"] == chain)
        .map(|r| r["expr"].clone())
        .collect()
}

fn verb_objects(batch: &Value, verb: &str, kind: &str) -> Vec<Value> {
    cmds(batch).iter().filter_map(|c| c[verb].get(kind).cloned()).collect()
}

fn names(batch: &Value, verb: &str, kind: &str) -> Vec<String> {
    verb_objects(batch, verb, kind)
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

fn full() -> Value {
    render::full(&Table::new("palisade"), &state(rule_set()))
}

#[test]
fn full_batch_is_an_atomic_replace_of_one_table() {
    let b = full();
    let c = cmds(&b);
    assert_eq!(c[0], json!({"add": {"table": {"family": "inet", "name": "palisade"}}}));
    assert_eq!(c[1], json!({"delete": {"table": {"family": "inet", "name": "palisade"}}}));
    assert_eq!(c[2], json!({"add": {"table": {"family": "inet", "name": "palisade"}}}));
    // Every object belongs to the table (what the host validates).
    for cmd in c {
        let (verb, body) = cmd.as_object().unwrap().iter().next().unwrap();
        assert!(["add", "delete"].contains(&verb.as_str()), "{cmd}");
        let (_, obj) = body.as_object().unwrap().iter().next().unwrap();
        assert_eq!(obj["family"], "inet");
        assert!(obj["table"] == "palisade" || obj["name"] == "palisade", "{cmd}");
    }
    assert!(!b.to_string().contains("ruleset"));
}

#[test]
fn layout_sets_maps_and_chains() {
    let b = full();
    let sets = names(&b, "add", "set");
    assert_eq!(sets, ["s1_4", "s1_6", "s2_4", "s2_6", "s3_4", "s3_6"]);
    let chains = names(&b, "add", "chain");
    for c in
        ["dispatch", "forward", "input", "output", "e1_in_t0", "e2_eg_t0", "e2_eg_t1", "e3_in_t0"]
    {
        assert!(chains.contains(&c.to_string()), "{c} in {chains:?}");
    }
    let maps = verb_objects(&b, "add", "map");
    let map = |n: &str| maps.iter().find(|m| m["name"] == n).unwrap().clone();
    assert_eq!(
        map("ingress4")["elem"],
        json!([["10.0.0.1", {"jump": {"target": "e1_in_t0"}}], ["10.0.0.3", {"jump": {"target": "e3_in_t0"}}]])
    );
    assert_eq!(
        map("ingress6")["elem"],
        json!([["fd00::1", {"jump": {"target": "e1_in_t0"}}], ["fd00::3", {"jump": {"target": "e3_in_t0"}}]])
    );
    assert_eq!(map("egress4")["elem"], json!([["10.0.0.2", {"jump": {"target": "e2_eg_t0"}}]]));
    assert!(map("egress6").get("elem").is_none());
    // Base chains jump to the dispatch chain; it accepts replies first.
    for hook in ["forward", "input", "output"] {
        assert_eq!(chain_rules(&b, hook), vec![json!([{"jump": {"target": "dispatch"}}])]);
    }
    let p = chain_rules(&b, "dispatch");
    assert_eq!(p[0][1], json!({"accept": null}));
    assert_eq!(p[0][0]["match"]["right"], json!(["established", "related"]));
    assert_eq!(p.len(), 5);
    assert_eq!(p[1][0]["vmap"]["data"], "@egress4");
    assert_eq!(p[4][0]["vmap"]["data"], "@ingress6");
    let s1 = verb_objects(&b, "add", "set").into_iter().find(|s| s["name"] == "s1_4").unwrap();
    assert_eq!(s1["flags"], json!(["interval"]));
    assert_eq!(
        s1["elem"],
        json!([{"prefix": {"addr": "10.0.0.0", "len": 29}}, {"prefix": {"addr": "192.168.0.0", "len": 16}}])
    );
}

#[test]
fn ingress_rules_per_family_and_protocol_with_log_and_deny() {
    let b = full();
    let r = chain_rules(&b, "e1_in_t0");
    // allow from set 1: 2 families x 3 port ranges (one rule each, no
    // anonymous sets); log sctp: 1; tier end: drop.
    assert_eq!(r.len(), 8, "{r:#?}");
    assert_eq!(r[0][0]["match"]["left"]["payload"], json!({"protocol": "ip", "field": "saddr"}));
    assert_eq!(r[0][0]["match"]["right"], "@s1_4");
    assert_eq!(r[0][1]["match"]["right"], "tcp");
    assert_eq!(r[0][2]["match"]["right"], json!(80));
    assert_eq!(r[0][3], json!({"accept": null}));
    assert_eq!(r[1][2]["match"]["right"], json!({"range": [8000, 8010]}));
    assert_eq!(r[2][1]["match"]["right"], "udp");
    assert_eq!(r[2][2]["match"]["right"], json!(53));
    assert_eq!(r[3][0]["match"]["right"], "@s1_6");
    assert_eq!(r[6].as_array().unwrap().len(), 3);
    assert_eq!(r[6][0]["match"]["right"], "sctp");
    let prefix = r[6][2]["log"]["prefix"].as_str().unwrap();
    assert_eq!(prefix, "palisade e1 in ns/web _x_ ingress[0]: ");
    assert_eq!(r[7], json!([{"drop": null}]));
}

#[test]
fn overlapping_port_ranges_are_merged() {
    let mut rs = rule_set();
    rs.policies = vec![policy(
        1,
        Direction::Ingress,
        vec![(
            vec![R(
                Action::Allow,
                Peer::Any,
                vec![
                    (Protocol::Tcp, 80, 90),
                    (Protocol::Tcp, 85, 100),
                    (Protocol::Tcp, 101, 101),
                    (Protocol::Udp, 5, 5),
                ],
            )],
            NoMatch::NextTier,
        )],
    )];
    let b = render::full(&Table::new("palisade"), &state(rs));
    let r = chain_rules(&b, "e1_in_t0");
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0][1]["match"]["right"], json!({"range": [80, 101]}));
    assert_eq!(r[1][1]["match"]["right"], json!(5));
}

#[test]
fn egress_pass_returns_on_allow_and_chains_tiers_with_goto() {
    let b = full();
    let t0 = chain_rules(&b, "e2_eg_t0");
    // pass to set 2 (both families, every port): goto tier 1.
    assert_eq!(
        t0[0],
        json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@s2_4"}}, {"goto": {"target": "e2_eg_t1"}}])
    );
    assert_eq!(t0[2][2], json!({"drop": null}));
    assert_eq!(t0.last().unwrap(), &json!([{"goto": {"target": "e2_eg_t1"}}]));
    let t1 = chain_rules(&b, "e2_eg_t1");
    // Egress allow is `return`: the destination's ingress still runs.
    assert_eq!(t1[0][3], json!({"return": null}));
    assert_eq!(t1[1][1]["match"]["right"], "sctp");
    assert_eq!(t1.last().unwrap(), &json!([{"drop": null}]));
}

#[test]
fn pass_in_last_tier_allows_and_never_matching_rules_are_left_out() {
    let mut rs = rule_set();
    rs.policies = vec![policy(
        1,
        Direction::Egress,
        vec![(
            vec![
                R(Action::Deny, Peer::Set(99), vec![]),
                R(Action::Pass, Peer::Any, vec![(Protocol::Udp, 7, 7)]),
            ],
            NoMatch::Deny,
        )],
    )];
    // A span pointing outside the port table never matches either.
    rs.policies[0].tiers[0].rules.push(palisade_plugin_sdk::types::Rule {
        action: Action::Deny,
        peer: Peer::Any,
        ports: palisade_plugin_sdk::types::PortSpan { first: 40, count: 2 },
        origin: 0,
    });
    let b = render::full(&Table::new("palisade"), &state(rs));
    let r = chain_rules(&b, "e1_eg_t0");
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0][2], json!({"return": null}));
    assert_eq!(r[1], json!([{"drop": null}]));
}

#[test]
fn empty_policy_has_an_empty_tier_chain_and_shared_addresses_go_to_lowest_id() {
    let mut rs = rule_set();
    // e5 shares 10.0.0.1 with e1: e1 owns it.
    rs.endpoints.push(endpoint(5, &["10.0.0.1", "10.0.0.5"], &[]));
    rs.policies.push(policy(5, Direction::Ingress, vec![]));
    let b = render::full(&Table::new("palisade"), &state(rs));
    assert!(chain_rules(&b, "e5_in_t0").is_empty());
    assert!(names(&b, "add", "chain").contains(&"e5_in_t0".to_string()));
    let maps = verb_objects(&b, "add", "map");
    let in4 = &maps.iter().find(|m| m["name"] == "ingress4").unwrap()["elem"];
    assert_eq!(in4[0], json!(["10.0.0.1", {"jump": {"target": "e1_in_t0"}}]));
    assert_eq!(in4[2], json!(["10.0.0.5", {"jump": {"target": "e5_in_t0"}}]));
}

#[test]
fn prefixes_are_masked_and_covered_ones_dropped() {
    let n = render::normalize_v4(&[
        p4("10.1.2.3", 16),
        p4("10.1.9.0", 24),
        p4("10.2.0.0", 16),
        p4("10.2.0.0", 16),
    ]);
    assert_eq!(n, vec![(ip4("10.1.0.0"), 16), (ip4("10.2.0.0"), 16)]);
    let n = render::normalize_v6(&[ip6("fd00::1", 64), ip6("fd00::", 48), ip6("::", 0)]);
    assert_eq!(n, vec![(0, 0)]);
}

fn plan(d: palisade_plugin_sdk::types::Delta, threshold: usize) -> Plan {
    let t = Table::new("palisade");
    delta::plan_update(&t, &state(rule_set()), d, threshold).unwrap().1
}

fn incremental(d: palisade_plugin_sdk::types::Delta) -> Value {
    match plan(d, 1000) {
        Plan::Incremental { batch, .. } => batch,
        Plan::Full { reason } => panic!("full replace: {reason}"),
    }
}

#[test]
fn set_change_is_element_deletes_then_adds() {
    let mut d = empty_delta(1);
    d.sets_changed.push(SetChange {
        id: 1,
        add_v4: vec![p4("172.16.0.0", 12)],
        remove_v4: vec![p4("192.168.0.0", 16)],
        add_v6: vec![],
        remove_v6: vec![ip6("fd00::", 64)],
    });
    let b = incremental(d);
    assert_eq!(
        cmds(&b),
        &vec![
            json!({"delete": {"element": {"family": "inet", "table": "palisade", "name": "s1_4", "elem": [{"prefix": {"addr": "192.168.0.0", "len": 16}}]}}}),
            json!({"delete": {"element": {"family": "inet", "table": "palisade", "name": "s1_6", "elem": [{"prefix": {"addr": "fd00::", "len": 64}}]}}}),
            json!({"add": {"element": {"family": "inet", "table": "palisade", "name": "s1_4", "elem": [{"prefix": {"addr": "172.16.0.0", "len": 12}}]}}}),
        ]
    );
}

#[test]
fn policy_upsert_flushes_refills_and_deletes_surplus_tiers() {
    let mut d = empty_delta(1);
    d.policies_upserted.push(policy(
        2,
        Direction::Egress,
        vec![(vec![R(Action::Allow, Peer::Any, vec![(Protocol::Tcp, 80, 80)])], NoMatch::Deny)],
    ));
    let b = incremental(d);
    assert_eq!(names(&b, "flush", "chain"), ["e2_eg_t0"]);
    assert_eq!(names(&b, "delete", "chain"), ["e2_eg_t1"]);
    assert!(names(&b, "add", "chain").is_empty());
    assert_eq!(chain_rules(&b, "e2_eg_t0").len(), 2);
    // Nothing else: the verdict maps are unchanged.
    assert_eq!(cmds(&b).len(), 4);
}

#[test]
fn endpoint_and_policy_changes_are_verdict_map_elements_and_chains() {
    let mut d = empty_delta(1);
    // e4 gets an ingress policy with two tiers; e1 leaves; e3 changes address.
    d.policies_upserted.push(policy(
        4,
        Direction::Ingress,
        vec![
            (vec![], NoMatch::NextTier),
            (vec![R(Action::Deny, Peer::Any, vec![])], NoMatch::Deny),
        ],
    ));
    d.endpoints_removed.push(1);
    d.policies_removed.push(PolicyKey { endpoint: 1, direction: Direction::Ingress });
    d.endpoints_upserted.push(endpoint(3, &["10.0.0.33"], &["fd00::3"]));
    let b = incremental(d);
    let c = cmds(&b);
    assert_eq!(names(&b, "add", "chain"), ["e4_in_t0", "e4_in_t1"]);
    assert_eq!(names(&b, "delete", "chain"), ["e1_in_t0"]);
    let pos =
        |v: &Value| c.iter().position(|x| x == v).unwrap_or_else(|| panic!("{v} not in {c:#?}"));
    let del4 = json!({"delete": {"element": {"family": "inet", "table": "palisade", "name": "ingress4", "elem": ["10.0.0.1", "10.0.0.3"]}}});
    let del6 = json!({"delete": {"element": {"family": "inet", "table": "palisade", "name": "ingress6", "elem": ["fd00::1"]}}});
    let add4 = json!({"add": {"element": {"family": "inet", "table": "palisade", "name": "ingress4", "elem": [
        ["10.0.0.4", {"jump": {"target": "e4_in_t0"}}], ["10.0.0.33", {"jump": {"target": "e3_in_t0"}}]]}}});
    let del_chain =
        json!({"delete": {"chain": {"family": "inet", "table": "palisade", "name": "e1_in_t0"}}});
    let add_chain =
        json!({"add": {"chain": {"family": "inet", "table": "palisade", "name": "e4_in_t0"}}});
    // References stay valid inside the batch.
    assert!(pos(&add_chain) < pos(&add4));
    assert!(pos(&del4) < pos(&del_chain) && pos(&del6) < pos(&del_chain));
}

#[test]
fn removing_a_referenced_set_rewrites_its_policies_first() {
    let mut d = empty_delta(1);
    d.sets_removed.push(2);
    let b = incremental(d);
    let c = cmds(&b);
    assert_eq!(names(&b, "flush", "chain"), ["e2_eg_t0", "e2_eg_t1"]);
    assert_eq!(names(&b, "delete", "set"), ["s2_4", "s2_6"]);
    assert!(!chain_rules(&b, "e2_eg_t0").iter().any(|r| r.to_string().contains("@s2_")));
    let last_rule =
        c.iter().rposition(|x| x.get("add").and_then(|a| a.get("rule")).is_some()).unwrap();
    let first_set_del =
        c.iter().position(|x| x.get("delete").and_then(|a| a.get("set")).is_some()).unwrap();
    assert!(last_rule < first_set_del);
}

#[test]
fn large_delta_falls_back_to_full_replace_and_bad_base_is_refused() {
    let mut d = empty_delta(1);
    d.endpoints_upserted = (10..20).map(|i| endpoint(i, &["10.9.0.1"], &[])).collect();
    match plan(d, 5) {
        Plan::Full { reason } => {
            assert!(reason.contains("20 records exceeds the update threshold 5"), "{reason}")
        }
        Plan::Incremental { .. } => panic!("expected a full replace"),
    }
    let t = Table::new("palisade");
    let err = delta::plan_update(&t, &state(rule_set()), empty_delta(7), 10).err().unwrap();
    assert!(err.message.contains("does not match"), "{}", err.message);
    let err = delta::plan_update(&t, &Default::default(), empty_delta(0), 10).err().unwrap();
    assert!(err.message.contains("before any apply"));
}

#[test]
fn empty_delta_is_an_empty_batch() {
    match plan(empty_delta(1), 10) {
        Plan::Incremental { commands, .. } => assert_eq!(commands, 0),
        Plan::Full { .. } => panic!(),
    }
}

#[test]
fn streamed_full_batch_is_the_same_text() {
    let t = Table::new("palisade");
    let st = state(rule_set());
    assert_eq!(render::full_json(&t, &st), render::full(&t, &st).to_string());
}

#[test]
fn in_place_update_plans_as_the_copy_and_rolls_back() {
    let t = Table::new("palisade");
    let before = state(rule_set());
    let mut d = empty_delta(before.generation);
    d.endpoints_removed.push(before.endpoints.keys().next().copied().unwrap());
    if let Some(k) = before.policies.keys().next() {
        d.policies_removed.push(palisade_plugin_sdk::types::PolicyKey {
            endpoint: k.0,
            direction: if k.1 == 0 {
                palisade_plugin_sdk::types::Direction::Ingress
            } else {
                palisade_plugin_sdk::types::Direction::Egress
            },
        });
    }
    let (_, Plan::Incremental { batch: copied, .. }) =
        delta::plan_update(&t, &before, d.clone(), 1000).unwrap()
    else {
        panic!("expected an incremental plan")
    };
    let mut st = palisade_nftables::state::copy(&before);
    let (undo, Plan::Incremental { batch, .. }) =
        delta::update_in_place(&t, &mut st, d, 1000).unwrap()
    else {
        panic!("expected an incremental plan")
    };
    assert_eq!(batch, copied);
    st.rollback(undo);
    assert_eq!(render::full(&t, &st), render::full(&t, &before));
    assert_eq!(st.generation, before.generation);
}
