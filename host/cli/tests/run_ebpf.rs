//! End to end, as root: `palisade run` with the eBPF plugin enforces a
//! watched manifest directory on the wire of a namespace lab (the same
//! walk as run.rs, with the TC classifier instead of nftables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_lab::{Lab, LabPod, LabSpec, ProbeRequest};
use palisade_model::Protocol;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, ports: [{containerPort: 80}]}]}
status: {podIP: 10.78.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: client}]}
status: {podIP: 10.78.0.2}
";
const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}}\n";

/// Stops the daemon on every exit path.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn allowed(lab: &Lab) -> bool {
    let r = ProbeRequest::new("shop/client", "shop/web", Protocol::Tcp, 80);
    lab.probe(&r, Duration::from_millis(300)).allowed
}

/// Waits until the probe gives `want` (the daemon programs asynchronously).
fn eventually(lab: &Lab, want: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if allowed(lab) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

#[test]
fn run_with_ebpf_enforces_the_watched_directory_on_the_wire_and_follows_its_changes() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let lab = Lab::up(&LabSpec {
        pods: vec![
            LabPod {
                key: "shop/web".into(),
                ip: ip("10.78.0.1"),
                ports: vec![(Protocol::Tcp, 80)],
            },
            LabPod { key: "shop/client".into(), ip: ip("10.78.0.2"), ports: vec![] },
        ],
        externals: vec![],
        notes: vec![],
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ns.yaml", NS);
    write(dir.path(), "pods.yaml", PODS);
    assert!(allowed(&lab), "no policy: open");

    let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["run", "--plugin", "ebpf", "--source"])
        .arg(format!("dir:{}", dir.path().display()))
        .arg("--netns")
        .arg(lab.node_netns())
        .arg("--reset-on-exit")
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join("palisade-cli-test-cache-ebpf"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    // The daemon's stderr, collected as it comes: the first programming
    // waits for the plugin's compilation when the cache is cold.
    let said = Arc::new(Mutex::new(String::new()));
    let reader = {
        let said = said.clone();
        let stderr = daemon.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = said.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !said.lock().unwrap().contains("programmed generation") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(said.lock().unwrap().contains("programmed generation 1"), "{}", said.lock().unwrap());

    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false), "the new policy isolates web: {}", said.lock().unwrap());
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    assert!(eventually(&lab, true), "deleting it lifts the isolation");
    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false), "and again");

    // Stop: the programs and their links go with the daemon.
    let _ = Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status();
    let status = daemon.0.wait().unwrap();
    reader.join().unwrap();
    let stderr = said.lock().unwrap().clone();
    assert!(status.success(), "{stderr}");
    assert!(allowed(&lab), "the programs were removed on exit");
    let progs = Command::new("bpftool").args(["prog", "show"]).output().unwrap();
    let progs = String::from_utf8_lossy(&progs.stdout);
    assert!(!progs.contains(" name pl_ingress ") && !progs.contains(" name pl_egress "), "{progs}");
}
