//! Hostile fixtures: each misbehaviour is contained, reported with the
//! plugin and the limit named, and the next call works on a fresh instance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_plugin_host::{
    Backoff, Capabilities, Grants, LimitKind, Limits, NftProvider, PluginError, Supervisor,
};
use palisade_tests::{engine, plugin_bytes, rule_set};

const HOSTILE: &str = "palisade_fixture_hostile";

fn supervisor(limits: Limits, caps: Capabilities) -> Supervisor {
    let plugin = engine()
        .load(HOSTILE, &plugin_bytes(HOSTILE), &Grants::all(), limits, caps)
        .expect("hostile fixture loads with every grant");
    Supervisor::start(plugin, vec![], Backoff::default()).expect("starts")
}

/// Applies a good rule set, then one that triggers `behaviour`; returns the
/// error, after checking that the host is still usable: the next apply of a
/// clean rule set works.
fn provoke(limits: Limits, behaviour: &str) -> PluginError {
    let mut sup = supervisor(limits, Capabilities::default());
    sup.apply(&rule_set(1, &["ns/a", "ns/b"])).expect("a clean rule set applies");
    let err = sup
        .apply(&rule_set(2, &["ns/a", &format!("hostile/{behaviour}")]))
        .expect_err("the hostile apply must fail");
    let msg = err.to_string();
    assert!(msg.contains(HOSTILE), "error must name the plugin: {msg}");
    sup.apply(&rule_set(3, &["ns/a", "ns/c"])).expect("the next call works");
    assert_eq!(sup.status().generation, Some(3));
    err
}

#[test]
fn an_endless_loop_is_stopped_by_the_cpu_deadline() {
    let limits = Limits { call_deadline: Duration::from_millis(200), ..Limits::default() };
    let started = Instant::now();
    let err = provoke(limits, "spin");
    assert!(
        matches!(err.limit(), Some(LimitKind::CpuDeadline { deadline }) if deadline == Duration::from_millis(200)),
        "{err}"
    );
    assert!(err.to_string().contains("CPU deadline"), "{err}");
    // Generous bound: the deadline stopped it, not the test harness.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let err = provoke(limits, "memory-bomb");
    match err.limit() {
        Some(LimitKind::Memory { limit, desired }) => {
            assert_eq!(limit, 32 << 20);
            assert!(desired > limit);
        }
        _ => panic!("expected the memory limit: {err}"),
    }
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn files_environment_and_sockets_are_out_of_reach() {
    let err = provoke(Limits::default(), "escape");
    match err {
        PluginError::Backend { message, .. } => {
            assert!(message.starts_with("sandbox held"), "the fixture reached something: {message}")
        }
        other => panic!("expected the fixture's own report, got: {other}"),
    }
}

#[test]
fn an_oversized_log_message_is_refused() {
    let err = provoke(Limits::default(), "log-oversized");
    match err.limit() {
        Some(LimitKind::LogMessage { limit, length }) => {
            assert_eq!(limit, Limits::default().log_message_bytes);
            assert_eq!(length, 8 << 20);
        }
        _ => panic!("expected the log message limit: {err}"),
    }
}

#[test]
fn an_oversized_host_call_payload_is_refused_before_it_reaches_the_provider() {
    struct Counting(Arc<Mutex<usize>>);
    impl NftProvider for Counting {
        fn apply_batch(&self, _: &str, _: &str) -> Result<(), String> {
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
        fn list_table(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
            Ok(String::new())
        }
        fn delete_table(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }
    let seen = Arc::new(Mutex::new(0));
    let caps = Capabilities { nft: Arc::new(Counting(seen.clone())), ..Capabilities::default() };
    let limits = Limits { host_call_payload_bytes: 1 << 20, ..Limits::default() };
    let mut sup = supervisor(limits, caps);
    let err = sup.apply(&rule_set(1, &["hostile/nft-oversized"])).expect_err("refused");
    assert!(
        matches!(err.limit(), Some(LimitKind::HostCallPayload { limit }) if limit == 1 << 20),
        "{err}"
    );
    assert_eq!(*seen.lock().unwrap(), 0, "the provider never saw the batch");
    sup.apply(&rule_set(2, &["ns/a"])).expect("next call works");
}

#[test]
fn a_flood_of_host_calls_exhausts_the_call_budget() {
    let limits = Limits { host_calls_per_call: 1_000, ..Limits::default() };
    let err = provoke(limits, "log-spam");
    assert!(matches!(err.limit(), Some(LimitKind::HostCalls { limit: 1_000 })), "{err}");
    assert!(err.to_string().contains("host-call budget"), "{err}");
}

#[test]
fn capability_calls_reach_the_provider_with_the_plugin_named() {
    struct Recorder(Arc<Mutex<Vec<String>>>);
    impl NftProvider for Recorder {
        fn apply_batch(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn list_table(&self, plugin: &str, family: &str, name: &str) -> Result<String, String> {
            self.0.lock().unwrap().push(format!("{plugin} {family} {name}"));
            Err(format!("table {family} {name} is not granted to {plugin}"))
        }
        fn delete_table(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let caps = Capabilities { nft: Arc::new(Recorder(calls.clone())), ..Capabilities::default() };
    let mut sup = supervisor(Limits::default(), caps);
    let err = sup.apply(&rule_set(1, &["hostile/nft"])).expect_err("refused by the provider");
    match err {
        PluginError::Backend { code, message, .. } => {
            assert_eq!(code, "capability");
            assert!(message.contains("not granted to palisade_fixture_hostile"), "{message}");
        }
        other => panic!("unexpected: {other}"),
    }
    assert_eq!(*calls.lock().unwrap(), vec!["palisade_fixture_hostile inet someone-elses-table"]);

    // Without a dataplane behind it, the capability says so.
    let mut bare = supervisor(Limits::default(), Capabilities::default());
    let err = bare.apply(&rule_set(1, &["hostile/bpf"])).expect_err("no provider");
    assert!(err.to_string().contains("no eBPF dataplane"), "{err}");
}

#[test]
fn time_spent_serving_capability_calls_does_not_count_against_the_cpu_deadline() {
    // An nft transaction of a large rule set takes the host seconds; the
    // plugin's own deadline must not expire meanwhile.
    struct Slow;
    impl NftProvider for Slow {
        fn apply_batch(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn list_table(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
            std::thread::sleep(Duration::from_millis(600));
            Err("slow provider answered".into())
        }
        fn delete_table(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }
    let limits = Limits { call_deadline: Duration::from_millis(200), ..Limits::default() };
    let caps = Capabilities { nft: Arc::new(Slow), ..Capabilities::default() };
    let mut sup = supervisor(limits, caps);
    let err = sup.apply(&rule_set(1, &["hostile/nft"])).expect_err("the provider refuses");
    match err {
        PluginError::Backend { code, message, .. } => {
            assert_eq!(code, "capability");
            assert_eq!(message, "slow provider answered");
        }
        other => panic!("the plugin was interrupted instead: {other}"),
    }
    assert_eq!(sup.status().restarts, 0, "no trap, no fresh instance");
}
