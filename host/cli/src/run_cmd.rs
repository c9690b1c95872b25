//! `palisade run`: the enforcer of one node, on a watched manifest directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use palisade_daemon::{profile, Daemon, DaemonConfig, Enforcer, Programmed, Target};
use palisade_nft::{EndpointGuard, GuardConfig};
use palisade_plugin_host::{EngineOptions, Limits, PluginEngine};

use crate::manifests::BetaRuleArg;

/// Enforce the policy of a manifest directory, or of the cluster, on this machine.
///
/// Reads every manifest under the directory (YAML or JSON; Namespaces, Pods,
/// Nodes and policy objects of every dialect), programs the rule set through
/// the chosen backend plugin, then watches the directory: every change is
/// programmed as a delta. If the plugin fails, what it programmed last stays
/// in force and the error is logged (fail static). Stop with Ctrl-C or
/// SIGTERM, or die: the programmed rules stay in force either way, with
/// every backend (eBPF pins its maps, programs and links under
/// --bpf-pin-dir), and the next `palisade run` takes them over without a
/// window. Only --reset-on-exit, --reset-only or `palisade reset` remove
/// them.
///
/// With `--source kube` the objects come from the Kubernetes API server
/// (in-cluster service account, or KUBECONFIG): Namespaces, Pods, Nodes,
/// ServiceAccounts, NetworkPolicies, the 2016 CRD and Calico's
/// crd.projectcalico.org/v1 kinds are watched; the pods of --node (or
/// $NODE_NAME) are the endpoints. /healthz, /readyz (?pod=NS/NAME: that
/// pod's policy is programmed), /status and /metrics are served on
/// --health-addr (`palisade status` reads them); invalid policies get a
/// Kubernetes Event; pods with the readiness gate
/// `palisade.io/policy-programmed` get that condition once their policy is
/// in force.
///
/// Examples:
///   palisade run --source dir:/etc/palisade/manifests --plugin nftables
///   palisade run --source kube --plugin nftables --node "$NODE_NAME" --log-json
///   palisade run --source dir:manifests --plugin nftables --netns /run/netns/node1 --log info
///   palisade run --source dir:manifests --plugin ebpf --reset-only    # remove what it programmed
///   palisade run --source kube --plugin ebpf --endpoint-interfaces 'cali*'   # new pods fail closed
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Where the objects come from: `dir:PATH` (a watched manifest
    /// directory) or `kube` (the Kubernetes API server).
    #[arg(long)]
    pub source: String,
    /// Backend plugin: nftables, ebpf, calico-compat, or a path to a .wasm.
    #[arg(long)]
    pub plugin: String,
    /// Network namespace to program (default: this process's own).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// Only pods on this node are endpoints (default: every pod; with
    /// `--source kube`, $NODE_NAME when set).
    #[arg(long)]
    pub node: Option<String>,
    /// nftables table (family inet) of the nftables backend.
    #[arg(long, default_value = "palisade")]
    pub table: String,
    /// Extra folders to search for plugins by name.
    #[arg(long = "plugin-dir")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Quiet time after a change before it is read, in milliseconds
    /// (default 5 for `dir:`, 100 for `kube`).
    #[arg(long)]
    pub settle_ms: Option<u64>,
    /// When extensions/v1beta1 policies are in force.
    #[arg(long = "v1beta1-rule", value_enum, default_value_t = BetaRuleArg::Beta)]
    pub beta_rule: BetaRuleArg,
    /// Remove what the plugin programmed when stopping.
    #[arg(long)]
    pub reset_on_exit: bool,
    /// Remove what the plugin programmed (by this or an earlier process),
    /// then exit without enforcing (the same as `palisade reset`).
    #[arg(long)]
    pub reset_only: bool,
    /// The eBPF backend: the bpffs directory its state is pinned under
    /// (per node namespace and plugin: DIR/ns<inode>/<plugin>/); bpffs is
    /// mounted on /sys/fs/bpf if the node has none there.
    #[arg(long, default_value = palisade_bpf::pins::DEFAULT_ROOT)]
    pub bpf_pin_dir: PathBuf,
    /// Fail closed on new pods: the node-side interfaces of this node's
    /// pods, as patterns (`veth*`, `cali*`; comma-separated or repeated).
    /// Traffic from or to such an interface is dropped unless its pod
    /// address is an endpoint whose policy the backend has programmed, also
    /// while palisade is down (a table of its own, `--guard-table`).
    #[arg(long = "endpoint-interfaces", value_delimiter = ',', value_name = "PATTERN")]
    pub endpoint_interfaces: Vec<String>,
    /// The endpoint guard's nftables table (family inet).
    #[arg(long, default_value = palisade_nft::guard::DEFAULT_TABLE)]
    pub guard_table: String,
    /// `--source kube`: where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:9464")]
    pub health_addr: std::net::SocketAddr,
    /// `--source kube`: do not post Kubernetes Events about invalid objects.
    #[arg(long)]
    pub no_events: bool,
    /// `--source kube`: do not set the `palisade.io/policy-programmed`
    /// condition of pods that list it in their readinessGates (set once
    /// the pod's policy is programmed on its node).
    #[arg(long)]
    pub no_readiness_gates: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The sandbox's limits of the backend plugin. A plugin that breaks one is
/// stopped in the middle of its call (a trap): what it programmed before
/// stays in force, a fresh instance re-applies the last good rule set, and
/// the failed change is retried (docs/reliability.md).
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Linear memory of the plugin, in MiB.
    #[arg(long = "plugin-memory-mb", value_name = "MIB", default_value_t = Limits::default().memory_bytes >> 20)]
    pub memory_mb: usize,
    /// CPU time the plugin may spend in one call (its own running time,
    /// not the host's capability calls), in milliseconds.
    #[arg(long = "plugin-deadline-ms", value_name = "MS", default_value_t = Limits::default().call_deadline.as_millis() as u64)]
    pub deadline_ms: u64,
    /// Capability calls (nft batches, map writes, attaches...) the plugin
    /// may make during one call of its own.
    #[arg(long = "plugin-host-calls", value_name = "N", default_value_t = Limits::default().host_calls_per_call)]
    pub host_calls: u64,
    /// Bytes the plugin may pass in one capability call, in KiB.
    #[arg(long = "plugin-host-call-kb", value_name = "KIB", default_value_t = Limits::default().host_call_payload_bytes >> 10)]
    pub host_call_kb: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> anyhow::Result<Limits> {
        if self.memory_mb == 0
            || self.deadline_ms == 0
            || self.host_calls == 0
            || self.host_call_kb == 0
        {
            bail!("--plugin-memory-mb, --plugin-deadline-ms, --plugin-host-calls and --plugin-host-call-kb must be above 0");
        }
        Ok(Limits {
            memory_bytes: self.memory_mb.saturating_mul(1 << 20),
            call_deadline: Duration::from_millis(self.deadline_ms),
            host_calls_per_call: self.host_calls,
            host_call_payload_bytes: self.host_call_kb.saturating_mul(1 << 10),
            ..Limits::default()
        })
    }
}

pub(crate) fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("palisade-signals".into()).spawn(move || {
        runtime.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("cannot listen for SIGTERM: {e}");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping");
            flag.store(true, Ordering::Relaxed);
        })
    })?;
    Ok(stop)
}

/// Loads the plugin of `args` and starts it under its supervisor.
pub(crate) fn start_enforcer(args: &RunArgs) -> anyhow::Result<Enforcer> {
    let target = Target {
        netns: args.netns.clone(),
        nft_table: Some(args.table.clone()),
        bpf_pins: Some(args.bpf_pin_dir.clone()),
    };
    let enforcer = start_backend(&args.plugin, &args.plugin_dirs, &target, args.limits.limits()?)?;
    let interfaces: Vec<String> =
        args.endpoint_interfaces.iter().filter(|p| !p.is_empty()).cloned().collect();
    if interfaces.is_empty() {
        return Ok(enforcer);
    }
    let config = GuardConfig { table: args.guard_table.clone(), interfaces };
    let guard = EndpointGuard::install(args.netns.clone(), config)
        .context("--endpoint-interfaces: installing the endpoint guard")?;
    Ok(enforcer.with_guard(guard))
}

/// Loads backend `plugin` for `target` and starts it under its supervisor.
pub(crate) fn start_backend(
    plugin: &str,
    plugin_dirs: &[PathBuf],
    target: &Target,
    limits: Limits,
) -> anyhow::Result<Enforcer> {
    let engine =
        PluginEngine::new(EngineOptions::default()).context("starting the plugin engine")?;
    let profile = profile(plugin, plugin_dirs, target)?;
    let plugin = profile.load(&engine, limits)?;
    tracing::info!(plugin = plugin.name(), file = %profile.path.display(), "plugin loaded");
    Ok(Enforcer::start(plugin, profile.settings.clone())?)
}

pub fn run(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.reset_only {
        let enforcer = start_enforcer(&args)?;
        return crate::reset_cmd::reset(
            enforcer,
            &args.plugin,
            args.netns.as_deref(),
            &args.guard_table,
        );
    }
    if args.source == "kube" {
        return crate::run_kube::run(args);
    }
    let Some(dir) = args.source.strip_prefix("dir:") else {
        bail!("--source `{}`: expected `dir:PATH` or `kube`", args.source);
    };
    let source_dir = PathBuf::from(dir);
    if !source_dir.is_dir() {
        bail!("--source {}: not a directory", source_dir.display());
    }
    let enforcer = start_enforcer(&args)?;
    let config = DaemonConfig {
        source_dir,
        settle: Duration::from_millis(args.settle_ms.unwrap_or(5)),
        dialects: args.beta_rule.dialect_settings(),
        resolver: palisade_resolver::Settings { node: args.node.clone(), ..Default::default() },
    };
    let stop = stop_on_signals()?;
    let (mut daemon, first) = Daemon::start(&config, enforcer)?;
    match &first.programmed {
        Ok(Programmed::Full { generation, rules, elapsed }) => eprintln!(
            "palisade: programmed generation {generation} ({rules} rules, {} endpoints) in {elapsed:?}; watching {}",
            daemon.pipeline().rule_set().endpoints.len(),
            daemon.source().display()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("palisade: first programming failed (will retry on the next change): {e}"),
    }
    daemon.run(&stop).map_err(|e| anyhow!(e))?;
    if args.reset_on_exit {
        daemon.enforcer_mut().reset()?;
        eprintln!("palisade: removed what the plugin programmed");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
