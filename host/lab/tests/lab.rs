//! The lab on the real kernel (needs root, as in CI): topology, listeners,
//! probe semantics, blocking a path without nftables, SCTP (on a kernel
//! without SCTP: at the packet level, judged by nftables in the node), and
//! teardown on every exit path.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palisade_lab::{
    cleanup_leftovers, leftovers, sctp_supported, Lab, LabError, LabExternal, LabPod, LabSpec,
    Observed, ProbeOutcome, ProbeRequest, DEFAULT_PROBE_TIMEOUT,
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

/// The detail of an SCTP probe that reached a host without SCTP.
const NO_SCTP_STACK: &str = "protocol unreachable: reached the host, no SCTP stack";

/// Asserts that an SCTP probe reached `r.to`: on a kernel with SCTP, the
/// listener answered (declared port) or the association was aborted;
/// without SCTP, the destination kernel answered protocol unreachable.
fn assert_sctp_reached(lab: &Lab, r: &ProbeRequest, o: &ProbeOutcome, listening: bool) {
    assert!(o.allowed, "{r:?}: {}", o.detail);
    match lab.sctp_support() {
        Ok(()) if listening => {
            assert_eq!(o.observed, Observed::Answered { by: Some(r.to.clone()) }, "{}", o.detail);
        }
        Ok(()) => assert_eq!(o.observed, Observed::Refused, "{}", o.detail),
        Err(_) => {
            assert_eq!(o.observed, Observed::Refused, "{r:?}: {}", o.detail);
            assert!(o.detail.contains(NO_SCTP_STACK), "{}", o.detail);
        }
    }
}

#[test]
fn sctp_support_is_detected_and_reported() {
    let lab = up(&spec(14));
    assert_eq!(lab.sctp_support().map_err(str::to_string), sctp_supported());
    match sctp_supported() {
        Ok(()) => {
            let b = lab.endpoint("x/b").unwrap_or_else(|| panic!("x/b"));
            assert!(b.ports.contains(&(Sctp, 9000)) && b.unbound.is_empty(), "{b:?}");
        }
        Err(why) => {
            eprintln!("SCTP: {why}");
            assert!(why.contains("SCTP is not supported by this kernel"), "{why}");
            assert!(why.contains("IPPROTO_SCTP"), "{why}");
            let b = lab.endpoint("x/b").unwrap_or_else(|| panic!("x/b"));
            assert_eq!(b.unbound, vec![(Sctp, 9000)]);
            let d = lab.describe();
            assert!(d.contains("no listener: 9000/SCTP"), "{d}");
            assert!(d.contains("SCTP probes send a raw INIT"), "{d}");
        }
    }
}

#[test]
fn sctp_probes_reach_pods_in_every_direction_at_once() {
    let lab = up(&spec(21));
    let pods = ["x/a", "x/b", "y/c"];
    let mut requests = Vec::new();
    for from in pods {
        for to in pods.iter().filter(|t| **t != from) {
            for port in [9000, 9001, 80] {
                requests.push(ProbeRequest::new(from, to, Sctp, port));
            }
        }
    }
    // From an external endpoint too, and to nobody's address.
    requests.push(ProbeRequest::new("ip:192.0.21.10", "x/b", Sctp, 9000));
    let nobody = ProbeRequest::new("x/a", "ip:10.99.99.99", Sctp, 9000);
    requests.push(nobody.clone());
    // Several rounds: every probe in both directions at once (a namespace
    // that swallowed INITs while probing itself would deny some).
    for round in 0..3 {
        let started = Instant::now();
        let o = lab.probe_many(&requests, DEFAULT_PROBE_TIMEOUT);
        eprintln!("round {round}: {} SCTP probes in {:?}", requests.len(), started.elapsed());
        for (r, o) in requests.iter().zip(&o) {
            if *r == nobody {
                assert_eq!(o.observed, Observed::TimedOut, "{}", o.detail);
                assert!(!o.allowed);
                continue;
            }
            let listening = lab.endpoint(&r.to).is_some_and(|e| e.ports.contains(&(Sctp, r.port)));
            assert_sctp_reached(&lab, r, o, listening);
        }
        assert!(started.elapsed() < DEFAULT_PROBE_TIMEOUT * 3, "probes run in parallel");
    }
}

#[test]
fn an_sctp_path_blocked_in_the_node_namespace_is_denied() {
    let lab = up(&spec(22));
    let node = lab.node_netns_name().to_string();
    let b = lab.endpoint("x/b").unwrap_or_else(|| panic!("x/b")).clone();
    let sctp = ProbeRequest::new("x/a", "x/b", Sctp, 9000);
    let check_denied = |o: &ProbeOutcome| {
        assert!(!o.allowed, "{}", o.detail);
        assert!(
            matches!(o.observed, Observed::TimedOut | Observed::Unreachable(_)),
            "{:?}: {}",
            o.observed,
            o.detail
        );
        if o.observed == Observed::TimedOut {
            assert!(o.elapsed >= DEFAULT_PROBE_TIMEOUT - Duration::from_millis(5), "{o:?}");
        }
        eprintln!("denied: {} ({:?})", o.detail, o.elapsed);
    };
    let o = lab.probe(&sctp, DEFAULT_PROBE_TIMEOUT);
    assert_sctp_reached(&lab, &sctp, &o, true);

    // No route to x/b in the node.
    ip_cmd(&["-n", &node, "route", "del", &format!("{}/32", b.ip), "dev", &b.host_interface]);
    check_denied(&lab.probe(&sctp, DEFAULT_PROBE_TIMEOUT));

    ip_cmd(&["-n", &node, "route", "add", &format!("{}/32", b.ip), "dev", &b.host_interface]);
    let o = lab.probe(&sctp, DEFAULT_PROBE_TIMEOUT);
    assert_sctp_reached(&lab, &sctp, &o, true);

    // The node-side veth down.
    ip_cmd(&["-n", &node, "link", "set", &b.host_interface, "down"]);
    check_denied(&lab.probe(&sctp, DEFAULT_PROBE_TIMEOUT));
}

/// Runs `nft -f -` with `ruleset` inside the namespace `netns`.
fn nft(netns: &str, ruleset: &str) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("nft: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("nft stdin"))
        .write_all(ruleset.as_bytes())
        .unwrap_or_else(|e| panic!("nft stdin: {e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("nft: {e}"));
    assert!(out.status.success(), "nft -f:\n{ruleset}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packets counted by the rule of `listing` whose line contains `rule`.
fn counted(listing: &str, rule: &str) -> u64 {
    let line = listing
        .lines()
        .find(|l| l.contains(rule))
        .unwrap_or_else(|| panic!("no rule `{rule}` in\n{listing}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no counter in `{line}`"))
}

#[test]
fn nftables_in_the_node_namespace_matches_sctp_ports() {
    let lab = up(&spec(23));
    let node = lab.node_netns_name().to_string();
    // The shape of the real backend: replies and ICMP errors of tracked
    // flows first, then the policy, in a forward chain with policy accept.
    nft(
        &node,
        "table inet labtest {
            chain forward {
                type filter hook forward priority 0; policy accept;
                ct state established,related counter accept
                ct state new meta l4proto sctp counter comment \"new sctp\"
                meta l4proto sctp th dport 80 counter drop
            }
        }\n",
    );
    let requests = [
        ProbeRequest::new("x/a", "x/b", Sctp, 80),
        ProbeRequest::new("x/a", "x/b", Sctp, 81),
        ProbeRequest::new("y/c", "x/a", Sctp, 80),
        ProbeRequest::new("y/c", "x/a", Sctp, 9000),
        ProbeRequest::new("x/a", "x/b", Tcp, 80),
    ];
    let started = Instant::now();
    let o = lab.probe_many(&requests, DEFAULT_PROBE_TIMEOUT);
    eprintln!("{} probes in {:?}", requests.len(), started.elapsed());
    for i in [0, 2] {
        assert!(!o[i].allowed, "{:?}: {}", requests[i], o[i].detail);
        assert_eq!(o[i].observed, Observed::TimedOut, "{}", o[i].detail);
    }
    assert_sctp_reached(&lab, &requests[1], &o[1], false);
    assert_sctp_reached(&lab, &requests[3], &o[3], true);
    assert!(o[4].allowed, "TCP 80 is not SCTP: {}", o[4].detail);

    let listing = nft(&node, "list table inet labtest\n");
    eprintln!("{listing}");
    assert_eq!(counted(&listing, "dport 80 counter"), 2, "the two INITs to port 80 were dropped");
    // Every INIT was a new, valid SCTP flow for conntrack (a bad checksum
    // would make it invalid), and the answers to the two that passed were
    // related to it.
    assert_eq!(counted(&listing, "new sctp"), 4);
    if lab.sctp_support().is_err() {
        assert!(counted(&listing, "established,related") >= 2, "the ICMP answers came back");
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
