//! The persistent instance and its recovery.

use std::time::Duration;

use palisade_model::Protocol;
use palisade_plugin_host::{Backoff, Capabilities, Grants, Limits, PluginError, Supervisor};
use palisade_tests::{engine, ip, plugin_bytes, rule_set};

const HOSTILE: &str = "palisade_fixture_hostile";

fn hostile(backoff: Backoff) -> Supervisor {
    let plugin = engine()
        .load(
            HOSTILE,
            &plugin_bytes(HOSTILE),
            &Grants::all(),
            Limits::default(),
            Capabilities::default(),
        )
        .unwrap();
    Supervisor::start(plugin, vec![], backoff).unwrap()
}

#[test]
fn a_trap_in_the_middle_of_apply_leaves_the_last_good_rule_set_re_applied() {
    let mut sup = hostile(Backoff::default());
    sup.apply(&rule_set(7, &["ns/a", "ns/b"])).unwrap();
    let err = sup.apply(&rule_set(8, &["ns/a", "hostile/trap"])).expect_err("traps");
    match &err {
        PluginError::Trap { plugin, message, .. } => {
            assert_eq!(plugin, HOSTILE);
            assert!(!message.is_empty());
        }
        other => panic!("expected a trap: {other}"),
    }
    let status = sup.status();
    assert_eq!(status.restarts, 1, "a fresh instance was made");
    assert_eq!(status.generation, Some(7), "the last good rule set is generation 7");
    // The fixture's `evaluate` says whether its (fresh) instance holds an
    // applied rule set: the host re-applied generation 7 to it.
    let v = sup.evaluate(ip("10.0.0.2"), ip("10.0.0.1"), Protocol::Tcp, 80).unwrap();
    assert!(v.allowed, "the fresh instance got the last good rule set");
    assert_eq!(sup.last_good().map(|r| r.endpoints.len()), Some(2));
}

#[test]
fn repeated_failures_back_off_without_entering_the_plugin() {
    let mut sup = hostile(Backoff {
        free_retries: 0,
        initial: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    });
    sup.apply(&rule_set(1, &["ns/a"])).unwrap();
    let err = sup.apply(&rule_set(2, &["hostile/trap"])).expect_err("traps");
    assert!(err.is_fatal_to_instance());
    match sup.apply(&rule_set(3, &["ns/a"])) {
        Err(PluginError::BackingOff { plugin, failures, retry_in }) => {
            assert_eq!(plugin, HOSTILE);
            assert_eq!(failures, 1);
            assert!(retry_in > Duration::from_secs(3000));
        }
        other => panic!("expected a backoff, got {other:?}"),
    }
    assert_eq!(sup.status().generation, Some(1), "nothing was applied while backing off");
}

#[test]
fn updates_apply_against_the_last_good_rule_set_and_refuse_a_wrong_base() {
    let mut sup = hostile(Backoff::default());
    let a = rule_set(1, &["ns/a", "ns/b"]);
    let b = rule_set(2, &["ns/a", "ns/b", "ns/c"]);
    sup.apply(&a).unwrap();
    sup.update(&a.diff(&b)).unwrap();
    assert_eq!(sup.last_good(), Some(&b));
    let stale = a.diff(&b); // base 1, but the plugin is at 2
    let err = sup.update(&stale).expect_err("wrong base");
    assert!(matches!(err, PluginError::Delta { .. }), "{err}");
}

#[test]
fn calico_compat_evaluates_flows_in_userspace() {
    let plugin = engine()
        .load(
            "palisade_calico_compat",
            &plugin_bytes("palisade_calico_compat"),
            &Grants::none(),
            Limits::default(),
            Capabilities::default(),
        )
        .unwrap();
    let mut sup = Supervisor::start(plugin, vec![], Backoff::default()).unwrap();
    // Endpoint 1 (10.0.0.1) is ingress-isolated and allows TCP 80 from
    // 10.0.0.2 only; endpoint 2 has no policy.
    sup.apply(&rule_set(1, &["ns/web", "ns/client", "ns/other"])).unwrap();
    for (src, dst, proto, port, want) in [
        ("10.0.0.2", "10.0.0.1", Protocol::Tcp, 80, true),
        ("10.0.0.2", "10.0.0.1", Protocol::Tcp, 81, false),
        ("10.0.0.2", "10.0.0.1", Protocol::Udp, 80, false),
        ("10.0.0.3", "10.0.0.1", Protocol::Tcp, 80, false),
        ("192.0.2.9", "10.0.0.1", Protocol::Tcp, 80, false),
        ("10.0.0.1", "10.0.0.2", Protocol::Tcp, 443, true),
        ("10.0.0.3", "10.0.0.2", Protocol::Sctp, 9, true),
    ] {
        let got = sup.evaluate(ip(src), ip(dst), proto, port).unwrap().allowed;
        assert_eq!(got, want, "{src} -> {dst} {proto}/{port}");
    }
    let v = sup.evaluate(ip("10.0.0.3"), ip("10.0.0.1"), Protocol::Tcp, 80).unwrap();
    assert_eq!(v.trace.len(), 2, "egress and ingress are both traced");
}
