//! `palisade lab`: the network-namespace lab (palisade-lab) by hand: build
//! it from a scenario or manifests, probe it, clean up after dead labs.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palisade_dialects::Compiler;
use palisade_lab::signals::{HoldEnd, TerminationSignals};
use palisade_lab::{Lab, LabExternal, LabSpec, Observed, ProbeOutcome, ProbeRequest};
use palisade_model::{ModelEvent, Protocol};
use serde_json::Value;

use crate::manifests;

/// Build network-namespace labs: real traffic between pods, through a node.
///
/// A lab is one network namespace for the node that routes between one
/// namespace per pod (its podIP on eth0, a listener on every declared
/// containerPort answering with `ns/name`) and one per external endpoint
/// (`ip:...` and `node:...` of a scenario). Every packet between them is
/// forwarded by the node namespace, where an enforcer applies policy.
/// Needs root. Namespaces are named `plXXXX-...`; see docs/lab.md.
///
/// Examples:
///   palisade lab up tests/scenarios/v1/v1-deny-all-then-allow.yaml
///   palisade lab probe manifests/ --port 53/UDP
///   palisade lab down
#[derive(clap::Subcommand, Debug)]
#[command(verbatim_doc_comment)]
pub enum LabCommand {
    Up(UpArgs),
    Probe(ProbeArgs),
    Down(DownArgs),
}

/// Build the lab of a scenario or manifests and keep it until Ctrl-C.
///
/// PATH is a scenario file (its objects, the pods its steps add, and the
/// `ip:`/`node:` endpoints its expectations name) or a manifest file or
/// directory (its Pods and Nodes). Prints the namespaces, addresses, node
/// side veths and listeners, then holds the lab until Ctrl-C or SIGTERM (or
/// `--hold-seconds`), and tears it down.
///
/// While it is up, for example:
///   ip netns exec plXXXX-node nft list ruleset
///   ip netns exec plXXXX-p0 ss -lntu
///
/// Examples:
///   palisade lab up tests/scenarios/v1/v1-deny-all-then-allow.yaml
///   palisade lab up manifests/ --hold-seconds 30
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UpArgs {
    /// Scenario file, or manifest file or directory.
    pub path: PathBuf,
    /// Tear down after this many seconds instead of waiting for a signal.
    #[arg(long, value_name = "N")]
    pub hold_seconds: Option<u64>,
}

/// Build the lab, probe every pair of endpoints, print what the wire says.
///
/// Each endpoint (pods, then externals) probes every other one on each
/// port the destination declares, or on `--port` only; all probes run at
/// once. Without an enforcer everything that reaches its destination is
/// allowed, so this shows the lab itself works.
///
/// Cells: `+` answered by the intended endpoint, `r` refused (reached it,
/// nothing listens: allowed), `-` denied (silence or ICMP unreachable),
/// `!` answered by another host, `?` no verdict (e.g. SCTP unsupported),
/// `.` not probed (the endpoint itself, or a port it does not declare).
///
/// Examples:
///   palisade lab probe tests/scenarios/v1/v1-deny-all-then-allow.yaml
///   palisade lab probe manifests/ --port 53/UDP --timeout-ms 500
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProbeArgs {
    /// Scenario file, or manifest file or directory.
    pub path: PathBuf,
    /// Probe this port only (N or N/PROTO, TCP if no protocol).
    #[arg(long, value_name = "N[/PROTO]", value_parser = manifests::parse_port)]
    pub port: Option<(u16, Protocol)>,
    /// Probe timeout in milliseconds (a denied probe costs this much).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub timeout_ms: u64,
    /// Print every probe's outcome in words, too.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Remove what earlier labs left behind.
///
/// Deletes every namespace named like a lab's (`plXXXX-node`, `-pN`, `-xN`)
/// whose owning process is gone (killed before its teardown ran). Labs of
/// running processes are left alone.
///
/// Example:
///   palisade lab down
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DownArgs {}

pub fn run(cmd: LabCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        LabCommand::Up(args) => up(args),
        LabCommand::Probe(args) => probe(args),
        LabCommand::Down(_) => down(),
    }
}

fn up(args: UpArgs) -> anyhow::Result<std::process::ExitCode> {
    // Before any thread starts: every thread then has SIGINT/SIGTERM
    // blocked, and the waiting thread takes them, so teardown always runs.
    let signals = TerminationSignals::block().context("cannot block SIGINT/SIGTERM")?;
    let spec = load_spec(&args.path)?;
    let started = Instant::now();
    let lab = Lab::up(&spec)?;
    println!("{}", lab.describe().trim_end());
    println!("up in {} ms", started.elapsed().as_millis());
    let limit = args.hold_seconds.map(Duration::from_secs);
    match limit {
        Some(s) => println!("holding for {} s (or until Ctrl-C / SIGTERM)", s.as_secs()),
        None => println!("holding until Ctrl-C / SIGTERM"),
    }
    let end = signals.wait(limit);
    let prefix = lab.prefix().to_string();
    let started = Instant::now();
    lab.down()?;
    let why = match end {
        HoldEnd::Signal(name) => format!("{name} received"),
        HoldEnd::TimeLimit => "time is up".to_string(),
    };
    println!("{why}: lab {prefix} torn down in {} ms", started.elapsed().as_millis());
    Ok(std::process::ExitCode::SUCCESS)
}

fn probe(args: ProbeArgs) -> anyhow::Result<std::process::ExitCode> {
    let spec = load_spec(&args.path)?;
    let started = Instant::now();
    let lab = Lab::up(&spec)?;
    let up_ms = started.elapsed().as_millis();
    let keys: Vec<String> = spec.endpoints().map(|(k, _, _)| k.to_string()).collect();
    let declared = |key: &str| -> Vec<(Protocol, u16)> {
        spec.endpoints().find(|(k, _, _)| *k == key).map(|(_, _, p)| p.to_vec()).unwrap_or_default()
    };
    let mut requests = Vec::new();
    for from in &keys {
        for to in keys.iter().filter(|t| *t != from) {
            let ports = match args.port {
                Some((port, protocol)) => vec![(protocol, port)],
                None => declared(to),
            };
            for (protocol, port) in ports {
                requests.push(ProbeRequest::new(from, to, protocol, port));
            }
        }
    }
    let started = Instant::now();
    let outcomes = lab.probe_many(&requests, Duration::from_millis(args.timeout_ms));
    let probe_ms = started.elapsed().as_millis();
    let prefix = lab.prefix().to_string();
    let started = Instant::now();
    lab.down()?;
    let down_ms = started.elapsed().as_millis();

    print!("{}", render(&keys, &requests, &outcomes, args.verbose));
    println!(
        "lab {prefix}: {} endpoints up in {up_ms} ms, {} probes in {probe_ms} ms, down in {down_ms} ms",
        keys.len(),
        requests.len()
    );
    let bad = outcomes.iter().filter(|o| o.is_failure() || wrong_host(o)).count();
    Ok(if bad > 0 { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS })
}

fn down() -> anyhow::Result<std::process::ExitCode> {
    let removed = palisade_lab::cleanup_leftovers()?;
    if removed.is_empty() {
        println!("no leftovers of earlier labs");
    } else {
        println!("removed {} namespaces of dead labs:", removed.len());
        for name in &removed {
            println!("  {name}");
        }
    }
    let live: BTreeSet<String> = std::fs::read_dir(palisade_lab::NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| palisade_lab::lab_prefix_of(&n).map(str::to_string))
        .collect();
    if !live.is_empty() {
        let live: Vec<String> = live.into_iter().collect();
        println!("left alone (owned by running processes): {}", live.join(", "));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn wrong_host(o: &ProbeOutcome) -> bool {
    matches!(&o.observed, Observed::Answered { .. }) && o.detail.contains("another host answered")
}

fn cell(o: &ProbeOutcome) -> char {
    match &o.observed {
        Observed::Answered { .. } if wrong_host(o) => '!',
        Observed::Answered { .. } => '+',
        Observed::Refused => 'r',
        Observed::TimedOut | Observed::Unreachable(_) => '-',
        Observed::Failed(_) => '?',
    }
}

/// One table per (port, protocol): rows from, columns to.
fn render(
    keys: &[String],
    requests: &[ProbeRequest],
    outcomes: &[ProbeOutcome],
    verbose: bool,
) -> String {
    let mut s = String::new();
    if requests.is_empty() {
        s.push_str("nothing to probe (no endpoint declares a port; try --port)\n");
        return s;
    }
    let labels: Vec<String> = (1..=keys.len()).map(|i| format!("e{i}")).collect();
    let width = labels.iter().map(String::len).max().unwrap_or(2).max(3);
    for (label, key) in labels.iter().zip(keys) {
        let _ = writeln!(s, "{label:>width$}  {key}");
    }
    let ports: BTreeSet<(u16, Protocol)> = requests.iter().map(|r| (r.port, r.protocol)).collect();
    let index = |key: &str| keys.iter().position(|k| k == key);
    for (port, protocol) in ports {
        let _ = writeln!(s, "\n{port}/{} (rows: from, columns: to)", protocol.as_str());
        let _ = write!(s, "{:>width$} ", "");
        for l in &labels {
            let _ = write!(s, " {l:>width$}");
        }
        s.push('\n');
        let mut grid = vec![vec!['.'; keys.len()]; keys.len()];
        for (r, o) in requests.iter().zip(outcomes) {
            if (r.port, r.protocol) != (port, protocol) {
                continue;
            }
            if let (Some(i), Some(j)) = (index(&r.from), index(&r.to)) {
                grid[i][j] = cell(o);
            }
        }
        for (label, row) in labels.iter().zip(&grid) {
            let _ = write!(s, "{label:>width$} ");
            for c in row {
                let _ = write!(s, " {c:>width$}");
            }
            s.push('\n');
        }
    }
    let count = |c: char| outcomes.iter().filter(|o| cell(o) == c).count();
    let _ = writeln!(
        s,
        "\nanswered {}, refused {}, denied {}, wrong host {}, no verdict {}",
        count('+'),
        count('r'),
        count('-'),
        count('!'),
        count('?')
    );
    let mut shown = BTreeSet::new();
    for (r, o) in requests.iter().zip(outcomes) {
        let notable = matches!(cell(o), '!' | '?');
        if verbose || (notable && shown.insert(o.detail.clone())) {
            let _ = writeln!(s, "  {} -> {}: {}", r.from, r.to, o.detail);
        }
    }
    s
}

/// The lab of PATH: a scenario file, else manifests.
fn load_spec(path: &Path) -> anyhow::Result<LabSpec> {
    let spec = match palisade_conformance::load(path) {
        Ok(scenarios) if scenarios.len() == 1 => spec_of_scenario(&scenarios[0]),
        Ok(scenarios) if scenarios.len() > 1 => {
            bail!("{} holds {} scenarios: give one scenario file", path.display(), scenarios.len())
        }
        scenario => {
            let documents = palisade_store::source::load_path(path).map_err(|e| {
                let as_scenario = match scenario {
                    Err(s) => format!("; as a scenario: {s}"),
                    Ok(_) => String::new(),
                };
                anyhow::anyhow!("cannot read {}: {e}{as_scenario}", path.display())
            })?;
            let objects: Vec<Value> = documents.into_iter().map(|d| d.object).collect();
            spec_of_events(&compile(&objects))
        }
    };
    for note in &spec.notes {
        eprintln!("note: left out of the lab: {note}");
    }
    if spec.pods.is_empty() && spec.externals.is_empty() {
        bail!("{}: no pod with an IPv4 address and no node: nothing to build", path.display());
    }
    Ok(spec)
}

/// Model events of the Pods and Nodes among `objects` (other kinds are not
/// the lab's business; invalid Pods and Nodes are reported).
fn compile(objects: &[Value]) -> Vec<ModelEvent> {
    let mut compiler = Compiler::new(palisade_dialects::Settings::default());
    let mut events = Vec::new();
    for object in objects {
        let kind = object.get("kind").and_then(Value::as_str);
        let api = object.get("apiVersion").and_then(Value::as_str);
        if api != Some("v1") || !matches!(kind, Some("Pod" | "Node")) {
            continue;
        }
        match compiler.apply(object) {
            Ok(compiled) => events.extend(compiled.events),
            Err(e) => eprintln!("warning: {}: {e} (left out)", palisade_store::describe(object)),
        }
    }
    events
}

fn spec_of_events(events: &[ModelEvent]) -> LabSpec {
    LabSpec::from_events(events)
}

/// Every pod the scenario ever has (initial objects and step applies), its
/// nodes, and the `ip:`/`node:` endpoints its expectations name, with the
/// ports probed on them.
fn spec_of_scenario(scenario: &palisade_conformance::Scenario) -> LabSpec {
    let mut objects = scenario.objects.clone();
    for step in &scenario.steps {
        objects.extend(step.apply.iter().cloned());
    }
    let mut spec = spec_of_events(&compile(&objects));
    for e in scenario.steps.iter().flat_map(|s| &s.expect) {
        for (name, dest) in [(&e.from, false), (&e.to, true)] {
            let ports = if dest { vec![(e.protocol, e.port)] } else { Vec::new() };
            if let Some(ip) = name.strip_prefix("ip:") {
                match ip.parse() {
                    Ok(ip) => spec.add_external(LabExternal { ports, ..LabExternal::ip(ip) }),
                    Err(_) => spec.notes.push(format!("{name}: not an IP address")),
                }
            } else if name.starts_with("node:") {
                match spec.externals.iter().find(|x| x.key == *name) {
                    Some(x) => {
                        let x = LabExternal { ports, ..x.clone() };
                        spec.add_external(x);
                    }
                    None => spec.notes.push(format!("{name}: no Node with an IPv4 address")),
                }
            }
        }
    }
    spec.notes.sort();
    spec.notes.dedup();
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios")
    }

    #[test]
    fn a_scenario_gives_its_pods_and_the_externals_its_expectations_name() {
        let spec = load_spec(&scenarios().join("v1/v1-ipblock-egress.yaml")).unwrap();
        assert!(spec.pods.iter().any(|p| p.key == "app/client"));
        let ext = spec.externals.iter().find(|e| e.key == "ip:203.0.113.128").unwrap();
        assert_eq!(ext.ports, vec![(Protocol::Tcp, 443), (Protocol::Udp, 53)]);
    }

    #[test]
    fn probing_a_scenario_lab_without_policy_reaches_every_listener() {
        let args = ProbeArgs {
            path: scenarios().join("v1/v1-deny-all-then-allow.yaml"),
            port: None,
            timeout_ms: 300,
            verbose: false,
        };
        assert_eq!(probe(args).unwrap(), std::process::ExitCode::SUCCESS);
    }

    #[test]
    fn the_table_marks_each_kind_of_outcome() {
        let keys = vec!["a/a".to_string(), "a/b".to_string()];
        let out = |observed: Observed, detail: &str| ProbeOutcome {
            allowed: matches!(observed, Observed::Answered { .. } | Observed::Refused),
            observed,
            detail: detail.into(),
            elapsed: Duration::ZERO,
        };
        let requests = vec![
            ProbeRequest::new("a/a", "a/b", Protocol::Tcp, 80),
            ProbeRequest::new("a/b", "a/a", Protocol::Tcp, 80),
            ProbeRequest::new("a/a", "a/b", Protocol::Udp, 53),
            ProbeRequest::new("a/b", "a/a", Protocol::Udp, 53),
        ];
        let outcomes = vec![
            out(Observed::Answered { by: Some("a/b".into()) }, "answered by a/b"),
            out(Observed::Refused, "refused"),
            out(Observed::TimedOut, "no answer"),
            out(Observed::Failed("boom".into()), "probe failed: boom"),
        ];
        let text = render(&keys, &requests, &outcomes, false);
        assert!(
            text.contains("answered 1, refused 1, denied 1, wrong host 0, no verdict 1"),
            "{text}"
        );
        assert!(text.contains("a/b -> a/a: probe failed: boom"), "{text}");
    }
}
