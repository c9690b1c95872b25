//! Root tests: the generated batches applied by the real `nft` in throwaway
//! network namespaces (needs root and the `nft` binary: `apt-get install
//! nftables`). The machine's own namespace is never touched.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use common::*;

use palisade_nft::{NftDataplane, TableGrants};
use palisade_nftables::delta::{self, Plan};
use palisade_nftables::{nft::Table, render};
use palisade_plugin_sdk::types::{
    Action, Delta, Direction, NoMatch, Peer, PolicyKey, Protocol, SetChange,
};
use palisade_plugin_sdk::AppliedState;
use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A network namespace deleted on every exit path (panics included), with
/// the host's nft capability acting in it for the plugin `nftables`.
struct Ns {
    name: String,
    nft: NftDataplane,
}

impl Ns {
    fn new() -> Ns {
        let name = format!("pnftp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        run(Command::new("ip").args(["netns", "add", &name]))
            .unwrap_or_else(|e| panic!("these tests need root and iproute2: {e}"));
        let grants = TableGrants::new().grant("nftables", "inet palisade".parse().unwrap());
        let nft = NftDataplane::new(Some(PathBuf::from(format!("/run/netns/{name}"))), grants);
        Ns { name, nft }
    }

    /// Applies a batch through the host's capability: checked against the
    /// plugin's table grant, then `nft -j -f -` in the namespace.
    fn apply(&self, batch: &Value) -> Result<(), String> {
        self.nft.apply("nftables", &batch.to_string()).map(|_| ()).map_err(|e| e.to_string())
    }

    /// `nft -j list table inet palisade`, canonicalized.
    fn table(&self) -> Table_ {
        let out = self.nft.list("nftables", "inet", "palisade").unwrap();
        canonical(&serde_json::from_str(&out).unwrap())
    }

    fn text(&self) -> String {
        run(Command::new("ip").args(["netns", "exec", &self.name, "nft", "list", "ruleset"]))
            .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// The objects of a listed table by kind and name: sets and maps with their
/// elements sorted, chains with their rules in order (handles dropped).
type Table_ = BTreeMap<String, Value>;

fn canonical(list: &Value) -> Table_ {
    let mut out = Table_::new();
    for item in list["nftables"].as_array().unwrap() {
        let (kind, obj) = item.as_object().unwrap().iter().next().unwrap();
        let mut obj = obj.clone();
        obj.as_object_mut().unwrap().remove("handle");
        match kind.as_str() {
            "set" | "map" => {
                if let Some(e) = obj.get_mut("elem").and_then(Value::as_array_mut) {
                    e.sort_by_key(|v| v.to_string());
                }
                out.insert(format!("{kind} {}", obj["name"].as_str().unwrap()), obj);
            }
            "chain" => {
                out.insert(format!("chain {}", obj["name"].as_str().unwrap()), obj);
            }
            "rule" => {
                let key = format!("rules {}", obj["chain"].as_str().unwrap());
                let rules = out.entry(key).or_insert_with(|| Value::Array(vec![]));
                rules.as_array_mut().unwrap().push(obj["expr"].clone());
            }
            _ => {}
        }
    }
    out
}

fn nft_available() {
    run(Command::new("nft").arg("--version")).unwrap_or_else(|e| {
        panic!("these tests need the nft binary (apt-get install nftables): {e}")
    });
}

fn root_tables() -> String {
    run(Command::new("nft").args(["list", "tables"])).unwrap()
}

/// Runs `f` and checks the machine's own namespace kept its tables.
fn in_lab(f: impl FnOnce()) {
    nft_available();
    let before = root_tables();
    f();
    assert_eq!(root_tables(), before, "the root namespace's tables changed");
}

fn t() -> Table {
    Table::new("palisade")
}

fn elems(tab: &Table_, key: &str) -> Vec<String> {
    tab[key]
        .get("elem")
        .and_then(Value::as_array)
        .map(|v| v.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}

/// Whether the table's text listing has a line containing `needle`.
fn text_has(ns: &Ns, needle: &str) -> bool {
    ns.text().lines().any(|l| l.contains(needle))
}

fn has_chain(tab: &Table_, name: &str) -> bool {
    tab.contains_key(&format!("chain {name}"))
}

/// Applies `d` incrementally in `ns` and checks the table equals a full
/// replace of the new state in a fresh namespace. Returns the new state.
fn step(ns: &Ns, old: &AppliedState, d: Delta) -> AppliedState {
    let (new, plan) = delta::plan_update(&t(), old, d, 10_000).unwrap();
    let Plan::Incremental { batch, commands } = plan else {
        panic!("expected an incremental plan")
    };
    if commands > 0 {
        ns.apply(&batch)
            .unwrap_or_else(|e| panic!("{e}\nbatch: {batch}\ntable before:\n{}", ns.text()));
    }
    let fresh = Ns::new();
    fresh.apply(&render::full(&t(), &new)).unwrap();
    let (got, want) = (ns.table(), fresh.table());
    if got != want {
        panic!("incremental != full\nincremental:\n{}\nfull:\n{}", ns.text(), fresh.text());
    }
    new
}

#[test]
fn full_rule_set_applies_and_lists_as_generated() {
    in_lab(|| {
        let ns = Ns::new();
        let st = state(rule_set());
        ns.apply(&render::full(&t(), &st)).unwrap();
        let tab = ns.table();
        assert_eq!(
            elems(&tab, "set s1_4"),
            [
                // Every protocol: address sets are `ADDR . inet_proto` sets.
                r#"{"concat":[{"prefix":{"addr":"10.0.0.0","len":29}},{"range":[0,255]}]}"#,
                r#"{"concat":[{"prefix":{"addr":"192.168.0.0","len":16}},{"range":[0,255]}]}"#
            ]
        );
        // Only the address sets a `log` rule names are in the table (set 1,
        // by e3), and only non-empty run sets (set 3 has no IPv4 address).
        assert_eq!(elems(&tab, "set s1_6").len(), 1);
        for absent in ["set s2_4", "set s3_6", "set e3_in_t0_r0_p4", "set e2_eg_t0_r0_a6"] {
            assert!(!tab.contains_key(absent), "{absent}");
        }
        assert!(text_has(&ns, "ip saddr . meta l4proto @s1_4 log prefix"));
        assert!(elems(&tab, "map ingress4")[0].contains("e1_in_t0"));
        for c in [
            "forward", "input", "output", "dispatch", "e1_in_t0", "e2_eg_t0", "e2_eg_t1",
            "e3_in_t0",
        ] {
            assert!(has_chain(&tab, c), "{c}");
        }
        assert_eq!(tab["chain forward"]["hook"], "forward");
        assert_eq!(tab["rules e1_in_t0"].as_array().unwrap().len(), 4);
        let text = ns.text();
        assert!(text.contains(r#"log prefix "palisade e1 in ns/web _x_ ingress[0]: ""#), "{text}");
        assert!(
            text.contains("ip daddr . meta l4proto . th dport @e2_eg_t1_r0_p4 return"),
            "{text}"
        );
        assert!(text.contains("10.0.0.0/29 . sctp . 5000"), "{text}");
        assert!(text.contains("ip daddr . meta l4proto @e2_eg_t0_r0_a4 goto e2_eg_t1"), "{text}");
        assert_eq!(
            elems(&tab, "set e3_in_t0_r0_p6"),
            [
                r#"{"concat":["fd00::1","udp",{"range":[1,65535]}]}"#,
                r#"{"concat":[{"prefix":{"addr":"2001:db8::","len":32}},"udp",{"range":[1,65535]}]}"#
            ]
        );
        // The text listing reads back (no keyword used as a name).
        let fresh = Ns::new();
        let file = std::env::temp_dir().join(format!("{}.nft", fresh.name));
        std::fs::write(&file, &text).unwrap();
        let back =
            run(Command::new("ip").args(["netns", "exec", &fresh.name, "nft", "-f"]).arg(&file));
        let _ = std::fs::remove_file(&file);
        back.unwrap();
        assert_eq!(fresh.table(), tab);
        // A full apply over an existing table is an atomic replace.
        let mut rs = rule_set();
        rs.policies.truncate(1);
        ns.apply(&render::full(&t(), &state(rs))).unwrap();
        let tab = ns.table();
        assert!(!has_chain(&tab, "e2_eg_t0") && has_chain(&tab, "e1_in_t0"));
        assert!(elems(&tab, "map egress4").is_empty());
    });
}

#[test]
fn failing_batch_changes_nothing() {
    in_lab(|| {
        let ns = Ns::new();
        ns.apply(&render::full(&t(), &state(rule_set()))).unwrap();
        let before = ns.table();
        // A delta batch with a bad last command: the whole batch rolls back.
        let mut d = empty_delta(1);
        d.sets_changed.push(SetChange {
            id: 1,
            add_v4: vec![p4("172.16.0.0", 12)],
            remove_v4: vec![],
            add_v6: vec![],
            remove_v6: vec![],
        });
        let (_, Plan::Incremental { mut batch, .. }) =
            delta::plan_update(&t(), &state(rule_set()), d, 100).unwrap()
        else {
            panic!()
        };
        batch["nftables"].as_array_mut().unwrap().push(t().delete_chain("no_such_chain"));
        assert!(ns.apply(&batch).is_err());
        assert_eq!(ns.table(), before);
    });
}

#[test]
fn incremental_updates_equal_full_replaces() {
    in_lab(|| {
        use Action::*;
        let ns = Ns::new();
        let mut st = state(rule_set());
        ns.apply(&render::full(&t(), &st)).unwrap();

        // 1. Set membership: v4 and v6 prefixes in and out; a covering prefix.
        let mut d = empty_delta(st.generation);
        d.sets_changed.push(SetChange {
            id: 1,
            add_v4: vec![p4("172.16.0.0", 12), p4("10.0.0.0", 8)],
            remove_v4: vec![p4("192.168.0.0", 16)],
            add_v6: vec![ip6("fd01::", 64)],
            remove_v6: vec![ip6("fd00::", 64)],
        });
        st = step(&ns, &st, d);
        assert_eq!(elems(&ns.table(), "set s1_4").len(), 2);

        // 2. Policy replaced with more tiers; a new set referenced.
        let mut d = empty_delta(st.generation);
        d.sets_added.push(set(4, &[("10.0.0.2", 32)], &[("fd00::2", 128)]));
        d.policies_upserted.push(policy(
            1,
            Direction::Ingress,
            vec![
                (
                    vec![
                        R(Log, Peer::Set(4), vec![]),
                        R(Pass, Peer::Set(4), vec![(Protocol::Udp, 53, 53)]),
                    ],
                    NoMatch::NextTier,
                ),
                (vec![R(Deny, Peer::Any, vec![(Protocol::Sctp, 1, 65535)])], NoMatch::NextTier),
                (vec![R(Allow, Peer::Set(1), vec![(Protocol::Tcp, 80, 80)])], NoMatch::Deny),
            ],
        ));
        st = step(&ns, &st, d);
        assert!(has_chain(&ns.table(), "e1_in_t2"));

        // 2b. Run sets that fill and empty: set 2 gets its first IPv6
        //     address (e2's pass run gains an `a6` set and its lookup),
        //     then loses it; e1 starts logging set 2 (its sets appear),
        //     then stops (they go).
        let v6_of_2 = |add: bool| {
            let mut c = SetChange {
                id: 2,
                add_v4: vec![],
                remove_v4: vec![],
                add_v6: vec![],
                remove_v6: vec![],
            };
            if add {
                c.add_v6.push(ip6("fd00::4", 128));
            } else {
                c.remove_v6.push(ip6("fd00::4", 128));
            }
            c
        };
        let mut d = empty_delta(st.generation);
        d.sets_changed.push(v6_of_2(true));
        st = step(&ns, &st, d);
        assert!(text_has(&ns, "ip6 daddr . meta l4proto @e2_eg_t0_r0_a6 goto e2_eg_t1"));
        let mut d = empty_delta(st.generation);
        d.sets_changed.push(v6_of_2(false));
        st = step(&ns, &st, d);
        assert!(!ns.table().contains_key("set e2_eg_t0_r0_a6"));
        let logging = |log: bool| {
            let mut rules = vec![R(Allow, Peer::Set(1), vec![(Protocol::Tcp, 80, 80)])];
            if log {
                rules.insert(0, R(Log, Peer::Set(2), vec![]));
            }
            policy(1, Direction::Ingress, vec![(rules, NoMatch::Deny)])
        };
        let mut d = empty_delta(st.generation);
        d.policies_upserted.push(logging(true));
        st = step(&ns, &st, d);
        assert!(ns.table().contains_key("set s2_4"));
        let mut d = empty_delta(st.generation);
        d.policies_upserted.push(logging(false));
        st = step(&ns, &st, d);
        assert!(!ns.table().contains_key("set s2_4"));

        // 3. Endpoints: e3 moves address, e4 gets an egress policy, e2 goes.
        let mut d = empty_delta(st.generation);
        d.endpoints_upserted.push(endpoint(3, &["10.0.0.33"], &["fd00::33"]));
        d.endpoints_removed.push(2);
        d.policies_removed.push(PolicyKey { endpoint: 2, direction: Direction::Egress });
        d.policies_upserted.push(policy(
            4,
            Direction::Egress,
            vec![(vec![R(Allow, Peer::Set(3), vec![])], NoMatch::Deny)],
        ));
        st = step(&ns, &st, d);
        let tab = ns.table();
        assert!(!has_chain(&tab, "e2_eg_t0") && !has_chain(&tab, "e2_eg_t1"));
        assert!(elems(&tab, "map egress4")[0].contains("10.0.0.4"));

        // 4. A referenced set removed, a policy shrinks to one tier, and a
        //    new endpoint takes an address already owned by a lower id.
        let mut d = empty_delta(st.generation);
        d.sets_removed.push(4);
        d.policies_upserted.push(policy(
            1,
            Direction::Ingress,
            vec![(vec![R(Allow, Peer::Set(4), vec![])], NoMatch::Deny)],
        ));
        d.endpoints_upserted.push(endpoint(9, &["10.0.0.1", "10.0.0.9"], &[]));
        d.policies_upserted.push(policy(9, Direction::Ingress, vec![]));
        st = step(&ns, &st, d);
        let tab = ns.table();
        assert!(!tab.contains_key("set s4_4") && !has_chain(&tab, "e1_in_t1"));
        assert!(!tab.contains_key("set e1_in_t0_r0_a4"), "set 4 is gone: an empty run");

        // 4b. Overlapping rules in one run (the kernel refuses overlapping
        //     elements), then membership changes that move the overlap.
        let mut d = empty_delta(st.generation);
        d.sets_added.push(set(5, &[("10.0.0.0", 24)], &[("fd00::", 56)]));
        d.sets_added.push(set(6, &[("10.0.0.9", 32), ("10.7.0.0", 16)], &[("fd00::9", 128)]));
        d.policies_upserted.push(policy(
            9,
            Direction::Ingress,
            vec![(
                vec![
                    R(Allow, Peer::Set(5), vec![(Protocol::Tcp, 80, 90)]),
                    R(Allow, Peer::Set(6), vec![(Protocol::Tcp, 85, 100), (Protocol::Udp, 53, 53)]),
                    R(Allow, Peer::Set(6), vec![]),
                    R(Allow, Peer::Any, vec![(Protocol::Sctp, 7, 7)]),
                ],
                NoMatch::Deny,
            )],
        ));
        st = step(&ns, &st, d);
        let mut d = empty_delta(st.generation);
        d.sets_changed.push(SetChange {
            id: 5,
            add_v4: vec![p4("10.7.3.0", 24)],
            remove_v4: vec![p4("10.0.0.0", 24)],
            add_v6: vec![],
            remove_v6: vec![],
        });
        d.sets_changed.push(SetChange {
            id: 6,
            add_v4: vec![p4("10.0.0.0", 8)],
            remove_v4: vec![],
            add_v6: vec![ip6("fd00::", 48)],
            remove_v6: vec![],
        });
        st = step(&ns, &st, d);
        assert!(!elems(&ns.table(), "set e9_in_t0_r0_p4").is_empty());

        // 4c. A port edit of a run with many peers: every element of its
        //     set changes, so the set is recreated after the chain flush
        //     (delete set, add set with elements) rather than diffed.
        let many: Vec<(String, u8)> = (0..40).map(|i| (format!("10.9.{i}.0"), 24)).collect();
        let many: Vec<(&str, u8)> = many.iter().map(|(a, l)| (a.as_str(), *l)).collect();
        let with_port = |port: u16| {
            policy(
                9,
                Direction::Ingress,
                vec![(
                    vec![R(Allow, Peer::Set(7), vec![(Protocol::Tcp, port, port)])],
                    NoMatch::Deny,
                )],
            )
        };
        let mut d = empty_delta(st.generation);
        d.sets_added.push(set(7, &many, &[]));
        d.policies_upserted.push(with_port(80));
        st = step(&ns, &st, d);
        let mut d = empty_delta(st.generation);
        d.policies_upserted.push(with_port(81));
        let (_, plan) = delta::plan_update(&t(), &st, d.clone(), 10_000).unwrap();
        let Plan::Incremental { batch, .. } = plan else { panic!("expected an incremental plan") };
        let verbs: Vec<String> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| {
                let (verb, obj) = c.as_object()?.iter().next()?;
                let set = obj.get("set")?;
                (set["name"] == "e9_in_t0_r0_p4").then(|| verb.clone())
            })
            .collect();
        assert_eq!(verbs, ["delete", "add"], "{batch}");
        st = step(&ns, &st, d);
        assert_eq!(elems(&ns.table(), "set e9_in_t0_r0_p4").len(), 40);
        assert!(elems(&ns.table(), "set e9_in_t0_r0_p4").iter().all(|e| e.contains("81")));

        // 5. Everything but e9 goes away.
        let mut d = empty_delta(st.generation);
        d.endpoints_removed = vec![1, 3, 4];
        d.policies_removed = st
            .policies
            .values()
            .filter(|p| p.endpoint != 9)
            .map(|p| PolicyKey { endpoint: p.endpoint, direction: p.direction })
            .collect();
        d.sets_removed = st.sets.keys().copied().collect();
        st = step(&ns, &st, d);
        let tab = ns.table();
        assert_eq!(elems(&tab, "map ingress4").len(), 2);
        // e9 allows set 7 only, which is gone: its run set emptied, so no
        // set is left and e9's chain only drops.
        let sets: Vec<&String> = tab.keys().filter(|k| k.starts_with("set ")).collect();
        assert!(sets.is_empty(), "{sets:?}");
        assert_eq!(tab["rules e9_in_t0"].as_array().unwrap().len(), 1, "{}", ns.text());
        assert_eq!(st.policies.len(), 1);
    });
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let r = f();
    eprintln!("{what}: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    r
}

/// Timings of a 10,000-rule set (about 60,000 nft rules; a full apply takes
/// seconds, so it is opt-in and reported as ignored otherwise).
#[test]
#[ignore = "timing run: cargo test --release -p palisade-plugin-nftables --test netns -- --ignored --nocapture"]
fn ten_thousand_rules_apply_and_update() {
    in_lab(|| {
        let ns = Ns::new();
        let rs = big_rule_set();
        let st = state(rs);
        assert_eq!(st.rule_count(), 10_000);
        let peak = |f: &mut dyn FnMut()| {
            PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
            let base = LIVE.load(Ordering::Relaxed);
            f();
            (PEAK.load(Ordering::Relaxed) - base) as f64 / 1048576.0
        };
        let mut text = 0;
        let m = peak(&mut || text = render::full(&t(), &st).to_string().len());
        eprintln!("peak heap, render as a Value tree and serialize: {m:.1} MiB");
        let m = peak(&mut || text = render::full_json(&t(), &st).len());
        eprintln!("peak heap, render streamed into one String: {m:.1} MiB ({text} bytes)");
        assert_eq!(render::full_json(&t(), &st), render::full(&t(), &st).to_string());
        let batch = timed("render 10k rules", || render::full(&t(), &st));
        let n = batch["nftables"].as_array().unwrap().len();
        eprintln!("full batch: {n} commands, {} bytes", batch.to_string().len());
        timed("full apply (empty table)", || ns.apply(&batch)).unwrap();

        let mut d = empty_delta(st.generation);
        d.sets_changed.push(SetChange {
            id: 8,
            add_v4: (0..10).map(|i| p4(&format!("192.168.{i}.0"), 24)).collect(),
            remove_v4: vec![p4("10.100.8.0", 24)],
            add_v6: vec![],
            remove_v6: vec![],
        });
        // The plugin's own work for a one-set delta (before the nft call):
        // the applied state updated in place, and the batch planned.
        {
            let mut applied = palisade_nftables::state::copy(&st);
            let d = d.clone();
            timed("plugin update (in place + plan): 11 set elements", || {
                delta::update_in_place(&t(), &mut applied, d, 2000).unwrap()
            });
        }
        let (st2, Plan::Incremental { batch, .. }) =
            delta::plan_update(&t(), &st, d, 2000).unwrap()
        else {
            panic!()
        };
        timed("update: 11 set elements", || ns.apply(&batch)).unwrap();

        let mut d = empty_delta(st2.generation);
        let mut p = st2.policies.values().next().unwrap().clone();
        p.tiers.swap(0, 1);
        d.policies_upserted.push(p);
        let (st3, Plan::Incremental { batch, .. }) =
            delta::plan_update(&t(), &st2, d, 2000).unwrap()
        else {
            panic!()
        };
        timed("update: one 50-rule policy replaced", || ns.apply(&batch)).unwrap();

        let mut d = empty_delta(st3.generation);
        d.endpoints_upserted.push(endpoint(500, &["10.1.9.9"], &["fd00::9:9"]));
        d.policies_upserted.push(policy(
            500,
            Direction::Ingress,
            vec![(
                vec![R(Action::Allow, Peer::Set(3), vec![(Protocol::Tcp, 80, 80)])],
                NoMatch::Deny,
            )],
        ));
        d.endpoints_removed.push(7);
        d.policies_removed.push(PolicyKey { endpoint: 7, direction: Direction::Ingress });
        let (st4, Plan::Incremental { batch, .. }) =
            delta::plan_update(&t(), &st3, d, 2000).unwrap()
        else {
            panic!()
        };
        timed("update: endpoint added with policy, one removed", || ns.apply(&batch)).unwrap();
        let full = render::full(&t(), &st4);
        timed("full replace of the same state (the fallback)", || ns.apply(&full)).unwrap();
        assert!(ns.table().contains_key("chain e500_in_t0"));
    });
}

// Heap accounting for the timing test's peak-memory figures.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;
