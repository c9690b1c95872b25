//! The three-pod lab of the fault tests: `x/a` (TCP 80), `x/b` and `x/c`
//! in namespace `x`, the policy "`x/a` only from `x/b`", and one
//! `palisade run` at a time on it (its table `palisade_faults`, its pins on
//! a private bpffs).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_lab::{Lab, LabPod, LabSpec};
use palisade_model::Protocol;

use super::Daemon;

pub const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-from-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: b}}\n";

pub fn manifests(base: &str) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n");
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        out.push_str("---\n");
        out.push_str(&pod(name, name, &format!("{base}.{}", i + 1)));
    }
    out
}

/// Pod `x/NAME` labelled `app: APP` at `ip`, declaring TCP 80.
pub fn pod(name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: {name}, ports: [{{containerPort: 80}}]}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

pub fn lab(base: &str) -> Lab {
    let ip = |i: u8| format!("{base}.{i}").parse::<IpAddr>().unwrap();
    Lab::up(&LabSpec {
        pods: vec![
            LabPod { key: "x/a".into(), ip: ip(1), ports: vec![(Protocol::Tcp, 80)] },
            LabPod { key: "x/b".into(), ip: ip(2), ports: vec![] },
            LabPod { key: "x/c".into(), ip: ip(3), ports: vec![] },
        ],
        externals: vec![],
        notes: vec![],
    })
    .unwrap()
}

/// One `palisade run` process whose stderr is collected as it comes.
pub struct Run {
    pub daemon: Daemon,
    pub said: Arc<Mutex<String>>,
}

pub fn start(backend: &str, source: &Path, netns: &Path, pins: &Path) -> Run {
    start_with(backend, source, netns, pins, &[])
}

pub fn start_with(backend: &str, source: &Path, netns: &Path, pins: &Path, extra: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    cmd.arg("run")
        .args(extra)
        .args(["--plugin", backend, "--source"])
        .arg(format!("dir:{}", source.display()))
        .arg("--netns")
        .arg(netns)
        .arg("--table")
        .arg("palisade_faults")
        .arg("--bpf-pin-dir")
        .arg(pins)
        .args(["--log", "info", "--log-json"])
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join("palisade-cli-test-cache-faults"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut daemon = Daemon::spawn(cmd);
    let (said, _reader) = daemon.collect_stderr();
    let mut run = Run { daemon, said };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !run.said.lock().unwrap().contains("palisade: programmed generation") {
        assert!(Instant::now() < deadline, "no programming: {}", run.said.lock().unwrap());
        if let Ok(Some(status)) = run.daemon.0.try_wait() {
            panic!("palisade run exited ({status}): {}", run.said.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run
}

impl Run {
    pub fn kill(&mut self) {
        let _ = self.daemon.0.kill();
        let _ = self.daemon.0.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.daemon.stop()
    }

    pub fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }
}

/// `palisade reset` of what these tests program (the guard table too).
pub fn reset(backend: &str, netns: &Path, pins: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["reset", "--plugin", backend, "--table", "palisade_faults"])
        .args(["--guard-table", "palisade_faults_guard", "--netns"])
        .arg(netns)
        .arg("--bpf-pin-dir")
        .arg(pins)
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join("palisade-cli-test-cache-faults"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

pub fn bpf_programs() -> String {
    let out = Command::new("bpftool").args(["prog", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
            out.push(p);
        } else {
            out.push(p);
        }
    }
    out
}

/// Waits until the daemon's log has `n` lines containing all of `parts`.
pub fn logged(run: &Run, parts: &[&str], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let said = run.said();
        if said.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no {n} log lines with {parts:?}: {said}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the probers counted while a script of faults ran.
pub struct Probed {
    /// A line per phase: its time, and the counts so far.
    pub log: Vec<String>,
    pub probes: u64,
    pub leaked: u64,
    pub dropped: u64,
}

/// Runs `script` while the probers of [`super::probe_until`] run
/// `x/c → x/a` (must be denied) and `x/b → x/a` (must be allowed). The
/// script calls its argument to note the end of a phase.
pub fn under_probers(lab: &Lab, script: impl FnOnce(&dyn Fn(&str))) -> Probed {
    let counts = super::Counts::default();
    let stop = AtomicBool::new(false);
    let log = Mutex::new(Vec::new());
    let t = Instant::now();
    let phase = |what: &str| {
        log.lock().unwrap().push(format!(
            "{what} ({:.1} s): {} denied probes, {} leaked; {} allowed probes, {} dropped",
            t.elapsed().as_secs_f64(),
            counts.denied_probes.load(Ordering::Relaxed),
            counts.leaked.load(Ordering::Relaxed),
            counts.allowed_probes.load(Ordering::Relaxed),
            counts.dropped.load(Ordering::Relaxed)
        ));
    };
    std::thread::scope(|s| {
        s.spawn(|| super::probe_until(lab, ("x/c", "x/a"), ("x/b", "x/a"), &stop, &counts));
        // The probers stop even if the script panics.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        script(&phase);
    });
    Probed {
        log: log.into_inner().unwrap(),
        probes: counts.denied_probes.load(Ordering::Relaxed)
            + counts.allowed_probes.load(Ordering::Relaxed),
        leaked: counts.leaked.load(Ordering::Relaxed),
        dropped: counts.dropped.load(Ordering::Relaxed),
    }
}

impl Probed {
    /// Prints the phases and the totals as `TAG: ...`; asserts 0 leaked, 0
    /// dropped and more than `min_probes` probes.
    pub fn check(&self, tag: &str, min_probes: u64, said: &str) {
        let mut lines: Vec<String> = self.log.iter().map(|l| format!("{tag}: {l}")).collect();
        lines.push(format!(
            "{tag}: {} probes in all: {} leaked, {} dropped",
            self.probes, self.leaked, self.dropped
        ));
        report(&lines);
        assert_eq!(self.leaked, 0, "denied connections got through: {:#?}\n{said}", self.log);
        assert_eq!(self.dropped, 0, "allowed connections were dropped: {:#?}\n{said}", self.log);
        assert!(self.probes > min_probes, "the probers ran: {:#?}", self.log);
    }
}

/// Prints `lines` and appends them to `fault-counts.txt` in cargo's
/// temporary directory of the tests (`target/tmp/`), which scripts/test
/// shows after the tests: captured output is not shown for a test that
/// passes.
pub fn report(lines: &[String]) {
    use std::io::Write;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-counts.txt");
    let mut text = String::new();
    for line in lines {
        println!("{line}");
        text.push_str(line);
        text.push('\n');
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    file.and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
