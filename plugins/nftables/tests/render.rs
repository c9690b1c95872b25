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
    // The address sets a `log` rule names (set 1, by e3's log rule; sets 2
    // and 3 only feed runs), then the non-empty run sets of each policy:
    // set 2 has no IPv6 address and set 3 no IPv4 one, so no `a6` set for
    // the pass to set 2 and no `p4` set for e3's rule to set 3.
    assert_eq!(
        sets,
        [
            "s1_4",
            "s1_6",
            "e1_in_t0_r0_p4",
            "e1_in_t0_r0_p6",
            "e2_eg_t0_r0_a4",
            "e2_eg_t0_r1_p4",
            "e2_eg_t0_r1_p6",
            "e2_eg_t1_r0_p4",
            "e2_eg_t1_r0_p6",
            "e3_in_t0_r0_p6"
        ]
    );
    // Every lookup names a set of the batch, and every run set is looked up.
    let text = b.to_string();
    for s in &sets {
        assert!(text.contains(&format!("\"@{s}\"")), "{s} is never looked up");
    }
    // (the four verdict maps are the other lookups).
    assert_eq!(text.matches("\"@").count() - 4, sets.len(), "{text}");
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
    assert_eq!(s1["elem"], json!([any(pfx("10.0.0.0", 29)), any(pfx("192.168.0.0", 16))]));
    assert_eq!(s1["type"], json!(["ipv4_addr", "inet_proto"]));
}

/// The elements of a set added by the batch, as JSON.
fn set_elems(batch: &Value, name: &str) -> Value {
    let sets = verb_objects(batch, "add", "set");
    let s = sets.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no set {name}"));
    s.get("elem").cloned().unwrap_or(json!([]))
}

/// `ADDR . PROTO . PORT` element.
fn cat(addr: Value, proto: &str, port: Value) -> Value {
    json!({"concat": [addr, proto, port]})
}

/// An address set's element: `ADDR . 0-255` (every protocol).
fn any(addr: Value) -> Value {
    json!({"concat": [addr, {"range": [0, 255]}]})
}

fn pfx(addr: &str, len: u8) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

fn lookup(proto: &str, field: &str, set: &str) -> Value {
    json!({"match": {"op": "==", "left": {"concat": [
        {"payload": {"protocol": proto, "field": field}},
        {"meta": {"key": "l4proto"}},
        {"payload": {"protocol": "th", "field": "dport"}}]}, "right": format!("@{set}")}})
}

#[test]
fn ingress_run_is_one_lookup_per_family_then_log_and_deny() {
    let b = full();
    let r = chain_rules(&b, "e1_in_t0");
    // allow from set 1 on three port ranges: one concatenated-set lookup per
    // family; log sctp: 1 rule; tier end: drop.
    assert_eq!(r.len(), 4, "{r:#?}");
    assert_eq!(r[0], json!([lookup("ip", "saddr", "e1_in_t0_r0_p4"), {"accept": null}]));
    assert_eq!(r[1], json!([lookup("ip6", "saddr", "e1_in_t0_r0_p6"), {"accept": null}]));
    assert_eq!(r[2].as_array().unwrap().len(), 3);
    assert_eq!(r[2][0]["match"]["right"], "sctp");
    let prefix = r[2][2]["log"]["prefix"].as_str().unwrap();
    assert_eq!(prefix, "palisade e1 in ns/web _x_ ingress[0]: ");
    assert_eq!(r[3], json!([{"drop": null}]));
    // Set 1 is 10.0.0.0/29, 192.168.0.0/16 and fd00::/64.
    let ports = |a: Value| {
        vec![
            cat(a.clone(), "tcp", json!(80)),
            cat(a.clone(), "tcp", json!({"range": [8000, 8010]})),
            cat(a, "udp", json!(53)),
        ]
    };
    let mut want4 = ports(pfx("10.0.0.0", 29));
    want4.extend(ports(pfx("192.168.0.0", 16)));
    assert_eq!(set_elems(&b, "e1_in_t0_r0_p4"), Value::Array(want4));
    assert_eq!(set_elems(&b, "e1_in_t0_r0_p6"), Value::Array(ports(pfx("fd00::", 64))));
    let sets = verb_objects(&b, "add", "set");
    let p4 = sets.iter().find(|s| s["name"] == "e1_in_t0_r0_p4").unwrap();
    assert_eq!(p4["type"], json!(["ipv4_addr", "inet_proto", "inet_service"]));
    assert_eq!(p4["flags"], json!(["interval"]));
    // Every set is created before the first rule.
    let c = cmds(&b);
    let last_set = c.iter().rposition(|x| x["add"].get("set").is_some()).unwrap();
    let first_rule = c.iter().position(|x| x["add"].get("rule").is_some()).unwrap();
    assert!(last_set < first_rule);
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
    assert_eq!(chain_rules(&b, "e1_in_t0").len(), 2);
    assert_eq!(
        set_elems(&b, "e1_in_t0_r0_p4"),
        json!([
            cat(pfx("0.0.0.0", 0), "tcp", json!({"range": [80, 101]})),
            cat(pfx("0.0.0.0", 0), "udp", json!(5))
        ])
    );
}

#[test]
fn overlapping_rules_of_a_run_become_disjoint_elements() {
    let mut rs = rule_set();
    rs.sets.push(set(7, &[("10.0.0.5", 32), ("10.1.0.0", 16)], &[]));
    rs.policies = vec![policy(
        1,
        Direction::Ingress,
        vec![(
            vec![
                // set 1 holds 10.0.0.0/29 and 192.168.0.0/16.
                R(Action::Allow, Peer::Set(1), vec![(Protocol::Tcp, 80, 90)]),
                R(Action::Allow, Peer::Set(7), vec![(Protocol::Tcp, 85, 100)]),
                R(Action::Allow, Peer::Set(7), vec![(Protocol::Udp, 53, 53)]),
            ],
            NoMatch::Deny,
        )],
    )];
    let b = render::full(&Table::new("palisade"), &state(rs));
    // tcp 80-84: set 1; 85-90: set 1 and 10.1.0.0/16 (10.0.0.5 is inside
    // 10.0.0.0/29); 91-100: set 7; udp 53: set 7. Each prefix gets its
    // maximal port ranges; no two elements overlap.
    assert_eq!(
        set_elems(&b, "e1_in_t0_r0_p4"),
        json!([
            cat(pfx("10.0.0.0", 29), "tcp", json!({"range": [80, 90]})),
            cat(json!("10.0.0.5"), "tcp", json!({"range": [91, 100]})),
            cat(json!("10.0.0.5"), "udp", json!(53)),
            cat(pfx("10.1.0.0", 16), "tcp", json!({"range": [85, 100]})),
            cat(pfx("10.1.0.0", 16), "udp", json!(53)),
            cat(pfx("192.168.0.0", 16), "tcp", json!({"range": [80, 90]})),
        ])
    );
}

#[test]
fn runs_end_at_another_action_and_at_log() {
    use Action::*;
    let mut rs = rule_set();
    rs.policies = vec![policy(
        1,
        Direction::Egress,
        vec![(
            vec![
                R(Allow, Peer::Set(1), vec![(Protocol::Tcp, 80, 80)]),
                R(Allow, Peer::Set(2), vec![]),
                R(Deny, Peer::Any, vec![(Protocol::Tcp, 22, 22)]),
                R(Allow, Peer::Set(2), vec![(Protocol::Tcp, 22, 22)]),
                R(Log, Peer::Any, vec![]),
                R(Allow, Peer::Set(3), vec![(Protocol::Udp, 1, 65535)]),
                R(Deny, Peer::Any, vec![]),
            ],
            NoMatch::NextTier,
        )],
    )];
    let b = render::full(&Table::new("palisade"), &state(rs));
    let r = chain_rules(&b, "e1_eg_t0");
    let ret = json!({"return": null});
    let drop = json!({"drop": null});
    let addr = |proto: &str, set: &str| json!({"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": proto, "field": "daddr"}}, {"meta": {"key": "l4proto"}}]}, "right": format!("@{set}")}});
    let want = vec![
        // run 0: allow with ports (set 1) and without (set 2)
        json!([lookup("ip", "daddr", "e1_eg_t0_r0_p4"), ret]),
        json!([lookup("ip6", "daddr", "e1_eg_t0_r0_p6"), ret]),
        json!([addr("ip", "e1_eg_t0_r0_a4"), ret]),
        // run 1: deny tcp 22 to anyone
        json!([lookup("ip", "daddr", "e1_eg_t0_r1_p4"), drop]),
        json!([lookup("ip6", "daddr", "e1_eg_t0_r1_p6"), drop]),
        // run 2: allow set 2 on tcp 22 (after the deny: never merged into
        // run 0; set 2 has no IPv6 address, so no IPv6 lookup)
        json!([lookup("ip", "daddr", "e1_eg_t0_r2_p4"), ret]),
        // log everything: its own rule
        json!([{"log": {"prefix": "palisade e1 eg ns/web _x_ ingress[0]: "}}]),
        // run 3: allow set 3 (IPv6 only) on udp, then the unconditional
        // deny (run 4)
        json!([lookup("ip6", "daddr", "e1_eg_t0_r3_p6"), ret]),
        json!([drop]),
    ];
    assert_eq!(r, want);
    assert_eq!(set_elems(&b, "e1_eg_t0_r0_a4"), json!([any(json!("10.0.0.4"))]));
    assert_eq!(set_elems(&b, "e1_eg_t0_r1_p6"), json!([cat(pfx("::", 0), "tcp", json!(22))]));
    // Empty run sets are not made.
    let sets = names(&b, "add", "set");
    for empty in ["e1_eg_t0_r0_a6", "e1_eg_t0_r2_p6", "e1_eg_t0_r3_p4"] {
        assert!(!sets.contains(&empty.to_string()), "{empty} in {sets:?}");
    }
}

#[test]
fn egress_pass_returns_on_allow_and_chains_tiers_with_goto() {
    let b = full();
    let t0 = chain_rules(&b, "e2_eg_t0");
    // pass to set 2 (both families, every port): goto tier 1.
    assert_eq!(
        t0[0],
        json!([{"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}]}, "right": "@e2_eg_t0_r0_a4"}}, {"goto": {"target": "e2_eg_t1"}}])
    );
    assert_eq!(set_elems(&b, "e2_eg_t0_r0_a4"), json!([any(json!("10.0.0.4"))]));
    assert_eq!(t0[1], json!([lookup("ip", "daddr", "e2_eg_t0_r1_p4"), {"drop": null}]));
    assert_eq!(t0.last().unwrap(), &json!([{"goto": {"target": "e2_eg_t1"}}]));
    let t1 = chain_rules(&b, "e2_eg_t1");
    // Egress allow is `return`: the destination's ingress still runs.
    assert_eq!(t1[0][1], json!({"return": null}));
    assert_eq!(t1.len(), 3);
    assert_eq!(
        set_elems(&b, "e2_eg_t1_r0_p6"),
        json!([
            cat(pfx("fd00::", 64), "tcp", json!(443)),
            cat(pfx("fd00::", 64), "sctp", json!(5000))
        ])
    );
    assert_eq!(t1.last().unwrap(), &json!([{"drop": null}]));
}

#[test]
fn pass_in_last_tier_allows_and_never_matching_rules_match_nothing() {
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
    // The deny to a set that does not exist and the span outside the
    // table match nothing: no set, no rule. Pass in the last tier: allow
    // (egress: return).
    assert_eq!(
        r,
        [
            json!([lookup("ip", "daddr", "e1_eg_t0_r1_p4"), {"return": null}]),
            json!([lookup("ip6", "daddr", "e1_eg_t0_r1_p6"), {"return": null}]),
            json!([{"drop": null}]),
        ],
        "{r:#?}"
    );
    // No `log` rule: no address set of its own either.
    assert_eq!(names(&b, "add", "set"), ["e1_eg_t0_r1_p4", "e1_eg_t0_r1_p6"]);
    assert_eq!(set_elems(&b, "e1_eg_t0_r1_p4"), json!([cat(pfx("0.0.0.0", 0), "udp", json!(7))]));
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

/// The state after `d` and the incremental batch taking the table there
/// from `before` (a full replace fails the test).
fn incremental_from(
    before: &palisade_plugin_sdk::AppliedState,
    d: palisade_plugin_sdk::types::Delta,
) -> (palisade_plugin_sdk::AppliedState, Value) {
    match delta::plan_update(&Table::new("palisade"), before, d, 1000).unwrap() {
        (after, Plan::Incremental { batch, .. }) => (after, batch),
        (_, Plan::Full { reason }) => panic!("full replace: {reason}"),
    }
}

fn incremental(d: palisade_plugin_sdk::types::Delta) -> Value {
    match plan(d, 1000) {
        Plan::Incremental { batch, .. } => batch,
        Plan::Full { reason } => panic!("full replace: {reason}"),
    }
}

#[test]
fn set_change_is_element_deletes_then_adds_in_the_set_and_its_runs() {
    let mut d = empty_delta(1);
    d.sets_changed.push(SetChange {
        id: 1,
        add_v4: vec![p4("172.16.0.0", 12)],
        remove_v4: vec![p4("192.168.0.0", 16)],
        add_v6: vec![ip6("fd01::", 64)],
        remove_v6: vec![ip6("fd00::", 64)],
    });
    let b = incremental(d);
    let el = |verb: &str, name: &str, elem: Vec<Value>| json!({verb: {"element": {"family": "inet", "table": "palisade", "name": name, "elem": elem}}});
    let e1 = |a: Value| {
        vec![
            cat(a.clone(), "tcp", json!(80)),
            cat(a.clone(), "tcp", json!({"range": [8000, 8010]})),
            cat(a, "udp", json!(53)),
        ]
    };
    let e2 = |a: Value| vec![cat(a.clone(), "tcp", json!(443)), cat(a, "sctp", json!(5000))];
    assert_eq!(
        cmds(&b),
        &vec![
            el("delete", "s1_4", vec![any(pfx("192.168.0.0", 16))]),
            el("delete", "s1_6", vec![any(pfx("fd00::", 64))]),
            el("delete", "e1_in_t0_r0_p4", e1(pfx("192.168.0.0", 16))),
            el("delete", "e1_in_t0_r0_p6", e1(pfx("fd00::", 64))),
            el("delete", "e2_eg_t1_r0_p4", e2(pfx("192.168.0.0", 16))),
            el("delete", "e2_eg_t1_r0_p6", e2(pfx("fd00::", 64))),
            el("add", "s1_4", vec![any(pfx("172.16.0.0", 12))]),
            el("add", "s1_6", vec![any(pfx("fd01::", 64))]),
            el("add", "e1_in_t0_r0_p4", e1(pfx("172.16.0.0", 12))),
            el("add", "e1_in_t0_r0_p6", e1(pfx("fd01::", 64))),
            el("add", "e2_eg_t1_r0_p4", e2(pfx("172.16.0.0", 12))),
            el("add", "e2_eg_t1_r0_p6", e2(pfx("fd01::", 64))),
        ]
    );
}

#[test]
fn run_set_that_empties_or_fills_rewrites_its_policy() {
    // Set 1 loses its only IPv6 prefix: e1's and e2's `p6` run sets empty,
    // so their lookups go (the policies are rewritten) and the sets after.
    let before = state(rule_set());
    let mut d = empty_delta(1);
    d.sets_changed.push(SetChange {
        id: 1,
        add_v4: vec![],
        remove_v4: vec![],
        add_v6: vec![],
        remove_v6: vec![ip6("fd00::", 64)],
    });
    let (after, b) = incremental_from(&before, d);
    assert_eq!(names(&b, "flush", "chain"), ["e1_in_t0", "e2_eg_t0", "e2_eg_t1"]);
    assert_eq!(names(&b, "delete", "set"), ["e1_in_t0_r0_p6", "e2_eg_t1_r0_p6"]);
    assert!(!b.to_string().contains("\"@e1_in_t0_r0_p6\""), "{b}");
    let c = cmds(&b);
    let last_rule = c.iter().rposition(|x| x["add"].get("rule").is_some()).unwrap();
    let first_set_del = c.iter().position(|x| x["delete"].get("set").is_some()).unwrap();
    assert!(last_rule < first_set_del);
    // The logged set keeps its (now empty) IPv6 half: it is not a run set.
    let dels = verb_objects(&b, "delete", "element");
    assert_eq!(dels.iter().map(|e| e["name"].clone()).collect::<Vec<_>>(), [json!("s1_6")]);

    // And back: the sets are made before the rules that look them up.
    let mut d = empty_delta(after.generation);
    d.sets_changed.push(SetChange {
        id: 1,
        add_v4: vec![],
        remove_v4: vec![],
        add_v6: vec![ip6("fd00::", 64)],
        remove_v6: vec![],
    });
    let (_, b) = incremental_from(&after, d);
    assert_eq!(names(&b, "add", "set"), ["e1_in_t0_r0_p6", "e2_eg_t1_r0_p6"]);
    let c = cmds(&b);
    let add_set = c.iter().rposition(|x| x["add"].get("set").is_some()).unwrap();
    let first_rule = c.iter().position(|x| x["add"].get("rule").is_some()).unwrap();
    assert!(add_set < first_rule);
    assert!(chain_rules(&b, "e1_in_t0")
        .iter()
        .any(|r| r[0]["match"]["right"] == "@e1_in_t0_r0_p6"));
}

#[test]
fn address_sets_exist_while_a_log_rule_names_them() {
    use Action::*;
    let before = state(rule_set());
    // e1 starts logging set 2: its sets are made before e1's rules.
    let mut d = empty_delta(1);
    d.policies_upserted.push(policy(
        1,
        Direction::Ingress,
        vec![(vec![R(Log, Peer::Set(2), vec![]), R(Allow, Peer::Set(1), vec![])], NoMatch::Deny)],
    ));
    let (after, b) = incremental_from(&before, d);
    assert_eq!(names(&b, "add", "set")[..2], ["s2_4", "s2_6"]);
    let c = cmds(&b);
    let add_s2 = c.iter().position(|x| x["add"]["set"]["name"] == "s2_4").unwrap();
    let first_rule = c.iter().position(|x| x["add"].get("rule").is_some()).unwrap();
    assert!(add_s2 < first_rule);
    assert!(chain_rules(&b, "e1_in_t0").iter().any(|r| r[0]["match"]["right"] == "@s2_4"));
    // Set 2 changes while logged: its own sets get the elements too.
    let mut d = empty_delta(after.generation);
    d.sets_changed.push(SetChange {
        id: 2,
        add_v4: vec![p4("10.0.0.5", 32)],
        remove_v4: vec![],
        add_v6: vec![],
        remove_v6: vec![],
    });
    let (after2, b) = incremental_from(&after, d);
    let adds: Vec<Value> = verb_objects(&b, "add", "element");
    assert!(adds.iter().any(|e| e["name"] == "s2_4"), "{b}");
    // e1 stops logging it: the sets go, after the rules that named them.
    let mut d = empty_delta(after2.generation);
    d.policies_upserted.push(policy(
        1,
        Direction::Ingress,
        vec![(vec![R(Allow, Peer::Set(1), vec![])], NoMatch::Deny)],
    ));
    let (_, b) = incremental_from(&after2, d);
    assert_eq!(names(&b, "delete", "set"), ["s2_4", "s2_6"]);
    let c = cmds(&b);
    let last_rule = c.iter().rposition(|x| x["add"].get("rule").is_some()).unwrap();
    let del_s2 = c.iter().position(|x| x["delete"]["set"]["name"] == "s2_4").unwrap();
    assert!(last_rule < del_s2);
    // Set 1 is still named by e3's log rule: it stays.
    assert!(!names(&b, "delete", "set").contains(&"s1_4".to_string()));
}

#[test]
fn policy_upsert_flushes_refills_and_deletes_surplus_tiers_and_runs() {
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
    assert_eq!(names(&b, "add", "set"), ["e2_eg_t0_r0_p4", "e2_eg_t0_r0_p6"]);
    assert_eq!(
        names(&b, "delete", "set"),
        ["e2_eg_t0_r0_a4", "e2_eg_t0_r1_p4", "e2_eg_t0_r1_p6", "e2_eg_t1_r0_p4", "e2_eg_t1_r0_p6"]
    );
    assert_eq!(chain_rules(&b, "e2_eg_t0").len(), 3);
    // Nothing else: the verdict maps are unchanged; sets go after the chain.
    let c = cmds(&b);
    assert_eq!(c.len(), 12);
    let del_chain = c.iter().position(|x| x["delete"].get("chain").is_some()).unwrap();
    let first_set_del = c.iter().position(|x| x["delete"].get("set").is_some()).unwrap();
    assert!(del_chain < first_set_del);
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
fn removing_a_referenced_set_rewrites_its_log_rules_and_emptied_runs_first() {
    use Action::*;
    let mut rs = rule_set();
    rs.policies.push(policy(
        4,
        Direction::Ingress,
        vec![(
            vec![
                R(Log, Peer::Set(2), vec![(Protocol::Tcp, 80, 80)]),
                R(Allow, Peer::Set(2), vec![]),
            ],
            NoMatch::Deny,
        )],
    ));
    let t = Table::new("palisade");
    let before = state(rs);
    assert!(render::full(&t, &before).to_string().contains("@s2_4"));
    let mut d = empty_delta(1);
    d.sets_removed.push(2);
    let (_, b) = incremental_from(&before, d);
    let c = cmds(&b);
    // e4 logs with `@s2_4`: rewritten. e2 and e4 have a run holding set 2
    // alone: its run set empties, so they are rewritten without it too.
    assert_eq!(names(&b, "flush", "chain"), ["e2_eg_t0", "e2_eg_t1", "e4_in_t0"]);
    assert!(!b.to_string().contains("\"@s2_"), "{b}");
    for gone in ["@e2_eg_t0_r0_a4", "@e4_in_t0_r0_a4"] {
        assert!(!b.to_string().contains(&format!("\"{gone}\"")), "{b}");
    }
    assert_eq!(names(&b, "delete", "set"), ["e2_eg_t0_r0_a4", "e4_in_t0_r0_a4", "s2_4", "s2_6"]);
    assert!(verb_objects(&b, "delete", "element").is_empty());
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
