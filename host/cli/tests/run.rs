//! End to end, as root: `palisade run` with the nftables plugin enforces a
//! watched manifest directory on the wire of a namespace lab.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

mod support;

use support::{allowed, eventually, palisade_run, pods_yaml, shop_lab, write, Daemon, DENY, NS};

#[test]
fn run_enforces_the_watched_directory_on_the_wire_and_follows_its_changes() {
    let lab = shop_lab("10.77.0.1", "10.77.0.2");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ns.yaml", NS);
    write(dir.path(), "pods.yaml", &pods_yaml("10.77.0.1", "10.77.0.2"));
    assert!(allowed(&lab), "no policy: open");

    let mut daemon = Daemon::spawn(palisade_run(
        &["--plugin", "nftables", "--source", &format!("dir:{}", dir.path().display())],
        &lab.node_netns(),
        "palisade-cli-test-cache",
    ));

    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false, Duration::from_secs(10)), "the new policy isolates web");
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    assert!(eventually(&lab, true, Duration::from_secs(10)), "deleting it lifts the isolation");
    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false, Duration::from_secs(10)), "and again");

    // Stop: with --reset-on-exit the table goes, and traffic flows again.
    let (status, stderr) = daemon.stop_and_read();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("programmed generation 1"), "{stderr}");
    assert!(allowed(&lab), "reset on exit removed the rules");
    let tables = Command::new("ip")
        .args(["netns", "exec", lab.node_netns_name(), "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tables.stdout).trim().is_empty());
}
