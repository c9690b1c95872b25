//! End to end, as root: `palisade run` with the eBPF plugin enforces a
//! watched manifest directory on the wire of a namespace lab (the same
//! walk as run.rs, with the TC classifier instead of nftables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{
    allowed, eventually, palisade_run, pods_yaml, shop_lab, write, Bpffs, Daemon, DENY, NS,
};

#[test]
fn run_with_ebpf_enforces_the_watched_directory_on_the_wire_and_follows_its_changes() {
    let lab = shop_lab("10.78.0.1", "10.78.0.2");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ns.yaml", NS);
    write(dir.path(), "pods.yaml", &pods_yaml("10.78.0.1", "10.78.0.2"));
    assert!(allowed(&lab), "no policy: open");

    // Pins on a bpffs of the test's own, gone with it.
    let pins = Bpffs::mount("run-ebpf");
    let mut daemon = Daemon::spawn(palisade_run(
        &[
            "--plugin",
            "ebpf",
            "--source",
            &format!("dir:{}", dir.path().display()),
            "--bpf-pin-dir",
            &pins.0.display().to_string(),
        ],
        &lab.node_netns(),
        "palisade-cli-test-cache-ebpf",
    ));
    // The daemon's stderr, collected as it comes: the first programming
    // waits for the plugin's compilation when the cache is cold.
    let (said, reader) = daemon.collect_stderr();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !said.lock().unwrap().contains("programmed generation") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(said.lock().unwrap().contains("programmed generation 1"), "{}", said.lock().unwrap());

    write(dir.path(), "deny.yaml", DENY);
    assert!(
        eventually(&lab, false, Duration::from_secs(10)),
        "the new policy isolates web: {}",
        said.lock().unwrap()
    );
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    assert!(eventually(&lab, true, Duration::from_secs(10)), "deleting it lifts the isolation");
    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false, Duration::from_secs(10)), "and again");

    // Stop: the programs and their links go with the daemon.
    let status = daemon.stop();
    reader.join().unwrap();
    let stderr = said.lock().unwrap().clone();
    assert!(status.success(), "{stderr}");
    assert!(allowed(&lab), "the programs were removed on exit");
    let progs = Command::new("bpftool").args(["prog", "show"]).output().unwrap();
    let progs = String::from_utf8_lossy(&progs.stdout);
    assert!(!progs.contains(" name pl_ingress ") && !progs.contains(" name pl_egress "), "{progs}");
}
