//! Dataplane benchmarks of the nftables and eBPF backends, side by side in
//! one run (a bench binary, not a timed test). Needs root, `ip` and `nft`,
//! and the plugins built (`scripts/build-plugins`).
//!
//! ```text
//! cargo bench -p palisade-harness --bench dataplane -- latency [POLICIES...]
//! cargo bench -p palisade-harness --bench dataplane -- per-connection
//! ```
//!
//! `latency`: programming latency of the daemon, from a changed file in the
//! watched manifest directory to `Daemon::round` returning with the delta
//! programmed (the nft batch returned: the kernel is updated). A synthetic
//! cluster (2,000 pods over 50 namespaces, POLICIES NetworkPolicies of five
//! shapes; default 1,000 and 10,000), the daemon in-process with a 1 ms
//! settle time, the nftables plugin acting in a lab's node namespace. The
//! pods are spread over `PALISADE_BENCH_NODES` nodes (default 20: 100 pods
//! on the lab's node, the others peers only); 1 makes every pod local.
//!
//! `per-connection`: a client and a server pod in the lab; new TCP
//! connections per second and request/response latency on one established
//! connection, with no table, with an empty table, with a cluster-sized rule
//! set where the server's chain is short, and with the server subject to
//! 10,000 rules (its allowing rule last), alternated to cancel drift.
//!
//! Knobs (environment): `PALISADE_BENCH_BACKENDS` (default
//! `nftables,ebpf`), `PALISADE_BENCH_CHANGES` (changes of each kind per
//! size, default 100), `PALISADE_BENCH_CONNECTIONS` (default 20,000),
//! `PALISADE_BENCH_ROUND_TRIPS` (default 20,000), `PALISADE_BENCH_ROUNDS`
//! (alternations, default 3), `PALISADE_BENCH_CLIENTS` (client threads,
//! default 2), `PALISADE_BENCH_CLUSTER_RULES` (rules in force in the
//! per-connection `cluster` rule set, default 10,000: the fewest policies
//! that reach it), `PALISADE_BENCH_CLUSTER_POLICIES` (or a fixed number of
//! its policies),
//! `PALISADE_BENCH_PLUGIN_MEMORY_MB` (the plugin's memory limit; default:
//! the host's default limits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_daemon::profile::plugin_name;
use palisade_daemon::{profile, Daemon, DaemonConfig, Enforcer, Programmed, Target};
use palisade_lab::{Lab, LabPod, LabSpec};
use palisade_model::{Delta, Protocol};
use palisade_nft::{NftDataplane, TableGrants, TableRef};
use palisade_pipeline::Pipeline;
use palisade_plugin_host::{Limits, NftProvider, PluginEngine};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

const NAMESPACES: usize = 50;
const PODS: usize = 2_000;
const APPS: usize = 10;
const TIERS: [&str; 3] = ["web", "api", "db"];
const TABLE: &str = "palisade";
const SERVER_PORT: u16 = 5201;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------
// The synthetic cluster, as Kubernetes objects.

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i / 65_536) as u8, (i / 256 % 256) as u8, (i % 256) as u8)
}

fn namespace(n: usize) -> Value {
    let name = format!("ns-{n}");
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/metadata.name": name, "team": format!("t{}", n % 10)}},
    })
}

/// Pod `i`; `relabel` moves it to another `app`.
fn pod(i: usize, relabel: usize) -> Value {
    let http = if i.is_multiple_of(3) { 80 } else { 8080 };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
            "labels": {
                "app": format!("app-{}", (i / NAMESPACES + relabel) % APPS),
                "tier": TIERS[i % 3],
                "version": format!("v{}", i % 2)}},
        "spec": {"nodeName": format!("node-{}", i % nodes()), "containers": [{"name": "main", "ports": [
            {"name": "http", "containerPort": http, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": pod_ip(i).to_string()},
    })
}

fn port(p: u16) -> Value {
    json!({"protocol": "TCP", "port": p})
}

fn named(name: &str) -> Value {
    json!({"protocol": "TCP", "port": name})
}

/// Policy `k` of five shapes; `shift` moves its numeric ports.
fn policy(k: usize, shift: u16) -> Value {
    let ns = format!("ns-{}", k % NAMESPACES);
    let app = format!("app-{}", (k / NAMESPACES) % APPS);
    let s = shift;
    let (types, ingress, egress) = match (k + k / NAMESPACES) % 5 {
        // podSelector peer on a port.
        0 => (
            vec!["Ingress"],
            json!([{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
                    "ports": [port(8080 + s)]}]),
            json!([]),
        ),
        // namespaceSelector AND podSelector on a named and a numeric port.
        1 => (
            vec!["Ingress"],
            json!([{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", k % 10)}},
                              "podSelector": {"matchLabels": {"tier": "api"}}}],
                    "ports": [named("http"), port(8443 + s)]}]),
            json!([]),
        ),
        // Deny all ingress; egress to an ipBlock with except, and to the
        // databases of every namespace.
        2 => (
            vec!["Ingress", "Egress"],
            json!([]),
            json!([
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                     "except": [format!("10.1.{}.0/24", k % 8)]}}],
                 "ports": [port(443 + s)]},
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}],
                 "ports": [port(5432 + s)]},
            ]),
        ),
        // matchExpressions In, a numeric and a named port.
        3 => (
            vec!["Ingress"],
            json!([{"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                        "values": [format!("app-{}", (k + 1) % APPS), format!("app-{}", (k + 2) % APPS)]}]}}],
                    "ports": [port(80 + s), named("metrics")]}]),
            json!([]),
        ),
        // Egress on a named port, and to an external range.
        _ => (
            vec!["Egress"],
            json!([]),
            json!([
                {"to": [{"podSelector": {"matchLabels": {"tier": "api"}}}],
                 "ports": [named("http"), port(9443 + s)]},
                {"to": [{"ipBlock": {"cidr": format!("192.0.2.{}/32", k % 256)}}],
                 "ports": [port(53 + s), {"protocol": "UDP", "port": 53}]},
            ]),
        ),
    };
    let mut spec = json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": types});
    if types.contains(&"Ingress") {
        spec["ingress"] = ingress;
    }
    if types.contains(&"Egress") {
        spec["egress"] = egress;
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("policy-{k:05}"), "namespace": ns},
        "spec": spec,
    })
}

/// Nodes the pods are spread over (pod `i` on `node-{i % nodes}`); the lab
/// is `node-0`.
fn nodes() -> usize {
    env_usize("PALISADE_BENCH_NODES", 20).max(1)
}

fn node(n: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
           "status": {"addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", n + 1)}]}})
}

/// Whether policy `k` selects a pod of `node-0`.
fn selects_local_pod(k: usize) -> bool {
    let (ns, app) = (k % NAMESPACES, (k / NAMESPACES) % APPS);
    (0..PODS).any(|i| i % NAMESPACES == ns && (i / NAMESPACES) % APPS == app && i % nodes() == 0)
}

fn cluster(policies: usize) -> Vec<Value> {
    let mut objects: Vec<Value> = (0..NAMESPACES).map(namespace).collect();
    objects.extend((0..nodes()).map(node));
    objects.extend((0..PODS).map(|i| pod(i, 0)));
    objects.extend((0..policies).map(|k| policy(k, 0)));
    objects
}

// ---------------------------------------------------------------------------
// Statistics.

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
}

fn summary(v: &[f64]) -> Summary {
    let s = sorted(v.to_vec());
    Summary { p50: percentile(&s, 50.0), p99: percentile(&s, 99.0), max: percentile(&s, 100.0) }
}

// ---------------------------------------------------------------------------
// The nft provider, recorded: every batch's size and time.

#[derive(Debug, Clone)]
struct Batch {
    bytes: usize,
    commands: usize,
    elapsed: Duration,
    ok: bool,
}

struct Recorder {
    inner: NftDataplane,
    batches: Mutex<Vec<Batch>>,
}

impl Recorder {
    fn take(&self) -> Vec<Batch> {
        std::mem::take(&mut *self.batches.lock().unwrap())
    }
}

impl NftProvider for Recorder {
    fn apply_batch(&self, plugin: &str, batch_json: &str) -> Result<(), String> {
        let started = Instant::now();
        let result = self.inner.apply(plugin, batch_json);
        let elapsed = started.elapsed();
        if let Ok(dir) = std::env::var("PALISADE_BENCH_DUMP") {
            // For diagnosis: every batch, numbered.
            let n = self.batches.lock().map(|b| b.len()).unwrap_or(0);
            let _ = std::fs::write(
                Path::new(&dir).join(format!("batch-{}-{n}.json", batch_json.len())),
                batch_json,
            );
        }
        self.batches.lock().unwrap().push(Batch {
            bytes: batch_json.len(),
            commands: result.as_ref().map(|c| c.commands).unwrap_or(0),
            elapsed,
            ok: result.is_ok(),
        });
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    fn list_table(&self, plugin: &str, family: &str, name: &str) -> Result<String, String> {
        self.inner.list_table(plugin, family, name)
    }

    fn delete_table(&self, plugin: &str, family: &str, name: &str) -> Result<(), String> {
        self.inner.delete_table(plugin, family, name)
    }
}

/// The backends compared (`PALISADE_BENCH_BACKENDS`, default both).
fn backends() -> Vec<String> {
    std::env::var("PALISADE_BENCH_BACKENDS")
        .unwrap_or_else(|_| "nftables,ebpf".into())
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The plugin `backend` acting in `netns`; for nftables, its nft calls
/// recorded.
fn enforcer(
    engine: &PluginEngine,
    netns: PathBuf,
    backend: &str,
) -> Result<(Enforcer, Option<Arc<Recorder>>, String), Error> {
    let target = Target { netns: Some(netns.clone()), nft_table: Some(TABLE.into()) };
    let mut profile = profile(backend, &plugin_dirs(), &target)?;
    let name = plugin_name(&profile.path);
    let recorder = if backend == "nftables" {
        let table: TableRef = format!("inet {TABLE}").parse()?;
        let recorder = Arc::new(Recorder {
            inner: NftDataplane::new(Some(netns), TableGrants::new().grant(&name, table)),
            batches: Mutex::new(Vec::new()),
        });
        profile.caps.nft = recorder.clone();
        Some(recorder)
    } else {
        None
    };
    let mut limits = Limits::default();
    if let Some(mb) =
        std::env::var("PALISADE_BENCH_PLUGIN_MEMORY_MB").ok().and_then(|v| v.parse::<usize>().ok())
    {
        limits.memory_bytes = mb << 20;
    }
    println!("plugin memory limit: {} MiB", limits.memory_bytes >> 20);
    let plugin = profile.load(engine, limits)?;
    Ok((Enforcer::start(plugin, profile.settings)?, recorder, name))
}

fn plugin_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    vec![root.join("target/wasm32-wasip2/release")]
}

// ---------------------------------------------------------------------------
// A temporary directory, removed on every exit path.

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("palisade-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_vec(value)?)
}

// ---------------------------------------------------------------------------
// (a) Programming latency.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Policy(usize),
    PodLabel(usize),
}

struct Sample {
    change: Change,
    total: Duration,
    enforce: Duration,
    records: usize,
    full: bool,
    batches: Vec<Batch>,
}

fn latency(policies: usize, changes: usize, backend: &str) -> Result<(), Error> {
    println!(
        "\n== latency ({backend}): {PODS} pods on {} nodes (the lab is node-0), {NAMESPACES} namespaces, {policies} policies ==",
        nodes()
    );
    let tmp = TempDir::new("latency")?;
    let root = tmp.0.join("cluster");
    let staging = tmp.0.join("staging");
    for d in ["namespaces", "pods", "policies"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::create_dir_all(&staging)?;
    for n in 0..NAMESPACES {
        write_json(&root.join(format!("namespaces/ns-{n}.json")), &namespace(n))?;
    }
    for n in 0..nodes() {
        write_json(&root.join(format!("namespaces/node-{n}.json")), &node(n))?;
    }
    for i in 0..PODS {
        write_json(&root.join(format!("pods/pod-{i}.json")), &pod(i, 0))?;
    }
    for k in 0..policies {
        write_json(&root.join(format!("policies/policy-{k:05}.json")), &policy(k, 0))?;
    }

    // The kernel side: a lab node namespace (two pods of node-0 are real).
    let spec = LabSpec {
        pods: [0, nodes()]
            .into_iter()
            .map(|i| LabPod {
                key: format!("ns-{}/pod-{i}", i % NAMESPACES),
                ip: IpAddr::V4(pod_ip(i)),
                ports: vec![(Protocol::Tcp, 9090)],
            })
            .collect(),
        ..LabSpec::default()
    };
    let lab = Lab::up(&spec)?;
    let engine = PluginEngine::new(Default::default())?;
    let (enforcer, recorder, plugin) = enforcer(&engine, lab.node_netns(), backend)?;
    let take = || recorder.as_ref().map(|r| r.take()).unwrap_or_default();
    let config = DaemonConfig {
        source_dir: root.clone(),
        settle: Duration::from_millis(1),
        dialects: Default::default(),
        resolver: palisade_resolver::Settings { node: Some("node-0".into()), ..Default::default() },
    };

    let started = Instant::now();
    let (mut daemon, first) = Daemon::start(&config, enforcer)?;
    let initial = started.elapsed();
    let rs = daemon.pipeline().rule_set();
    println!(
        "rule set: {} endpoints, {} endpoint policies, {} rules, {} address sets",
        rs.endpoints.len(),
        rs.policies.len(),
        rs.rule_count(),
        rs.sets.len()
    );
    let applied = first.load.applied;
    let rejected = first.load.rejected.len();
    match &first.programmed {
        Ok(Programmed::Full { rules, elapsed, .. }) => println!(
            "initial: {applied} objects ({rejected} rejected); Daemon::start {:.3} s, of which plugin apply + nft {:.3} s ({rules} rules)",
            initial.as_secs_f64(),
            elapsed.as_secs_f64()
        ),
        other => return Err(format!("initial programming: {other:?}").into()),
    }
    for b in take() {
        println!(
            "  initial nft batch: {} commands, {:.1} MB JSON, nft {:.3} s{}",
            b.commands,
            b.bytes as f64 / 1e6,
            b.elapsed.as_secs_f64(),
            if b.ok { "" } else { " (FAILED)" }
        );
    }
    if recorder.is_some() {
        let nft_rules = count_nft_rules(&lab.node_netns())?;
        println!("  kernel: {nft_rules} rules in table inet {TABLE}");
    }

    // The changes, alternately: a port of a policy that selects a pod of
    // this node, and the `app` label of a pod of this node (it changes the
    // policies it is subject to, and the peer sets it is in).
    let mut plan = Vec::new();
    let local_pods: Vec<usize> = (0..PODS).filter(|i| i % nodes() == 0).collect();
    let mut k = 13;
    for j in 0..changes {
        k = (k + 7_919) % policies;
        while !selects_local_pod(k) {
            k = (k + 1) % policies;
        }
        plan.push(Change::Policy(k));
        plan.push(Change::PodLabel(local_pods[(j * 131 + 7) % local_pods.len()]));
    }
    let warmup = 6;
    let mut shifts: BTreeMap<Change, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, change) in plan.iter().take(warmup).chain(plan.iter()).enumerate() {
        let shift = shifts.entry(*change).or_default();
        *shift += 1;
        let (rel, value) = match *change {
            Change::Policy(k) => {
                (format!("policies/policy-{k:05}.json"), policy(k, (*shift % 2) as u16))
            }
            Change::PodLabel(i) => (format!("pods/pod-{i}.json"), pod(i, *shift % 2)),
        };
        let target = root.join(&rel);
        let text = serde_json::to_vec(&value)?;
        let tmp_file = staging.join("next.json");
        let t0 = Instant::now();
        // Written elsewhere, renamed in: the daemon never sees half a file.
        std::fs::write(&tmp_file, &text)?;
        std::fs::rename(&tmp_file, &target)?;
        let round = loop {
            match daemon.round(Duration::from_secs(10))? {
                Some(r) if r.changed_files.contains(&target) => break r,
                Some(_) => continue,
                None => return Err(format!("no round for {rel} within 10 s").into()),
            }
        };
        let total = t0.elapsed();
        let batches = take();
        let (enforce, records, full) = match round.programmed {
            Ok(Programmed::Delta { elapsed, records, .. }) => (elapsed, records, false),
            Ok(Programmed::Full { elapsed, rules, .. }) => (elapsed, rules, true),
            Ok(Programmed::Unchanged) => (Duration::ZERO, 0, false),
            Err(e) => return Err(format!("programming {rel}: {e}").into()),
        };
        if n >= warmup {
            samples.push(Sample { change: *change, total, enforce, records, full, batches });
        }
    }
    report_latency(&samples);

    // The floor of one nft call: a one-command batch, with this table in
    // force, then in an empty namespace.
    if let Some(recorder) = &recorder {
        let floor_big = nft_floor(recorder, &plugin, 30)?;
        daemon.enforcer_mut().reset()?;
        let floor_empty = nft_floor(recorder, &plugin, 30)?;
        println!(
            "nft floor (one-command batch, p50 of 30): {:.2} ms with this table in force, {:.2} ms with no table",
            floor_big, floor_empty
        );
    }
    daemon.enforcer_mut().reset()?;
    drop(daemon);
    lab.down()?;
    Ok(())
}

fn report_latency(samples: &[Sample]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (label, filter) in [
        ("policy port changed", Some(false)),
        ("pod label changed", Some(true)),
        ("all changes", None),
    ] {
        let chosen: Vec<&Sample> = samples
            .iter()
            .filter(|s| match filter {
                Some(pod) => matches!(s.change, Change::PodLabel(_)) == pod,
                None => true,
            })
            .collect();
        let total = summary(&chosen.iter().map(|s| ms(s.total)).collect::<Vec<_>>());
        let enforce = summary(&chosen.iter().map(|s| ms(s.enforce)).collect::<Vec<_>>());
        let nft = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| ms(b.elapsed)).sum::<f64>())
                .collect::<Vec<_>>(),
        );
        let rest = summary(&chosen.iter().map(|s| ms(s.total - s.enforce)).collect::<Vec<_>>());
        let records = summary(&chosen.iter().map(|s| s.records as f64).collect::<Vec<_>>());
        let commands = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| b.commands).sum::<usize>() as f64)
                .collect::<Vec<_>>(),
        );
        let bytes = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| b.bytes).sum::<usize>() as f64 / 1e3)
                .collect::<Vec<_>>(),
        );
        let fulls = chosen.iter().filter(|s| s.full).count();
        let no_batch = chosen.iter().filter(|s| s.batches.is_empty()).count();
        let multi = chosen.iter().filter(|s| s.batches.len() > 1).count();
        let failed = chosen.iter().filter(|s| s.batches.iter().any(|b| !b.ok)).count();
        println!(
            "{label} (n={}): total p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            chosen.len(),
            total.p50,
            total.p99,
            total.max
        );
        println!(
            "  enforcer (plugin + nft) p50 {:.2} / p99 {:.2} / max {:.2} ms; nft alone p50 {:.2} / p99 {:.2} / max {:.2} ms; watch + read + resolve p50 {:.2} / p99 {:.2} / max {:.2} ms",
            enforce.p50, enforce.p99, enforce.max, nft.p50, nft.p99, nft.max, rest.p50, rest.p99, rest.max
        );
        println!(
            "  delta records p50 {:.0} / max {:.0}; nft commands p50 {:.0} / max {:.0}; batch JSON p50 {:.1} kB / max {:.1} kB; full programmings {fulls}, rounds without a batch {no_batch}, with several batches {multi}, failed batches {failed}",
            records.p50, records.max, commands.p50, commands.max, bytes.p50, bytes.max
        );
    }
}

/// p50 in ms of a one-command nft batch (`add table inet palisade`: a no-op
/// on an existing table, an empty table otherwise) through the same provider
/// as the plugin's batches (a thread in the namespace, then `nft -j -f -`).
fn nft_floor(recorder: &Recorder, plugin: &str, n: usize) -> Result<f64, Error> {
    let batch =
        json!({"nftables": [{"add": {"table": {"family": "inet", "name": TABLE}}}]}).to_string();
    let mut times = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        recorder.inner.apply(plugin, &batch)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(percentile(&sorted(times), 50.0))
}

fn count_nft_rules(netns: &Path) -> Result<usize, Error> {
    let netns = netns.to_path_buf();
    let out = palisade_netns::run_in(&netns, || {
        std::process::Command::new("nft").args(["-a", "list", "table", "inet", TABLE]).output()
    })??;
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("# handle")).count())
}

// ---------------------------------------------------------------------------
// (b) Per-connection cost.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run_latency = args.is_empty() || args.iter().any(|a| a == "latency");
    let run_conn = args.is_empty() || args.iter().any(|a| a == "per-connection");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000] } else { sizes };
    if !nix_is_root() {
        eprintln!("dataplane bench: needs root (network namespaces, nft); skipped");
        return;
    }
    let mut failed = false;
    if run_latency {
        let changes = env_usize("PALISADE_BENCH_CHANGES", 100);
        for &p in &sizes {
            for backend in backends() {
                if let Err(e) = latency(p, changes, &backend) {
                    eprintln!("latency ({backend}) with {p} policies: {e}");
                    failed = true;
                }
            }
        }
    }
    if run_conn {
        if let Err(e) = per_connection() {
            eprintln!("per-connection: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// The pods of the per-connection lab, as objects: namespace `bench`, a
/// client and a server.
fn bench_pods() -> Vec<Value> {
    let pod = |name: &str, ip: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
            "spec": {"nodeName": "node-0", "containers": [{"name": "main", "ports": [
                {"name": "bench", "containerPort": SERVER_PORT, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip},
        })
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench",
            "labels": {"kubernetes.io/metadata.name": "bench", "team": "bench"}}}),
        pod("client", CLIENT_IP),
        pod("server", SERVER_IP),
    ]
}

const CLIENT_IP: &str = "10.0.1.1";
const SERVER_IP: &str = "10.0.1.2";

/// `fillers` policies isolating the server, none of which admits the client
/// (ingress from external /24 ranges, 200 different ones, on ports of their
/// own), then `zz-allow-client`: ingress from the client on the server port.
fn server_policies(fillers: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..fillers)
        .map(|j| {
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("filler-{j:05}"), "namespace": "bench"},
                "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"ipBlock": {"cidr": format!("198.18.{}.0/24", j % 200)}}],
                                 "ports": [port(10_000 + (j % 20_000) as u16)]}]},
            })
        })
        .collect();
    out.push(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "zz-allow-client", "namespace": "bench"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [port(SERVER_PORT)]}]},
    }));
    out
}

/// A rule set of `objects`, and where the rule admitting the client sits in
/// the server's ingress chain (index, rules in the chain).
fn rule_set_of(objects: Vec<Value>) -> Result<(palisade_model::RuleSet, usize, usize), Error> {
    let mut pipeline = Pipeline::new(Default::default(), Default::default());
    let outcome = pipeline.apply(objects);
    if let Some(r) = outcome.rejected.first() {
        return Err(format!("rejected {}: {}", r.object, r.message).into());
    }
    let rs = pipeline.rule_set().clone();
    let server =
        rs.endpoints.iter().find(|e| e.name == "bench/server").ok_or("no server endpoint")?.id;
    let policy = rs
        .policies
        .iter()
        .find(|p| p.endpoint == server && p.direction == palisade_model::Direction::Ingress)
        .ok_or("the server is not isolated")?;
    let allow_origin =
        rs.origins.iter().find(|o| o.name == "zz-allow-client").ok_or("no allow-client origin")?.id;
    let rules: Vec<_> = policy.tiers.iter().flat_map(|t| t.rules.iter()).collect();
    let at = rules.iter().position(|r| r.origin == allow_origin).ok_or("no allow rule")?;
    let len = rules.len();
    Ok((rs, at, len))
}

struct Server {
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
    client_ns: PathBuf,
}

/// An echo server in the server's namespace: `workers` threads accepting on
/// one listener, each serving a connection to its end.
fn start_server(server_ns: &Path, client_ns: &Path, workers: usize) -> Result<Server, Error> {
    let listener = palisade_netns::run_in(server_ns, || {
        TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], SERVER_PORT)))
    })??;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let listener = listener.try_clone()?;
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else { continue };
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 64];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    Ok(Server {
        stop,
        workers: handles,
        addr: SocketAddr::new(SERVER_IP.parse()?, SERVER_PORT),
        client_ns: client_ns.to_path_buf(),
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake every worker blocked in accept.
        let addr = self.addr;
        let n = self.workers.len();
        let _ = palisade_netns::run_in(&self.client_ns, move || {
            for _ in 0..n {
                let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            }
        });
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

const REQUEST: &[u8] = b"ping1234";

/// One connection: connect, a request of 8 bytes, its echo, close.
fn one_connection(addr: &SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(2))?;
    s.set_nodelay(true)?;
    s.write_all(REQUEST)?;
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf)?;
    Ok(())
}

/// What the node namespace holds during one per-connection configuration.
enum Config<'a> {
    /// No table.
    None,
    /// A table written directly (libnftables JSON).
    Raw(&'a str),
    /// The plugin's table for a rule set.
    Rules(&'a palisade_model::RuleSet),
}

/// One configuration's run: connections, and the round trips' (p50, p99).
type Measured = (ConnResult, (f64, f64));

struct ConnResult {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `count` connections from `clients` threads in the client's namespace.
fn connections(
    client_ns: &Path,
    addr: SocketAddr,
    count: usize,
    clients: usize,
) -> Result<ConnResult, Error> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let share = count / clients + usize::from(c < count % clients);
        handles.push(palisade_netns::spawn_in(client_ns, move || {
            let mut times = Vec::with_capacity(share);
            for _ in 0..share {
                let t0 = Instant::now();
                one_connection(&addr)?;
                times.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, std::io::Error>(times)
        })?);
    }
    let mut times = Vec::with_capacity(count);
    for h in handles {
        times.extend(h.join().map_err(|_| "client thread panicked")???);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let times = sorted(times);
    Ok(ConnResult {
        per_second: count as f64 / elapsed,
        p50_us: percentile(&times, 50.0),
        p99_us: percentile(&times, 99.0),
    })
}

/// `trips` round trips of 8 bytes on one established connection: (p50, p99)
/// in µs.
fn round_trips(client_ns: &Path, addr: SocketAddr, trips: usize) -> Result<(f64, f64), Error> {
    let times = palisade_netns::run_in(client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 8];
        let mut times = Vec::with_capacity(trips);
        for _ in 0..trips {
            let t0 = Instant::now();
            s.write_all(REQUEST)?;
            s.read_exact(&mut buf)?;
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        Ok::<_, std::io::Error>(times)
    })??;
    let times = sorted(times);
    Ok((percentile(&times, 50.0), percentile(&times, 99.0)))
}

fn per_connection() -> Result<(), Error> {
    let count = env_usize("PALISADE_BENCH_CONNECTIONS", 20_000);
    let trips = env_usize("PALISADE_BENCH_ROUND_TRIPS", 20_000);
    let rounds = env_usize("PALISADE_BENCH_ROUNDS", 3);
    let clients = env_usize("PALISADE_BENCH_CLIENTS", 2);
    let cluster_rules = env_usize("PALISADE_BENCH_CLUSTER_RULES", 10_000);
    println!(
        "\n== per-connection: {count} connections from {clients} client threads, {trips} round trips, {rounds} rounds =="
    );

    // The rule sets. The cluster: PALISADE_BENCH_CLUSTER_POLICIES policies,
    // or else the fewest (in steps of 5%, from 1,000) that put at least
    // PALISADE_BENCH_CLUSTER_RULES rules (default 10,000) in force.
    let cluster_of = |policies: usize| {
        let mut objects = cluster(policies);
        objects.extend(bench_pods());
        objects.extend(server_policies(100));
        rule_set_of(objects)
    };
    let (short, short_at, short_len) = match std::env::var("PALISADE_BENCH_CLUSTER_POLICIES") {
        Ok(v) => cluster_of(v.parse()?)?,
        Err(_) => {
            let mut policies = 1_000;
            loop {
                let r = cluster_of(policies)?;
                if r.0.rule_count() >= cluster_rules || policies > 1_000_000 {
                    println!("cluster: {policies} policies");
                    break r;
                }
                policies += policies / 20;
            }
        }
    };
    let mut long_objects = bench_pods();
    long_objects.extend(server_policies(9_999));
    let (long, long_at, long_len) = rule_set_of(long_objects)?;
    // The table with no policy at all: its base chains and the conntrack
    // rule, i.e. what every packet pays before any policy rule.
    let empty = palisade_model::RuleSet::default();
    // Two tables written directly (not by the plugin) to split the empty
    // table's cost: a forward base chain with no rule (the hook alone: no
    // conntrack in the namespace), and the same chain with only `ct state
    // established,related accept` (which turns conntrack on).
    let raw = |ct: bool| {
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": TABLE}}}),
            json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": "forward",
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}}),
        ];
        if ct {
            cmds.push(
                json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": "forward",
                "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                    "right": ["established", "related"]}}, {"accept": null}]}}}),
            );
        }
        json!({ "nftables": cmds }).to_string()
    };
    let (hook_only, ct_only) = (raw(false), raw(true));
    // (backend, configuration): the baseline once, then each backend's
    // configurations, alternated in every round.
    let mut configs: Vec<(String, &str, Config)> = vec![(String::new(), "no policy", Config::None)];
    for b in backends() {
        if b == "nftables" {
            configs.push((b.clone(), "hook only", Config::Raw(&hook_only)));
            configs.push((b.clone(), "ct only", Config::Raw(&ct_only)));
            configs.push((b.clone(), "empty table", Config::Rules(&empty)));
        }
        configs.push((b.clone(), "cluster", Config::Rules(&short)));
        configs.push((b.clone(), "server-10k", Config::Rules(&long)));
    }
    println!(
        "cluster: {} endpoints, {} rules in force; the server's ingress chain has {short_len} rules, the client's allow at index {short_at}",
        short.endpoints.len(),
        short.rule_count()
    );
    println!(
        "server-10k: {} endpoints, {} rules in force; the server's ingress chain has {long_len} rules, the client's allow at index {long_at}",
        long.endpoints.len(),
        long.rule_count()
    );

    let spec = LabSpec {
        pods: vec![
            LabPod { key: "bench/client".into(), ip: CLIENT_IP.parse()?, ports: vec![] },
            LabPod { key: "bench/server".into(), ip: SERVER_IP.parse()?, ports: vec![] },
        ],
        ..LabSpec::default()
    };
    let lab = Lab::up(&spec)?;
    let client_ns = lab.endpoint("bench/client").ok_or("no client")?.netns_path();
    let server_ns = lab.endpoint("bench/server").ok_or("no server")?.netns_path();
    // The client closes first: its ports sit in TIME_WAIT; reuse them
    // (100,000+ connections over a run, 28,000 ephemeral ports).
    palisade_netns::run_in(&client_ns, || std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1"))??;
    let server = start_server(&server_ns, &client_ns, 4)?;
    let addr = server.addr;
    let engine = PluginEngine::new(Default::default())?;
    let mut enforcers = BTreeMap::new();
    for b in backends() {
        let (e, recorder, plugin) = enforcer(&engine, lab.node_netns(), &b)?;
        enforcers.insert(b, (e, recorder, plugin));
    }

    // Warm up (ARP, caches) with no table.
    connections(&client_ns, addr, 1_000, clients)?;

    let mut results: BTreeMap<usize, Vec<Measured>> = BTreeMap::new();
    for round in 0..rounds {
        for (c, (backend, config, rules)) in configs.iter().enumerate() {
            for (e, _, _) in enforcers.values_mut() {
                e.reset()?;
            }
            let name = format!("{backend} {config}");
            if let (Config::Raw(batch), Some((_, Some(recorder), plugin))) =
                (rules, enforcers.get(backend))
            {
                recorder.inner.apply(plugin, batch)?;
            }
            if let (Config::Rules(rules), Some((enforcer, recorder, _))) =
                (rules, enforcers.get_mut(backend))
            {
                let t0 = Instant::now();
                enforcer.program(rules, &Delta::default())?;
                if round == 0 {
                    let took = t0.elapsed().as_secs_f64();
                    match recorder {
                        Some(recorder) => println!(
                            "  {name}: programmed in {took:.2} s ({} nft rules in the kernel, batch {:.1} MB)",
                            count_nft_rules(&lab.node_netns())?,
                            recorder.take().iter().map(|b| b.bytes).sum::<usize>() as f64 / 1e6
                        ),
                        None => println!("  {name}: programmed in {took:.2} s"),
                    }
                }
            }
            let conn = connections(&client_ns, addr, count, clients)?;
            let rt = round_trips(&client_ns, addr, trips)?;
            println!(
                "  round {round} {name:>20}: {:>8.0} connections/s (p50 {:.0} µs, p99 {:.0} µs); round trip p50 {:.1} µs, p99 {:.1} µs",
                conn.per_second, conn.p50_us, conn.p99_us, rt.0, rt.1
            );
            results.entry(c).or_default().push((conn, rt));
        }
    }
    for (e, _, _) in enforcers.values_mut() {
        e.reset()?;
    }
    drop(enforcers);
    drop(server);

    println!("mean over {rounds} rounds (median of the per-round p50/p99):");
    let base = &results[&0];
    let base_cps = base.iter().map(|r| r.0.per_second).sum::<f64>() / base.len() as f64;
    let base_rt = percentile(&sorted(base.iter().map(|r| r.1 .0).collect()), 50.0);
    for (c, (backend, config, _)) in configs.iter().enumerate() {
        let name = format!("{backend} {config}");
        let r = &results[&c];
        let cps = r.iter().map(|r| r.0.per_second).sum::<f64>() / r.len() as f64;
        let med =
            |f: &dyn Fn(&Measured) -> f64| percentile(&sorted(r.iter().map(f).collect()), 50.0);
        let rt50 = med(&|r| r.1 .0);
        println!(
            "  {name:>20}: {cps:>8.0} connections/s ({:+.1}%), connection p50 {:.0} µs / p99 {:.0} µs; round trip p50 {rt50:.1} µs ({:+.1}%), p99 {:.1} µs",
            (cps / base_cps - 1.0) * 100.0,
            med(&|r| r.0.p50_us),
            med(&|r| r.0.p99_us),
            (rt50 / base_rt - 1.0) * 100.0,
            med(&|r| r.1 .1),
        );
    }
    lab.down()?;
    Ok(())
}
