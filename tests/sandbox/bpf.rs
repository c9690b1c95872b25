//! The host's `bpf` capability against the hostile fixture, with the real
//! dataplane (aya, the kernel's verifier, TCX) in a throwaway network
//! namespace that lives as long as one parked thread (needs root).
//!
//! The namespace has a veth pair `pl-d0` with a `/24` route covering the
//! rule set's endpoint addresses, and a veth pair `pl-hN` per address given
//! a host route (`/32`): only an endpoint with a host route has an
//! interface to attach to.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;

use palisade_bpf::{BpfDataplane, BpfLimits, Pinning};
use palisade_plugin_host::{Backoff, Capabilities, Grants, Limits, Supervisor};
use palisade_tests::{engine, plugin_bytes, rule_set};

const HOSTILE: &str = "palisade_fixture_hostile";
const EBPF: &str = "palisade_ebpf";

/// A network namespace held by a parked thread; gone when dropped.
struct Netns {
    path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Netns {
    /// A fresh namespace: a `/24` route for 10.0.0.0 on `pl-d0`, and a host
    /// route on a device of its own for each of `hosts`.
    fn new(hosts: &[&str]) -> Netns {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare a network namespace (root)");
            let ip = |args: &str| {
                let ok = Command::new("ip").args(args.split(' ')).status().unwrap().success();
                assert!(ok, "ip {args}");
            };
            ip("link add pl-d0 type veth peer name pl-d1");
            ip("link set pl-d0 up");
            ip("link set pl-d1 up");
            ip("route add 10.0.0.0/24 dev pl-d0");
            // One device per host route, as one veth per pod (TCX takes a
            // program once per device and hook).
            for (i, h) in hosts.iter().enumerate() {
                ip(&format!("link add pl-h{i} type veth peer name pl-p{i}"));
                ip(&format!("link set pl-h{i} up"));
                ip(&format!("link set pl-p{i} up"));
                ip(&format!("route add {h}/32 dev pl-h{i}"));
            }
            // `/proc/thread-self` links to `PID/task/TID`.
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let path = format!("/proc/{}/ns/net", me.display());
            ready_tx.send(PathBuf::from(path)).unwrap();
            let _ = stop_rx.recv();
        });
        let path = ready_rx.recv().expect("the namespace thread started");
        Netns { path, stop: Some(stop_tx), thread: Some(thread) }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dataplane(netns: &Netns, limits: BpfLimits) -> Arc<BpfDataplane> {
    Arc::new(BpfDataplane::new(Some(netns.path.clone()), &[HOSTILE, EBPF], limits))
}

fn start(stem: &str, dp: &Arc<BpfDataplane>) -> Supervisor {
    let caps = Capabilities { bpf: dp.clone(), ..Capabilities::default() };
    let plugin =
        engine().load(stem, &plugin_bytes(stem), &Grants::all(), Limits::default(), caps).unwrap();
    Supervisor::start(plugin, vec![], Backoff::default()).unwrap()
}

#[test]
fn attach_reaches_only_endpoints_with_a_host_route_and_reset_removes_the_links() {
    let netns = Netns::new(&["10.0.0.2"]);
    let dp = dataplane(&netns, BpfLimits::default());
    let mut sup = start(HOSTILE, &dp);
    let err = sup
        .apply(&rule_set(1, &["hostile/bpf-attach", "ns/b", "ns/c"]))
        .expect_err("the fixture reports in its error")
        .to_string();
    let line = |prefix: &str| {
        err.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {err}"))
            .to_string()
    };
    // 10.0.0.1 and .3 are only under the /24: no interface is theirs.
    assert!(
        line("attach endpoint 1:").contains("refused")
            && line("attach endpoint 1:").contains("no host route"),
        "{err}"
    );
    assert!(line("attach endpoint 2:").contains("DONE"), "{err}");
    assert!(line("attach endpoint 3:").contains("no host route"), "{err}");
    assert!(line("attach endpoint 4242:").contains("not an endpoint of this host"), "{err}");
    assert_eq!(dp.held(), (1, 1), "one object, one link");
    sup.reset().unwrap();
    assert_eq!(dp.held(), (0, 0), "reset removes every object and link");
}

#[test]
fn a_plugin_writes_only_maps_of_its_own_object() {
    let netns = Netns::new(&["10.0.0.1", "10.0.0.2"]);
    let dp = dataplane(&netns, BpfLimits::default());
    // The eBPF backend programs two endpoints for real: its object is 1.
    let mut ebpf = start(EBPF, &dp);
    ebpf.apply(&rule_set(1, &["ns/a", "ns/b"])).unwrap();
    assert_eq!(dp.held(), (1, 4), "both programs on both endpoints");
    let written = dp.stats().entries_written;
    let mut hostile = start(HOSTILE, &dp);
    let err = hostile
        .apply(&rule_set(1, &["hostile/bpf-foreign-map"]))
        .expect_err("the fixture reports in its error")
        .to_string();
    assert!(err.contains("write map pl_other of its own object: refused: bpf capability: plugin `palisade_fixture_hostile`: map `pl_other` is not a map of its object"), "{err}");
    // Object 1 is the eBPF backend's (loaded first); the others it tries
    // are links or nothing.
    assert!(err.contains("write pl_endpoints of object 1: refused: bpf capability: plugin `palisade_fixture_hostile`: no object 1 of this plugin"), "{err}");
    let others: Vec<&str> =
        err.lines().filter(|l| l.starts_with("write pl_endpoints of object")).collect();
    assert!(others.len() >= 3, "{err}");
    assert!(others.iter().all(|l| l.contains(": refused: ")), "{err}");
    assert!(err.contains("write pl_endpoints of its own object: DONE"), "{err}");
    // Only the hostile plugin's own write went through.
    assert_eq!(dp.stats().entries_written, written + 1);
    hostile.reset().unwrap();
    assert_eq!(dp.held(), (1, 4), "the hostile reset leaves the other plugin's object");
    ebpf.reset().unwrap();
    assert_eq!(dp.held(), (0, 0));
}

#[test]
fn oversized_batches_and_entries_are_refused_before_the_kernel() {
    let netns = Netns::new(&[]);
    let dp = dataplane(&netns, BpfLimits::default());
    let mut sup = start(HOSTILE, &dp);
    let err = sup
        .apply(&rule_set(1, &["hostile/bpf-oversized"]))
        .expect_err("the fixture reports in its error")
        .to_string();
    assert!(err.contains("write 100001 entries: refused: bpf capability: plugin `palisade_fixture_hostile`: map `pl_endpoints`: batch of 100001 entries refused (limit 65536)"), "{err}");
    assert!(err.contains("write a 64-byte key: refused: bpf capability: plugin `palisade_fixture_hostile`: map `pl_endpoints` entry 0: key of 64 bytes, the map's is 4"), "{err}");
    assert!(err.contains("delete 100001 keys: refused"), "{err}");
    assert_eq!(dp.stats().entries_written, 0);
    drop(sup);
    drop(dp);
}

#[test]
fn a_plugin_without_the_grant_reaches_nothing() {
    let netns = Netns::new(&[]);
    let dp = Arc::new(BpfDataplane::new(
        Some(netns.path.clone()),
        &["someone-else"],
        BpfLimits::default(),
    ));
    let mut sup = start(HOSTILE, &dp);
    let err = sup.apply(&rule_set(1, &["hostile/bpf-oversized"])).expect_err("refused").to_string();
    assert!(err.contains("load: refused: bpf capability: plugin `palisade_fixture_hostile` is not granted the eBPF dataplane"), "{err}");
    assert_eq!(dp.held(), (0, 0));
}

/// A private bpffs on a temporary directory, unmounted (every pin in it
/// with it) on every exit path.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount() -> Bpffs {
        let dir = std::env::temp_dir().join(
            format!(
                "palisade-sandbox-bpffs-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            )
            .replace(['(', ')'], ""),
        );
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir).status().unwrap();
        assert!(ok.success(), "mount bpffs on {}", dir.display());
        Bpffs(dir)
    }

    /// The files under the plugin's pin directory, relative to it.
    fn files(&self, dp: &BpfDataplane, plugin: &str) -> Vec<String> {
        let Some(dir) = dp.pin_dir(plugin) else { return Vec::new() };
        let mut out = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(&dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn pinned_state_outlives_its_dataplane_and_the_next_one_adopts_it_and_sweeps_the_rest() {
    let netns = Netns::new(&["10.0.0.1", "10.0.0.2"]);
    let fs = Bpffs::mount();
    let pinned = || {
        Arc::new(
            BpfDataplane::pinned(
                Some(netns.path.clone()),
                &[EBPF],
                BpfLimits::default(),
                Pinning::new(&fs.0, "0.1.0"),
            )
            .unwrap(),
        )
    };
    let dp = pinned();
    let mut sup = start(EBPF, &dp);
    sup.apply(&rule_set(1, &["ns/a", "ns/b"])).unwrap();
    let files = fs.files(&dp, EBPF);
    let links: Vec<&String> = files.iter().filter(|f| f.starts_with("links/")).collect();
    assert_eq!(links.len(), 4, "both programs on both endpoints, pinned: {files:?}");
    assert!(files.iter().any(|f| f.ends_with("/map_pl_endpoints")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("/prog_pl_ingress")), "{files:?}");
    // The process ends (its descriptors close): the pins keep everything.
    drop(sup);
    drop(dp);
    let programs = Command::new("bpftool").args(["prog", "show"]).output().unwrap();
    assert!(String::from_utf8_lossy(&programs.stdout).contains(" name pl_ingress "));

    // The next one: one endpoint fewer. It takes the first endpoint's two
    // links over, detaches the other two, and sweeps the second endpoint's
    // map entry, which its full apply did not write.
    let dp = pinned();
    let mut sup = start(EBPF, &dp);
    sup.apply(&rule_set(2, &["ns/a"])).unwrap();
    let stats = dp.stats();
    assert_eq!((stats.links_adopted, stats.links_attached), (2, 0), "{stats:?}");
    assert!(stats.entries_swept >= 1, "{stats:?}");
    let files = fs.files(&dp, EBPF);
    assert_eq!(files.iter().filter(|f| f.starts_with("links/")).count(), 2, "{files:?}");
    assert_eq!(dp.held(), (1, 2));

    // A fresh instance in the same process (as after a trap) adopts too.
    drop(sup);
    let mut sup = start(EBPF, &dp);
    sup.apply(&rule_set(3, &["ns/a", "ns/b"])).unwrap();
    let after = dp.stats();
    assert_eq!(after.links_adopted - stats.links_adopted, 2, "{after:?}");
    assert_eq!(after.links_attached, 2, "the second endpoint attached anew: {after:?}");

    // Reset removes every pin of the plugin.
    sup.reset().unwrap();
    assert_eq!(dp.held(), (0, 0));
    assert!(fs.files(&dp, EBPF).is_empty());
    assert!(!dp.pin_dir(EBPF).unwrap().exists());
}

/// The classifier object the eBPF plugin embeds, as built by
/// scripts/build-plugins (the plugin's build script output).
fn classifier_object() -> Vec<u8> {
    let build = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/build");
    let found = std::fs::read_dir(&build)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins)", build.display()))
        .flatten()
        .map(|e| e.path().join("out/palisade_tc.o"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("no palisade_tc.o under {} (run scripts/build-plugins)", build.display())
        });
    std::fs::read(found).unwrap()
}

fn bpftool(args: &[&str]) -> String {
    let out = Command::new("bpftool").args(args).output().unwrap();
    assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The program id a pinned link or program shows.
fn program_id(text: &str) -> String {
    // `bpftool link show pinned P`: "7: tcx  prog 42 ..."; `bpftool prog
    // show pinned P`: "42: sched_cls  name pl_ingress ...".
    match text.split_whitespace().skip_while(|w| *w != "prog").nth(1) {
        Some(id) => id.to_string(),
        None => text.split(':').next().unwrap_or_default().trim().to_string(),
    }
}

#[test]
fn an_upgraded_object_gets_fresh_maps_its_links_are_swapped_and_the_old_generation_retires() {
    use palisade_model::Direction;
    let netns = Netns::new(&["10.0.0.1"]);
    let fs = Bpffs::mount();
    let dp = BpfDataplane::pinned(
        Some(netns.path.clone()),
        &[EBPF],
        BpfLimits::default(),
        Pinning::new(&fs.0, "0.1.0"),
    )
    .unwrap();
    dp.endpoints().record(&rule_set(1, &["ns/a"]).endpoints, &[], true);
    let object = classifier_object();
    let old = dp.load_object(EBPF, &object).unwrap();
    // A tracked connection of the old generation (flow key, 16 bytes).
    dp.update_map(EBPF, old, "pl_flows", &[(vec![7u8; 16], vec![1, 0, 0, 0])]).unwrap();
    for (program, direction) in
        [("pl_ingress", Direction::Ingress), ("pl_egress", Direction::Egress)]
    {
        dp.attach_program(EBPF, old, program, 1, direction).unwrap();
    }
    dp.applied(EBPF);
    let generations = |dp: &BpfDataplane| -> Vec<PathBuf> {
        let mut g: Vec<PathBuf> = std::fs::read_dir(dp.pin_dir(EBPF).unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("wit"))
            .collect();
        g.sort();
        g
    };
    let first = generations(&dp);
    assert_eq!(first.len(), 1);
    let link = dp.pin_dir(EBPF).unwrap().join("links");
    let link = std::fs::read_dir(&link).unwrap().flatten().next().unwrap().path();
    let link = link.to_string_lossy().into_owned();
    let old_program = program_id(&bpftool(&["link", "show", "pinned", &link]));
    assert!(old_program.parse::<u32>().is_ok(), "a program id: {old_program}");

    // The upgrade: other bytes (the same ELF with a byte appended is
    // another object to the host). Fresh maps beside the old ones, the
    // tracked connection copied over before any link moves.
    let mut newer = object.clone();
    newer.push(0);
    let new = dp.load_object(EBPF, &newer).unwrap();
    assert_eq!(generations(&dp).len(), 2, "the old generation stays until the swap");
    assert_eq!(dp.stats().flows_copied, 1, "{:?}", dp.stats());
    // While the plugin fills the new maps, the old programs keep judging.
    assert_eq!(program_id(&bpftool(&["link", "show", "pinned", &link])), old_program);
    for (program, direction) in
        [("pl_ingress", Direction::Ingress), ("pl_egress", Direction::Egress)]
    {
        dp.attach_program(EBPF, new, program, 1, direction).unwrap();
    }
    let stats = dp.stats();
    assert_eq!((stats.links_adopted, stats.links_attached), (2, 2), "swapped in place: {stats:?}");
    dp.applied(EBPF);
    let now = generations(&dp);
    assert_eq!(now.len(), 1, "the old generation retired");
    assert_ne!(now, first);
    // The same pinned link now runs the new object's program.
    let swapped = program_id(&bpftool(&["link", "show", "pinned", &link]));
    assert!(swapped.parse::<u32>().is_ok(), "a program id: {swapped}");
    assert_ne!(swapped, old_program);
    let pinned_program =
        now[0].join(if link.ends_with("tc_egress") { "prog_pl_ingress" } else { "prog_pl_egress" });
    let pinned_program = pinned_program.to_string_lossy().into_owned();
    assert_eq!(program_id(&bpftool(&["prog", "show", "pinned", &pinned_program])), swapped);
    dp.release(EBPF);
    assert!(!dp.pin_dir(EBPF).unwrap().exists());
}
