//! What the `palisade run` end-to-end tests share: the two-pod `shop` lab,
//! its probe, and a guard that stops the daemon on every exit path.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_lab::{Lab, LabPod, LabSpec, ProbeRequest};
use palisade_model::Protocol;

pub mod three_pods;

/// The `shop` namespace.
pub const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
/// A NetworkPolicy isolating `shop/web` (no ingress allowed).
pub const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}}\n";

/// The two pods of [`shop_lab`] as a manifest.
pub fn pods_yaml(web_ip: &str, client_ip: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec: {{containers: [{{name: web, ports: [{{containerPort: 80}}]}}]}}
status: {{podIP: {web_ip}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: shop, labels: {{app: client}}}}
spec: {{containers: [{{name: client}}]}}
status: {{podIP: {client_ip}}}
"
    )
}

/// `palisade run ARGS --netns NETNS --reset-on-exit`, stdout discarded,
/// stderr piped, with a plugin cache of its own (`cache`, under the
/// temporary directory); add environment before [`Daemon::spawn`].
pub fn palisade_run(args: &[&str], netns: &Path, cache: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    cmd.arg("run")
        .args(args)
        .arg("--netns")
        .arg(netns)
        .arg("--reset-on-exit")
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join(cache))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Daemon {
    pub fn spawn(mut cmd: Command) -> Daemon {
        Daemon(cmd.spawn().unwrap())
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        self.0.wait().unwrap()
    }

    /// The daemon's stderr, collected line by line as it comes (from a
    /// thread, joined by the handle once the daemon is gone).
    pub fn collect_stderr(&mut self) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
        let said = Arc::new(Mutex::new(String::new()));
        let sink = said.clone();
        let stderr = self.0.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        (said, reader)
    }

    /// [`Daemon::stop`], then everything the daemon wrote to stderr.
    pub fn stop_and_read(&mut self) -> (ExitStatus, String) {
        let status = self.stop();
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    }
}

/// Stops the daemon on every exit path (SIGTERM, then SIGKILL after 5 s).
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
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

/// The lab: `shop/web` at `web_ip` listening on TCP 80, `shop/client` at
/// `client_ip`.
pub fn shop_lab(web_ip: &str, client_ip: &str) -> Lab {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Lab::up(&LabSpec {
        pods: vec![
            LabPod { key: "shop/web".into(), ip: ip(web_ip), ports: vec![(Protocol::Tcp, 80)] },
            LabPod { key: "shop/client".into(), ip: ip(client_ip), ports: vec![] },
        ],
        externals: vec![],
        notes: vec![],
    })
    .unwrap()
}

/// Whether client → web on TCP 80 gets through.
pub fn allowed(lab: &Lab) -> bool {
    let r = ProbeRequest::new("shop/client", "shop/web", Protocol::Tcp, 80);
    lab.probe(&r, Duration::from_millis(300)).allowed
}

/// Waits up to `within` until the probe gives `want` (the daemon programs
/// asynchronously).
pub fn eventually(lab: &Lab, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if allowed(lab) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Writes a manifest next to its final name, then renames it in (the
/// daemon never reads half a file).
pub fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// A private bpffs mounted on a temporary directory, unmounted (with every
/// pin in it) on every exit path: the eBPF backend's `--bpf-pin-dir` in
/// tests, so that nothing is pinned on the machine's own bpffs.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    pub fn mount(tag: &str) -> Bpffs {
        let dir =
            std::env::temp_dir().join(format!("palisade-faults-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir).status().unwrap();
        assert!(ok.success(), "mount bpffs on {}", dir.display());
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// What the probers saw.
#[derive(Default)]
pub struct Counts {
    pub denied_probes: AtomicU64,
    pub leaked: AtomicU64,
    pub allowed_probes: AtomicU64,
    pub dropped: AtomicU64,
}

/// Probes `deny` (from, to; TCP 80; 25 at a time, 200 ms timeout: an
/// answer is a leak) and `allow` (5 at a time, 1 s timeout: a timeout is a
/// wrongly dropped connection) until `stop`, counting into `counts`.
pub fn probe_until(
    lab: &Lab,
    deny: (&str, &str),
    allow: (&str, &str),
    stop: &AtomicBool,
    counts: &Counts,
) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let wave = vec![ProbeRequest::new(deny.0, deny.1, Protocol::Tcp, 80); 25];
            while !stop.load(Ordering::Relaxed) {
                for o in lab.probe_many(&wave, Duration::from_millis(200)) {
                    counts.denied_probes.fetch_add(1, Ordering::Relaxed);
                    if o.allowed {
                        counts.leaked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        s.spawn(|| {
            let wave = vec![ProbeRequest::new(allow.0, allow.1, Protocol::Tcp, 80); 5];
            while !stop.load(Ordering::Relaxed) {
                for o in lab.probe_many(&wave, Duration::from_secs(1)) {
                    counts.allowed_probes.fetch_add(1, Ordering::Relaxed);
                    if !o.allowed {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
}
