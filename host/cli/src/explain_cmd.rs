//! `palisade explain`: the verdict for one connection, in words.

use std::path::PathBuf;

use anyhow::anyhow;
use palisade_evaluator::{explain_with, Evaluator, Flow};

use crate::manifests::{self, BetaRuleArg};

/// Explain whether a connection is allowed, and why.
///
/// Resolves PATH (a manifest file or directory) and judges a new connection
/// FROM -> TO on PORT: the source pod's egress policy and the destination
/// pod's ingress policy must both allow it. Prints the verdict, the policies
/// that select each side, and the rule that decided (or that none did).
///
/// Endpoints: NAMESPACE/POD (the pod's IP), ip:ADDRESS (outside the
/// cluster), node:NAME (the Node's InternalIP).
///
/// Examples:
///   palisade explain manifests/ --from default/frontend --to default/db --port 6379
///   palisade explain cluster.yaml --from ip:192.0.2.10 --to shop/web --port 53/UDP
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// Manifest file or directory.
    pub path: PathBuf,
    /// Source: NAMESPACE/POD, ip:ADDRESS or node:NAME.
    #[arg(long, value_name = "ENDPOINT")]
    pub from: String,
    /// Destination: NAMESPACE/POD, ip:ADDRESS or node:NAME.
    #[arg(long, value_name = "ENDPOINT")]
    pub to: String,
    /// Destination port, optionally with protocol: 80, 53/UDP (default TCP).
    #[arg(long, value_name = "N[/PROTO]", value_parser = manifests::parse_port)]
    pub port: (u16, palisade_model::Protocol),
    /// When extensions/v1beta1 policies are in force.
    #[arg(long = "v1beta1-rule", value_enum, default_value_t = BetaRuleArg::Beta)]
    pub beta_rule: BetaRuleArg,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<std::process::ExitCode> {
    let loaded =
        manifests::load(&args.path, args.beta_rule.dialect_settings(), Default::default())?;
    let from = palisade_conformance::resolve_end(&loaded.store, &args.from)
        .map_err(|e| anyhow!("--from {e}"))?;
    let to = palisade_conformance::resolve_end(&loaded.store, &args.to)
        .map_err(|e| anyhow!("--to {e}"))?;
    let (port, protocol) = args.port;
    let rules = loaded.resolver.rule_set();
    let trace = Evaluator::new(rules).evaluate(Flow {
        source: from.address,
        destination: to.address,
        protocol,
        port,
    });
    let tiers = |e: &palisade_model::Endpoint, d| loaded.resolver.tier_names(&e.name, d);
    print!("{}", explain_with(&trace, &|e, d| loaded.selecting(&e.name, d), &tiers));
    Ok(loaded.exit_code())
}
