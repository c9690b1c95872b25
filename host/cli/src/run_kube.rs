//! `palisade run --source kube`: the enforcer of one node, on the
//! Kubernetes API server.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use palisade_kube_source::{health, Health, KubeConfig, KubeDaemon, SourceConfig};

use crate::run_cmd::{start_enforcer, stop_on_signals, RunArgs};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let node =
        args.node.clone().or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()));
    if node.is_none() {
        tracing::warn!("no --node and no NODE_NAME: every pod of the cluster is an endpoint");
    }
    let enforcer = start_enforcer(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("palisade-kube")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let client = palisade_kube_source::connect(runtime.handle())?;
    let health_state = Health::new();
    let bound = health::serve(runtime.handle(), args.health_addr, health_state.clone())
        .with_context(|| format!("serving /readyz and /metrics on {}", args.health_addr))?;
    let config = KubeConfig {
        source: SourceConfig {
            settle: args
                .settle_ms
                .map_or(SourceConfig::default().settle, |ms| Duration::from_millis(ms.max(1))),
            ..SourceConfig::default()
        },
        dialects: args.beta_rule.dialect_settings(),
        resolver: palisade_resolver::Settings { node: node.clone(), ..Default::default() },
        post_events: !args.no_events,
        readiness_gates: !args.no_readiness_gates,
    };
    let stop = stop_on_signals()?;
    let mut daemon =
        KubeDaemon::start(runtime.handle(), client, &config, enforcer, health_state.clone());
    eprintln!(
        "palisade: watching the API server for node {}; /readyz and /metrics on {bound}",
        node.as_deref().unwrap_or("(all)")
    );
    let mut announced = false;
    let mut waiting_logged = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        daemon.round(Duration::from_millis(200)).map_err(|e| anyhow!(e))?;
        if !announced && waiting_logged.elapsed() > Duration::from_secs(10) {
            tracing::info!(waiting_for = ?daemon.unsynced(), "first sync not programmed yet");
            waiting_logged = std::time::Instant::now();
        }
        if !announced && health_state.is_ready() {
            let rules = daemon.pipeline().rule_set();
            eprintln!(
                "palisade: programmed generation {} ({} endpoints, {} policies); ready",
                rules.generation,
                rules.endpoints.len(),
                rules.policies.len()
            );
            announced = true;
        }
    }
    if args.reset_on_exit {
        daemon.programmer_mut().reset()?;
        eprintln!("palisade: removed what the plugin programmed");
    }
    Ok(ExitCode::SUCCESS)
}
