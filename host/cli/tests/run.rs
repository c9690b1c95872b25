//! End to end, as root: `palisade run` with the nftables plugin enforces a
//! watched manifest directory on the wire of a namespace lab.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_lab::{Lab, LabPod, LabSpec, ProbeRequest};
use palisade_model::Protocol;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, ports: [{containerPort: 80}]}]}
status: {podIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: client}]}
status: {podIP: 10.77.0.2}
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
fn run_enforces_the_watched_directory_on_the_wire_and_follows_its_changes() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let lab = Lab::up(&LabSpec {
        pods: vec![
            LabPod {
                key: "shop/web".into(),
                ip: ip("10.77.0.1"),
                ports: vec![(Protocol::Tcp, 80)],
            },
            LabPod { key: "shop/client".into(), ip: ip("10.77.0.2"), ports: vec![] },
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
        .args(["run", "--plugin", "nftables", "--source"])
        .arg(format!("dir:{}", dir.path().display()))
        .arg("--netns")
        .arg(lab.node_netns())
        .arg("--reset-on-exit")
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join("palisade-cli-test-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);

    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false), "the new policy isolates web");
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    assert!(eventually(&lab, true), "deleting it lifts the isolation");
    write(dir.path(), "deny.yaml", DENY);
    assert!(eventually(&lab, false), "and again");

    // Stop: with --reset-on-exit the table goes, and traffic flows again.
    let _ = Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status();
    let status = daemon.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("programmed generation 1"), "{stderr}");
    assert!(allowed(&lab), "reset on exit removed the rules");
    let tables = Command::new("ip")
        .args(["netns", "exec", lab.node_netns_name(), "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tables.stdout).trim().is_empty());
}
