//! The `nft` capability against a real kernel, in throwaway network
//! namespaces (root needed, and the `nft` binary: scripts/setup installs it).
//! Every test also checks that the machine's own namespace is untouched.

// Integration tests: helpers panic to fail the test that called them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use palisade_nft::{Engine, NftDataplane, TableGrants};
use palisade_plugin_host::{
    Backoff, Capabilities, Grants, Limits, NftProvider, PluginError, Supervisor,
};
use palisade_tests::{engine, plugin_bytes, rule_set};
use serde_json::{json, Value};

const HOSTILE: &str = "palisade_fixture_hostile";

/// A network namespace of this test process, deleted on every exit path
/// (drop runs on panics too).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("pnft-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip netns add {name} (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        palisade_netns::named(&self.name)
    }

    /// `nft ARGS` inside the namespace; its stdout. Fails the test on error.
    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("run ip netns exec nft");
        assert!(
            out.status.success(),
            "nft {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn ruleset(&self) -> String {
        self.nft(&["list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// `nft list tables` of the machine's own namespace.
fn root_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("the nft binary (scripts/setup installs it)");
    assert!(out.status.success(), "nft list tables: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn dataplane(ns: &Netns, grants: TableGrants) -> NftDataplane {
    NftDataplane::new(Some(ns.path()), grants)
}

fn grants(plugin: &str, tables: &[&str]) -> TableGrants {
    tables.iter().fold(TableGrants::new(), |g, t| g.grant(plugin, t.parse().unwrap()))
}

/// A full definition of `inet palisade`: atomic replace (add, delete, define).
fn palisade_batch() -> Value {
    let t = json!({"family": "inet", "name": "palisade"});
    json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": t}},
        {"delete": {"table": t}},
        {"add": {"table": t}},
        {"add": {"chain": {"family": "inet", "table": "palisade", "name": "forward",
            "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}},
        {"add": {"chain": {"family": "inet", "table": "palisade", "name": "ep1-in"}}},
        {"add": {"set": {"family": "inet", "table": "palisade", "name": "peers",
            "type": "ipv4_addr", "flags": ["interval"]}}},
        {"add": {"element": {"family": "inet", "table": "palisade", "name": "peers",
            "elem": [{"prefix": {"addr": "10.0.0.0", "len": 24}}]}}},
        {"add": {"rule": {"family": "inet", "table": "palisade", "chain": "forward",
            "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                "right": ["established", "related"]}}, {"accept": null}]}}},
        {"add": {"rule": {"family": "inet", "table": "palisade", "chain": "ep1-in",
            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                "field": "saddr"}}, "right": "@peers"}}, {"accept": null}]}}},
        {"add": {"rule": {"family": "inet", "table": "palisade", "chain": "forward",
            "expr": [{"jump": {"target": "ep1-in"}}]}}}
    ]})
}

#[test]
fn a_granted_batch_applies_and_lists_and_deletes() {
    let root = root_tables();
    let ns = Netns::new();
    let nft = dataplane(&ns, grants("p", &["inet palisade"]));
    let batch = palisade_batch().to_string();

    nft.apply_batch("p", &batch).expect("granted batch applies");
    // Idempotent: the same replace applies again.
    nft.apply_batch("p", &batch).expect("applies twice");
    let ruleset = ns.ruleset();
    assert!(ruleset.contains("table inet palisade"), "{ruleset}");
    assert!(ruleset.contains("jump ep1-in"), "{ruleset}");

    let listed: Value =
        serde_json::from_str(&nft.list_table("p", "inet", "palisade").expect("lists")).unwrap();
    let items = listed["nftables"].as_array().unwrap();
    let has = |kind: &str, name: &str| items.iter().any(|i| i[kind]["name"] == name);
    assert!(has("table", "palisade") && has("chain", "forward") && has("chain", "ep1-in"));
    assert!(has("set", "peers"), "{listed}");
    assert_eq!(items.iter().filter(|i| i.get("rule").is_some()).count(), 3, "{listed}");
    assert_eq!(nft.stats().batches_applied.load(Ordering::Relaxed), 2);

    nft.delete_table("p", "inet", "palisade").expect("deletes");
    assert!(!ns.ruleset().contains("palisade"));
    nft.delete_table("p", "inet", "palisade").expect("deleting an absent table is no error");
    let err = nft.list_table("p", "inet", "palisade").expect_err("gone");
    assert!(err.contains("`p`") && err.contains("nft failed"), "{err}");
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

/// The listing of `inet palisade` with the volatile parts (handles) removed.
fn listing_without_handles(nft: &NftDataplane) -> Value {
    let mut listed: Value =
        serde_json::from_str(&nft.list_table("p", "inet", "palisade").expect("lists")).unwrap();
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("handle");
                map.remove("metainfo");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => {
                items.retain(|i| i.get("metainfo").is_none());
                items.iter_mut().for_each(strip);
            }
            _ => {}
        }
    }
    strip(&mut listed);
    listed
}

#[test]
fn the_library_context_and_the_nft_binary_program_the_same_table() {
    let root = root_tables();
    let (lib_ns, bin_ns) = (Netns::new(), Netns::new());
    let lib = dataplane(&lib_ns, grants("p", &["inet palisade"]));
    let bin = dataplane(&bin_ns, grants("p", &["inet palisade"])).with_nft_binary("nft");
    assert_eq!(lib.engine(), Engine::Library, "libnftables.so.1 comes with the nftables package");
    assert_eq!(bin.engine(), Engine::Process);
    for nft in [&lib, &bin] {
        nft.apply_batch("p", &palisade_batch().to_string()).expect("applies");
    }
    assert_eq!(lib_ns.ruleset(), bin_ns.ruleset());
    assert_eq!(listing_without_handles(&lib), listing_without_handles(&bin));
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

#[test]
fn the_library_context_sees_changes_made_behind_its_back() {
    let ns = Netns::new();
    let nft = dataplane(&ns, grants("p", &["inet palisade"]));
    nft.apply_batch("p", &palisade_batch().to_string()).expect("applies");
    let add_peer = json!({"nftables": [{"add": {"element": {"family": "inet", "table": "palisade",
        "name": "peers", "elem": [{"prefix": {"addr": "10.9.0.0", "len": 16}}]}}}]})
    .to_string();
    nft.apply_batch("p", &add_peer).expect("an element add applies");
    assert!(ns.ruleset().contains("10.9.0.0/16"), "{}", ns.ruleset());

    // Someone deletes the table with the nft binary: the long-lived context
    // must not answer from a stale cache.
    ns.nft(&["delete", "table", "inet", "palisade"]);
    let err = nft.apply_batch("p", &add_peer).expect_err("the set is gone");
    assert!(err.contains("nft failed"), "{err}");
    assert!(nft.list_table("p", "inet", "palisade").is_err(), "listed a deleted table");
    nft.apply_batch("p", &palisade_batch().to_string()).expect("a full apply recreates it");
    assert!(ns.ruleset().contains("jump ep1-in"));
}

#[test]
fn a_batch_nft_rejects_applies_nothing_and_returns_nfts_error() {
    let root = root_tables();
    let ns = Netns::new();
    let nft = dataplane(&ns, grants("p", &["inet palisade"]));
    nft.apply_batch("p", &palisade_batch().to_string()).expect("applies");
    let before = ns.ruleset();
    let bad = json!({"nftables": [
        {"add": {"chain": {"family": "inet", "table": "palisade", "name": "new-chain"}}},
        {"add": {"rule": {"family": "inet", "table": "palisade", "chain": "no-such-chain",
            "expr": [{"accept": null}]}}}
    ]});
    let err = nft.apply_batch("p", &bad.to_string()).expect_err("nft refuses it");
    assert!(err.contains("`p`") && err.contains("nft failed"), "{err}");
    assert!(err.contains("No such file or directory"), "nft's stderr is returned: {err}");
    assert_eq!(ns.ruleset(), before, "a failed batch must apply nothing");
    assert_eq!(nft.stats().batches_failed.load(Ordering::Relaxed), 1);
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

#[test]
fn the_hostile_plugin_cannot_touch_a_foreign_table() {
    let root = root_tables();
    let ns = Netns::new();
    // Someone else's table, present before the plugin runs.
    let foreign = json!({"nftables": [
        {"add": {"table": {"family": "inet", "name": "not-mine"}}},
        {"add": {"chain": {"family": "inet", "table": "not-mine", "name": "theirs"}}}
    ]});
    let seed = NftDataplane::new(Some(ns.path()), grants("operator", &["inet not-mine"]));
    seed.apply_batch("operator", &foreign.to_string()).expect("seeds the foreign table");
    let before = ns.ruleset();
    assert!(before.contains("not-mine"), "{before}");

    let nft = Arc::new(dataplane(&ns, grants(HOSTILE, &["inet hostile"])));
    let caps = Capabilities { nft: nft.clone(), ..Capabilities::default() };
    let plugin = engine()
        .load(HOSTILE, &plugin_bytes(HOSTILE), &Grants::all(), Limits::default(), caps)
        .expect("hostile fixture loads");
    let mut sup = Supervisor::start(plugin, vec![], Backoff::default()).expect("starts");
    sup.apply(&rule_set(1, &["ns/a"])).expect("a clean rule set applies");

    let err = sup
        .apply(&rule_set(2, &["ns/a", "hostile/nft-foreign"]))
        .expect_err("the foreign batch is refused");
    match &err {
        PluginError::Backend { code, message, .. } => {
            assert_eq!(code, "capability");
            assert!(message.contains(&format!("plugin `{HOSTILE}`")), "{message}");
            assert!(
                message.contains("command 2") && message.contains("inet not-mine"),
                "{message}"
            );
        }
        other => panic!("expected the capability's refusal: {other}"),
    }
    let after = ns.ruleset();
    assert_eq!(after, before, "the ruleset changed");
    assert!(!after.contains("hostile"), "the granted half of the batch was applied: {after}");
    assert_eq!(nft.stats().batches_refused.load(Ordering::Relaxed), 1);
    assert_eq!(nft.stats().batches_applied.load(Ordering::Relaxed), 0);

    sup.apply(&rule_set(3, &["ns/a", "ns/b"])).expect("the next call works");
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

#[test]
fn every_refusal_names_the_plugin_command_and_table_and_changes_nothing() {
    let root = root_tables();
    let ns = Netns::new();
    let nft = dataplane(&ns, grants("p", &["inet mine", "ip6 mine6"]));
    nft.apply_batch("p", &palisade_batch().to_string().replace("palisade", "mine"))
        .expect("granted");
    let before = ns.ruleset();

    let mine = json!({"add": {"table": {"family": "inet", "name": "mine"}}});
    // (case, batch, substrings of the error)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "flush ruleset",
            json!({"nftables": [mine, {"flush": {"ruleset": null}}]}).to_string(),
            vec!["command 1", "flush ruleset"],
        ),
        (
            "bare ruleset",
            json!({"nftables": [{"ruleset": null}]}).to_string(),
            vec!["command 0", "ruleset"],
        ),
        (
            "list ruleset",
            json!({"nftables": [{"list": {"ruleset": null}}]}).to_string(),
            vec!["command 0", "`list`"],
        ),
        (
            "list of a granted table",
            json!({"nftables": [mine, {"list": {"table": {"family": "inet", "name": "mine"}}}]})
                .to_string(),
            vec!["command 1", "(table inet mine)", "`list`"],
        ),
        (
            "reset counters",
            json!({"nftables": [{"reset": {"counters": {"family": "inet", "table": "mine"}}}]})
                .to_string(),
            vec!["command 0", "`reset`"],
        ),
        (
            "rename",
            json!({"nftables": [{"rename": {"chain": {"family": "inet", "table": "mine",
                "name": "forward", "newname": "x"}}}]})
            .to_string(),
            vec!["command 0", "`rename`"],
        ),
        (
            "ungranted table",
            json!({"nftables": [mine, {"add": {"table": {"family": "inet", "name": "other"}}}]})
                .to_string(),
            vec!["command 1", "(table inet other)", "not granted", "ip6 mine6, inet mine"],
        ),
        (
            "ungranted table, implicit add",
            json!({"nftables": [{"table": {"family": "ip", "name": "filter"}}]}).to_string(),
            vec!["command 0", "(table ip filter)", "not granted"],
        ),
        (
            "granted name, other family",
            json!({"nftables": [{"add": {"chain": {"family": "ip", "table": "mine",
                "name": "c"}}}]})
            .to_string(),
            vec!["command 0", "(table ip mine)", "not granted"],
        ),
        (
            "delete of an ungranted table",
            json!({"nftables": [{"delete": {"table": {"family": "inet", "name": "other"}}}]})
                .to_string(),
            vec!["command 0", "(table inet other)"],
        ),
        (
            "element in an ungranted table",
            json!({"nftables": [mine, mine, {"add": {"element": {"family": "inet",
                "table": "other", "name": "s", "elem": ["10.0.0.1"]}}}]})
            .to_string(),
            vec!["command 2", "(table inet other)"],
        ),
        (
            "table by handle",
            json!({"nftables": [{"delete": {"table": {"family": "inet", "handle": 1}}}]})
                .to_string(),
            vec!["command 0", "names no table"],
        ),
        (
            "granted table name with a handle",
            json!({"nftables": [{"delete": {"table": {"family": "inet", "name": "mine",
                "handle": 1}}}]})
            .to_string(),
            vec!["command 0", "(table inet mine)", "handle"],
        ),
        (
            "chain without a table",
            json!({"nftables": [{"add": {"chain": {"family": "inet", "name": "c"}}}]}).to_string(),
            vec!["command 0", "names no table"],
        ),
        (
            "rule without a family",
            json!({"nftables": [{"add": {"rule": {"table": "mine", "chain": "forward",
                "expr": []}}}]})
            .to_string(),
            vec!["command 0", "names no family"],
        ),
        (
            "unknown family",
            json!({"nftables": [{"add": {"table": {"family": "inet6", "name": "mine"}}}]})
                .to_string(),
            vec!["command 0", "unknown nftables family"],
        ),
        (
            "unknown command",
            json!({"nftables": [mine, {"frobnicate": {"table": {"family": "inet",
                "name": "mine"}}}]})
            .to_string(),
            vec!["command 1", "unknown command `frobnicate`"],
        ),
        (
            "unknown object kind",
            json!({"nftables": [{"add": {"gizmo": {"family": "inet", "table": "mine"}}}]})
                .to_string(),
            vec!["command 0", "unknown object kind `gizmo`"],
        ),
        (
            "two commands in one object",
            json!({"nftables": [{"add": {"table": {"family": "inet", "name": "mine"}},
                "delete": {"table": {"family": "inet", "name": "other"}}}]})
            .to_string(),
            vec!["command 0", "exactly one key"],
        ),
        (
            "two objects under one command",
            json!({"nftables": [{"add": {"table": {"family": "inet", "name": "mine"},
                "chain": {"family": "inet", "table": "other", "name": "c"}}}]})
            .to_string(),
            vec!["command 0", "exactly one key"],
        ),
        (
            "command not an object",
            r#"{"nftables": ["flush ruleset"]}"#.into(),
            vec!["command 0", "not a JSON object"],
        ),
        ("batch not an object", r#"["flush ruleset"]"#.into(), vec!["not a JSON object"]),
        (
            "extra top-level key",
            json!({"nftables": [], "extra": 1}).to_string(),
            vec!["nothing else", "`extra`"],
        ),
        ("nftables not an array", json!({"nftables": {}}).to_string(), vec!["not an array"]),
        ("not JSON", "flush ruleset".into(), vec!["not JSON"]),
    ];
    for (case, batch, wanted) in &cases {
        let err = nft.apply_batch("p", batch).expect_err(case);
        assert!(err.contains("plugin `p`"), "{case}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{case}: `{w}` missing from: {err}");
        }
    }

    // A plugin without any grant can touch nothing, not even an empty batch.
    let err = nft.apply_batch("q", &json!({"nftables": []}).to_string()).expect_err("no grant");
    assert!(err.contains("plugin `q`") && err.contains("no nftables table"), "{err}");
    let err = nft.apply_batch("q", &mine.to_string()).expect_err("no grant");
    assert!(err.contains("plugin `q`"), "{err}");

    // list-table and delete-table: granted tables only, names checked.
    for (family, name, wanted) in [
        ("inet", "other", "table inet other is not granted"),
        ("ip", "mine", "table ip mine is not granted"),
        ("inet6", "mine", "unknown nftables family"),
        ("inet", "mine; flush ruleset", "not an nftables table name"),
        ("inet", "-h", "not an nftables table name"),
    ] {
        let err = nft.list_table("p", family, name).expect_err(name);
        assert!(err.contains("plugin `p`") && err.contains(wanted), "{err}");
        let err = nft.delete_table("p", family, name).expect_err(name);
        assert!(err.contains("plugin `p`") && err.contains(wanted), "{err}");
    }
    let err = nft.delete_table("q", "inet", "mine").expect_err("q owns nothing");
    assert!(err.contains("plugin `q`") && err.contains("its tables: none"), "{err}");

    assert_eq!(
        nft.stats().batches_refused.load(Ordering::Relaxed) as usize,
        cases.len() + 2,
        "every refused batch is counted"
    );
    assert_eq!(ns.ruleset(), before, "a refused call changed the ruleset");
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

/// A table with a three-field interval set (`ADDR . PROTO . PORT`), as the
/// nftables plugin makes them.
fn concat_batch(elements: usize) -> Value {
    let t = json!({"family": "inet", "name": "palisade"});
    let elem: Vec<Value> = (0..elements)
        .map(|i| {
            json!({"concat": [{"prefix": {"addr": format!("10.{}.0.0", i % 250), "len": 16}},
            "tcp", {"range": [1000 + i, 1000 + i]}]})
        })
        .collect();
    json!({"nftables": [
        {"add": {"table": t}},
        {"delete": {"table": t}},
        {"add": {"table": t}},
        {"add": {"set": {"family": "inet", "table": "palisade", "name": "run",
            "type": ["ipv4_addr", "inet_proto", "inet_service"], "flags": ["interval"],
            "elem": elem}}},
        {"add": {"chain": {"family": "inet", "table": "palisade", "name": "ep1-in"}}},
        {"add": {"rule": {"family": "inet", "table": "palisade", "chain": "ep1-in",
            "expr": [{"match": {"op": "==", "left": {"concat": [
                {"payload": {"protocol": "ip", "field": "saddr"}},
                {"meta": {"key": "l4proto"}},
                {"payload": {"protocol": "th", "field": "dport"}}]}, "right": "@run"}},
                {"accept": null}]}}}
    ]})
}

/// libnftables keeps process-wide state: dataplanes applying and listing on
/// several threads at once must still list exactly what they applied (they
/// listed a three-field key as two fields about one run in five before every
/// library call took one process-wide lock).
#[test]
fn dataplanes_on_several_threads_list_what_they_applied() {
    let root = root_tables();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let ns = Netns::new();
                let nft = dataplane(&ns, grants("p", &["inet palisade"]));
                for round in 0..100 {
                    let n = 1 + (w * 7 + round) % 20;
                    nft.apply_batch("p", &concat_batch(n).to_string()).expect("applies");
                    let listed: Value =
                        serde_json::from_str(&nft.list_table("p", "inet", "palisade").unwrap())
                            .unwrap();
                    let set = listed["nftables"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find_map(|i| i.get("set"))
                        .cloned()
                        .expect("the set is listed");
                    assert_eq!(
                        set["type"],
                        json!(["ipv4_addr", "inet_proto", "inet_service"]),
                        "worker {w} round {round}: {set}"
                    );
                    assert_eq!(set["elem"].as_array().map(Vec::len), Some(n), "{set}");
                }
            })
        })
        .collect();
    // Every worker ends (and drops its namespace) before anything fails.
    let failed = workers.into_iter().map(std::thread::JoinHandle::join).filter(Result::is_err);
    assert_eq!(failed.count(), 0, "a worker failed (its panic is printed above)");
    assert_eq!(root_tables(), root, "the machine's own namespace changed");
}

#[test]
fn the_endpoint_guard_keeps_its_set_across_reinstalls_and_follows_syncs() {
    use palisade_nft::{EndpointGuard, GuardConfig};
    let ns = Netns::new();
    let config = GuardConfig {
        table: "palisade_guard".into(),
        interfaces: vec!["veth*".into(), "cali*".into()],
    };
    let mut guard = EndpointGuard::install(Some(ns.path()), config.clone()).unwrap();
    let rules = ns.ruleset();
    for want in [
        "iifname \"veth*\" ip saddr != @programmed4 drop",
        "oifname \"cali*\" ip6 daddr != @programmed6 drop",
        "type filter hook forward priority filter - 10; policy accept;",
        "type filter hook input priority filter - 10; policy accept;",
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept",
    ] {
        assert!(rules.contains(want), "{want}:\n{rules}");
    }
    let a: Vec<std::net::IpAddr> =
        ["10.1.0.1", "10.1.0.2", "fd00::1"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(guard.sync(&a).unwrap(), (3, 0));
    let set = ns.nft(&["list", "set", "inet", "palisade_guard", "programmed4"]);
    assert!(set.contains("10.1.0.1") && set.contains("10.1.0.2"), "{set}");
    assert_eq!(guard.sync(&a[1..]).unwrap(), (0, 1), "a delta");
    let set = ns.nft(&["list", "set", "inet", "palisade_guard", "programmed4"]);
    assert!(!set.contains("10.1.0.1") && set.contains("10.1.0.2"), "{set}");

    // A restarted host installs again: the elements stay until its first
    // sync replaces them (no pod is isolated in between), and the rules are
    // not doubled.
    drop(guard);
    let mut again = EndpointGuard::install(Some(ns.path()), config).unwrap();
    let set = ns.nft(&["list", "set", "inet", "palisade_guard", "programmed4"]);
    assert!(set.contains("10.1.0.2"), "{set}");
    assert_eq!(ns.ruleset().matches("iifname \"veth*\" ip saddr").count(), 2, "forward and input");
    assert_eq!(again.sync(&a[..1]).unwrap(), (1, 0), "the first sync replaces");
    let set = ns.nft(&["list", "set", "inet", "palisade_guard", "programmed4"]);
    assert!(set.contains("10.1.0.1") && !set.contains("10.1.0.2"), "{set}");
    again.remove().unwrap();
    assert!(!ns.ruleset().contains("palisade_guard"));
}
