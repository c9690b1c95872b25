//! Fault tests of the plugin itself, as root, on the wire of the three-pod
//! lab, under the probers of the other fault tests (`x/c → x/a` must stay
//! denied, `x/b → x/a` allowed):
//!
//! - **A trap mid-update**: the plugin runs with a sandbox limit that a
//!   large policy change breaks in the middle of the plugin's `update`
//!   (eBPF: after some of its map writes; nftables: at its batch). The
//!   change is retried and keeps failing; the policy in force must not move
//!   until it is withdrawn.
//! - **An upgrade**: the daemon is stopped and started again with other
//!   plugin bytes (for eBPF, another classifier object: a new pin
//!   generation), then downgraded back.
//!
//! Expected: 0 leaked and 0 dropped (docs/reliability.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;

use support::three_pods::{
    lab, logged, manifests, reset, start, start_with, under_probers, POLICY,
};
use support::{write, Bpffs};

/// A policy with `n` /32 ipBlock peers of `x/a` on TCP 9999: it changes
/// nothing the probers see, and it is large to program.
fn many_blocks(n: usize) -> String {
    let mut out = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: many-blocks, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - ports: [{port: 9999}]\n    from:\n",
    );
    for i in 0..n {
        out.push_str(&format!("    - ipBlock: {{cidr: 10.200.{}.{}/32}}\n", i / 250, i % 250 + 1));
    }
    out
}

/// The entries of the pinned eBPF map `map` of the daemon's generation.
fn pinned_entries(pins: &Path, map: &str) -> usize {
    let file = walk_files(pins)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == map))
        .unwrap_or_else(|| panic!("no pinned {map} under {}", pins.display()));
    let out = Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(&file).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().map(Vec::len).unwrap()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    support::three_pods::walk(dir).into_iter().filter(|p| p.is_file()).collect()
}

/// The limit the large change breaks in the middle of the update: the
/// bytes of one capability call. The nftables plugin sends a change as one
/// batch; the eBPF plugin loads its 25 kB object in one call, then writes
/// a batch per map: the endpoints', the ports' (the large change adds
/// one), then the peers' (3,000 entries, well above the limit), so that
/// the trap comes after some of the change is in the kernel.
const TIGHT_LIMIT: [&str; 2] = ["--plugin-host-call-kb", "32"];

/// The entries of the pinned eBPF maps the sweep keeps exact (not the LRU
/// flow table).
fn policy_entries(pins: &Path) -> usize {
    ["map_pl_endpoints", "map_pl_peers", "map_pl_ports"]
        .iter()
        .map(|m| pinned_entries(pins, m))
        .sum()
}

fn trap_mid_update(backend: &str, base: &str) {
    let lab = lab(base);
    let bpffs = Bpffs::mount(&format!("{backend}-trap"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "objects.yaml", &manifests(base));
    write(dir.path(), "policy.yaml", POLICY);
    let netns = lab.node_netns();
    let mut run = start_with(backend, dir.path(), &netns, &bpffs.0, &TIGHT_LIMIT);
    let entries_before = (backend == "ebpf").then(|| policy_entries(&bpffs.0));
    let broke = "broke the host-call payload (32768 bytes per host call) limit during `update`";

    let probed = under_probers(&lab, |phase| {
        std::thread::sleep(Duration::from_millis(700));
        phase("running");
        write(dir.path(), "many.yaml", &many_blocks(3000));
        logged(&run, &[broke], 1);
        // The retries (a full apply after 1 s; then the supervisor's
        // backoff) break the limit again.
        logged(&run, &["broke the", "during `apply`"], 1);
        phase("the plugin trapped mid-update, and again on the retry");
        std::thread::sleep(Duration::from_millis(1000));
        phase("while the change keeps failing");
        std::fs::remove_file(dir.path().join("many.yaml")).unwrap();
        logged(&run, &["programmed the full rule set"], 2);
        std::thread::sleep(Duration::from_millis(700));
        phase("the change withdrawn, programmed again");
    });
    let said = run.said();
    assert!(said.contains("fresh plugin instance; last good rule set re-applied"), "{said}");
    probed.check(&format!("plugin trap {backend}"), 400, &said);
    if let Some(before) = entries_before {
        // What the trapped update had written is gone: the fresh instance
        // re-applied the last good rule set and the host swept the rest.
        assert_eq!(policy_entries(&bpffs.0), before);
    }
    run.terminate();
    reset(backend, &netns, &bpffs.0);
}

#[test]
fn nftables_plugin_trap_mid_update_moves_nothing() {
    trap_mid_update("nftables", "10.85.0");
}

#[test]
fn ebpf_plugin_trap_mid_update_moves_nothing() {
    trap_mid_update("ebpf", "10.86.0");
}

/// The built plugin `backend`'s file.
fn built_plugin(backend: &str) -> PathBuf {
    let name = format!("palisade_{}.wasm", backend.replace('-', "_"));
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/release").join(name);
    assert!(p.is_file(), "{} (scripts/build-plugins)", p.display());
    p
}

/// Other bytes of the same plugin, in `dir` under the name the daemon
/// looks for: a custom section appended to the component (a new build),
/// and for eBPF one byte of the embedded classifier's `.comment` changed (a
/// new object, so a new pin generation).
fn upgraded_plugin(backend: &str, dir: &Path) -> PathBuf {
    let src = built_plugin(backend);
    let mut bytes = std::fs::read(&src).unwrap();
    if backend == "ebpf" {
        let elf = find(&bytes, b"\x7fELF\x02\x01").expect("the plugin embeds its classifier");
        let at = elf + find(&bytes[elf..], b"clang version").expect("the object's .comment");
        bytes[at] = b'C';
    }
    let name = b"palisade-upgrade-test";
    let payload = b"revision 2";
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 sizes");
    bytes.extend_from_slice(&[0, size as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let out = dir.join(src.file_name().unwrap());
    std::fs::write(&out, bytes).unwrap();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The pin generations (`wit..-<object hash>`) of the daemon's plugin.
fn generations(pins: &Path) -> Vec<String> {
    let mut out: Vec<String> = support::three_pods::walk(pins)
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("wit"))
        .collect();
    out.sort();
    out
}

fn upgrade(backend: &str, base: &str) {
    let lab = lab(base);
    let bpffs = Bpffs::mount(&format!("{backend}-upgrade"));
    let dir = tempfile::tempdir().unwrap();
    let next = tempfile::tempdir().unwrap();
    write(dir.path(), "objects.yaml", &manifests(base));
    write(dir.path(), "policy.yaml", POLICY);
    let netns = lab.node_netns();
    upgraded_plugin(backend, next.path());
    let plugin_dir = next.path().display().to_string();
    let mut run = start(backend, dir.path(), &netns, &bpffs.0);
    let first = generations(&bpffs.0);
    let mut upgraded = Vec::new();

    let probed = under_probers(&lab, |phase| {
        std::thread::sleep(Duration::from_millis(700));
        phase("running");
        assert!(run.terminate().success(), "{}", run.said());
        run = start_with(backend, dir.path(), &netns, &bpffs.0, &["--plugin-dir", &plugin_dir]);
        phase("upgraded");
        upgraded = generations(&bpffs.0);
        std::thread::sleep(Duration::from_millis(700));
        assert!(run.terminate().success(), "{}", run.said());
        run = start(backend, dir.path(), &netns, &bpffs.0);
        phase("downgraded");
        std::thread::sleep(Duration::from_millis(700));
        phase("running the first build again");
    });
    let said = run.said();
    probed.check(&format!("plugin upgrade {backend}"), 400, &said);
    if backend == "ebpf" {
        // One generation at a time: the upgrade's own, then the first's.
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(upgraded.len(), 1, "{upgraded:?}");
        assert_ne!(first, upgraded, "another object, another generation");
        assert_eq!(generations(&bpffs.0), first);
        assert!(said.contains(r#""adopted":true"#), "the links were kept: {said}");
    }
    run.terminate();
    reset(backend, &netns, &bpffs.0);
}

#[test]
fn nftables_plugin_upgrade_under_probers() {
    upgrade("nftables", "10.87.0");
}

#[test]
fn ebpf_plugin_upgrade_under_probers() {
    upgrade("ebpf", "10.88.0");
}
