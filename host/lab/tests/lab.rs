//! The lab on the real kernel (needs root, as in CI): topology, listeners,
//! probe semantics, blocking a path without nftables, SCTP status, and
//! teardown on every exit path.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_lab::{
    cleanup_leftovers, leftovers, Lab, LabError, LabExternal, LabPod, LabSpec, Observed,
    ProbeRequest, DEFAULT_PROBE_TIMEOUT,
};
use palisade_model::Protocol::{self, Sctp, Tcp, Udp};

fn pod(key: &str, ip: &str, ports: &[(Protocol, u16)]) -> LabPod {
    LabPod {
        key: key.into(),
        ip: ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")),
        ports: ports.to_vec(),
    }
}

/// Three pods and one external, each pod on its own /24 so that no two
/// tests' labs collide in any way that matters (they are separate
/// namespaces anyway).
fn spec(net: u8) -> LabSpec {
    LabSpec {
        pods: vec![
            pod("x/a", &format!("10.{net}.1.1"), &[(Tcp, 80), (Udp, 53), (Sctp, 9000)]),
            pod("x/b", &format!("10.{net}.1.2"), &[(Tcp, 80), (Udp, 53), (Sctp, 9000)]),
            pod("y/c", &format!("10.{net}.2.1"), &[(Tcp, 8080), (Udp, 53)]),
        ],
        externals: vec![LabExternal {
            ports: vec![(Tcp, 80)],
            ..LabExternal::ip(format!("192.0.{net}.10").parse().unwrap_or_else(|e| panic!("{e}")))
        }],
        notes: Vec::new(),
    }
}

/// Namespaces (`ip netns list`) whose name starts with `<prefix>-`.
fn namespaces_of(prefix: &str) -> Vec<String> {
    let out =
        Command::new("ip").args(["netns", "list"]).output().unwrap_or_else(|e| panic!("ip: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

fn ip_cmd(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn up(spec: &LabSpec) -> Lab {
    let started = Instant::now();
    let lab = Lab::up(spec).unwrap_or_else(|e| panic!("lab up: {e}"));
    eprintln!(
        "lab {} up: {} endpoints in {:?}",
        lab.prefix(),
        spec.pods.len() + spec.externals.len(),
        started.elapsed()
    );
    lab
}

#[test]
fn listeners_answer_with_their_identity_and_everything_is_allowed_without_policy() {
    let lab = up(&spec(11));
    assert_eq!(namespaces_of(lab.prefix()).len(), 5, "node + 3 pods + 1 external");
    assert!(lab
        .host_interface("x/a")
        .is_some_and(|i| i.len() <= 15 && i.starts_with(lab.prefix())));
    assert!(lab.node_netns().exists());

    let endpoints = ["x/a", "x/b", "y/c", "ip:192.0.11.10"];
    let mut requests = Vec::new();
    for from in endpoints {
        for to in endpoints.iter().filter(|t| **t != from) {
            let ports = &lab.endpoint(to).unwrap_or_else(|| panic!("{to}")).ports;
            for &(protocol, port) in ports.iter().filter(|(p, _)| *p != Sctp) {
                requests.push(ProbeRequest::new(from, to, protocol, port));
            }
        }
    }
    let started = Instant::now();
    let outcomes = lab.probe_many(&requests, DEFAULT_PROBE_TIMEOUT);
    eprintln!("{} probes (all allowed) in {:?}", requests.len(), started.elapsed());
    assert!(requests.len() > 20);
    for (r, o) in requests.iter().zip(&outcomes) {
        assert!(o.allowed, "{r:?}: {}", o.detail);
        assert_eq!(
            o.observed,
            Observed::Answered { by: Some(r.to.clone()) },
            "{r:?}: {}",
            o.detail
        );
    }
}

#[test]
fn a_closed_port_is_refused_and_so_allowed_and_nobodys_address_times_out() {
    let lab = up(&spec(12));
    let requests = [
        ProbeRequest::new("x/a", "x/b", Tcp, 81),
        ProbeRequest::new("x/a", "x/b", Udp, 54),
        ProbeRequest::new("ip:192.0.12.10", "y/c", Tcp, 80),
        ProbeRequest::new("x/a", "ip:10.99.99.99", Tcp, 80),
        ProbeRequest::new("x/a", "ip:10.99.99.99", Udp, 53),
    ];
    // Twice: closed UDP ports keep answering (no ICMP rate limit), and a
    // second round gets fresh source ports.
    for round in 0..2 {
        let started = Instant::now();
        let o = lab.probe_many(&requests, DEFAULT_PROBE_TIMEOUT);
        eprintln!("round {round}: {} probes in {:?}", requests.len(), started.elapsed());
        for i in 0..3 {
            assert!(o[i].allowed, "{:?}: {}", requests[i], o[i].detail);
            assert_eq!(o[i].observed, Observed::Refused, "{}", o[i].detail);
        }
        for i in 3..5 {
            assert!(!o[i].allowed, "{:?}: {}", requests[i], o[i].detail);
            assert_eq!(o[i].observed, Observed::TimedOut, "{}", o[i].detail);
            assert!(
                o[i].elapsed >= DEFAULT_PROBE_TIMEOUT - Duration::from_millis(5),
                "{:?}",
                o[i].elapsed
            );
        }
        assert!(started.elapsed() < DEFAULT_PROBE_TIMEOUT * 3, "probes run in parallel");
    }
    // Unknown endpoints are no verdict.
    let o = lab.probe(&ProbeRequest::new("x/nobody", "x/b", Tcp, 80), DEFAULT_PROBE_TIMEOUT);
    assert!(o.is_failure() && o.detail.contains("x/nobody"), "{}", o.detail);
}

#[test]
fn a_path_blocked_in_the_node_namespace_is_denied() {
    let lab = up(&spec(13));
    let node = lab.node_netns_name().to_string();
    let b = lab.endpoint("x/b").unwrap_or_else(|| panic!("x/b")).clone();
    let tcp = ProbeRequest::new("x/a", "x/b", Tcp, 80);
    let udp = ProbeRequest::new("x/a", "x/b", Udp, 53);
    assert!(lab.probe(&tcp, DEFAULT_PROBE_TIMEOUT).allowed);

    // Traffic to x/b has no route in the node any more: dropped there.
    ip_cmd(&["-n", &node, "route", "del", &format!("{}/32", b.ip), "dev", &b.host_interface]);
    let o = lab.probe_many(&[tcp.clone(), udp.clone()], DEFAULT_PROBE_TIMEOUT);
    assert!(!o[0].allowed && !o[1].allowed, "{} / {}", o[0].detail, o[1].detail);

    ip_cmd(&["-n", &node, "route", "add", &format!("{}/32", b.ip), "dev", &b.host_interface]);
    let o = lab.probe_many(&[tcp.clone(), udp.clone()], DEFAULT_PROBE_TIMEOUT);
    assert!(o[0].allowed && o[1].allowed, "{} / {}", o[0].detail, o[1].detail);

    // The node-side veth down: denied as well.
    ip_cmd(&["-n", &node, "link", "set", &b.host_interface, "down"]);
    let o = lab.probe(&tcp, DEFAULT_PROBE_TIMEOUT);
    assert!(!o.allowed, "{}", o.detail);
}

#[test]
fn sctp_is_probed_or_reported_as_unsupported() {
    let lab = up(&spec(14));
    let o = lab.probe_many(
        &[ProbeRequest::new("x/a", "x/b", Sctp, 9000), ProbeRequest::new("x/a", "x/b", Sctp, 9001)],
        DEFAULT_PROBE_TIMEOUT,
    );
    match lab.sctp_support() {
        Ok(()) => {
            assert_eq!(
                o[0].observed,
                Observed::Answered { by: Some("x/b".into()) },
                "{}",
                o[0].detail
            );
            assert_eq!(o[1].observed, Observed::Refused, "{}", o[1].detail);
        }
        Err(why) => {
            eprintln!("SCTP: {why}");
            assert!(why.contains("SCTP is not supported"), "{why}");
            for outcome in &o {
                assert!(outcome.is_failure(), "{}", outcome.detail);
                assert!(outcome.detail.contains("SCTP is not supported"), "{}", outcome.detail);
            }
            let b = lab.endpoint("x/b").unwrap_or_else(|| panic!("x/b"));
            assert_eq!(b.unbound, vec![(Sctp, 9000)]);
            assert!(lab.describe().contains("no listener: 9000/SCTP"), "{}", lab.describe());
        }
    }
}

#[test]
fn pods_come_and_go_in_a_running_lab() {
    let mut lab = up(&spec(15));
    lab.add_pod(&pod("z/d", "10.15.3.1", &[(Tcp, 443)])).unwrap_or_else(|e| panic!("{e}"));
    let to_d = ProbeRequest::new("x/a", "z/d", Tcp, 443);
    let o = lab.probe(&to_d, DEFAULT_PROBE_TIMEOUT);
    assert_eq!(o.observed, Observed::Answered { by: Some("z/d".into()) }, "{}", o.detail);
    assert!(lab.add_pod(&pod("z/e", "10.15.3.1", &[])).is_err(), "address taken");

    let d_ns = lab.endpoint("z/d").map(|e| e.netns.clone()).unwrap_or_default();
    assert!(lab.remove_pod("z/d").unwrap_or_else(|e| panic!("{e}")));
    assert!(!namespaces_of(lab.prefix()).contains(&d_ns));
    let o = lab.probe(&ProbeRequest::new("x/a", "ip:10.15.3.1", Tcp, 443), DEFAULT_PROBE_TIMEOUT);
    assert!(!o.allowed, "{}", o.detail);
    assert!(!lab.remove_pod("z/d").unwrap_or_else(|e| panic!("{e}")));

    lab.add_external(&LabExternal::ip("198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}"))))
        .unwrap_or_else(|e| panic!("{e}"));
    let o =
        lab.probe(&ProbeRequest::new("ip:198.51.100.7", "y/c", Tcp, 8080), DEFAULT_PROBE_TIMEOUT);
    assert!(o.allowed, "{}", o.detail);
}

#[test]
fn teardown_leaves_no_namespace_behind() {
    let lab = up(&spec(16));
    let prefix = lab.prefix().to_string();
    assert_eq!(namespaces_of(&prefix).len(), 5);
    let started = Instant::now();
    lab.down().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("lab {prefix} down in {:?}", started.elapsed());
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());

    // And by drop.
    let lab = up(&spec(16));
    let prefix = lab.prefix().to_string();
    drop(lab);
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
}

#[test]
fn a_panic_with_a_live_lab_still_tears_it_down() {
    let prefix = Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let lab = up(&spec(17));
        *prefix.lock().unwrap_or_else(|e| e.into_inner()) = lab.prefix().to_string();
        assert_eq!(namespaces_of(lab.prefix()).len(), 5);
        panic!("a test fails while its lab is up");
    });
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(!prefix.is_empty());
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());
}

#[test]
fn a_lab_that_fails_half_way_up_is_torn_down() {
    // The same TCP port twice: the second listener cannot bind, after the
    // namespaces, veths and routes were made.
    let mut bad = spec(18);
    bad.pods[2].ports = vec![(Tcp, 80), (Tcp, 80)];
    let err = Lab::up(&bad).err().unwrap_or_else(|| panic!("a lab with a port twice came up"));
    let LabError::Up { prefix, source } = &err else { panic!("{err}") };
    assert!(source.to_string().contains("cannot listen on 80/TCP"), "{err}");
    assert_eq!(namespaces_of(prefix), Vec::<String>::new(), "{err}");
}

#[test]
fn specs_that_cannot_be_built_are_refused_before_anything_is_made() {
    let mut dup = spec(19);
    dup.pods[1].ip = dup.pods[0].ip;
    assert!(
        matches!(Lab::up(&dup), Err(LabError::Spec(m)) if m.contains("already belongs to x/a"))
    );
    let mut v6 = spec(19);
    v6.pods[0].ip = "fd00::1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(Lab::up(&v6), Err(LabError::Spec(m)) if m.contains("IPv4 only")));
}

#[test]
fn cleanup_removes_namespaces_that_no_live_lab_owns() {
    // A leaked namespace of the naming scheme, without an owner marker.
    let name = format!("pl{:04x}-node", (std::process::id() % 0x10000) ^ 0x5a5a);
    ip_cmd(&["netns", "add", &name]);
    assert!(leftovers().contains(&name), "{:?}", leftovers());

    // A live lab of this process is no leftover and survives the cleanup.
    let lab = up(&spec(20));
    assert!(leftovers().iter().all(|n| !n.starts_with(lab.prefix())));
    let removed = cleanup_leftovers().unwrap_or_else(|e| panic!("{e}"));
    assert!(removed.contains(&name), "{removed:?}");
    assert!(namespaces_of(&name.replace("-node", "")).is_empty());
    assert_eq!(namespaces_of(lab.prefix()).len(), 5);
    let o = lab.probe(&ProbeRequest::new("x/a", "x/b", Tcp, 80), DEFAULT_PROBE_TIMEOUT);
    assert!(o.allowed, "{}", o.detail);
}
