//! `palisade resolve`: the rule set a manifest path resolves to.

use std::path::PathBuf;

use crate::manifests::{self, BetaRuleArg};

/// Output format of a rule set.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

/// Resolve manifests into the rule set of a node.
///
/// Reads Namespaces, Pods, Nodes and policy objects from PATH (a YAML/JSON
/// file or a directory, read recursively), compiles them and prints the
/// resolved rule set: endpoints, address sets, per-endpoint tiers of rules,
/// and the origin (policy object and rule) of every rule.
///
/// Examples:
///   palisade resolve manifests/
///   palisade resolve cluster.yaml --node node-1 --output json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ResolveArgs {
    /// Manifest file or directory.
    pub path: PathBuf,
    /// Resolve for this node: only its pods are endpoints (all pods remain
    /// peers). Without it every pod is an endpoint.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// When extensions/v1beta1 policies are in force.
    #[arg(long = "v1beta1-rule", value_enum, default_value_t = BetaRuleArg::Beta)]
    pub beta_rule: BetaRuleArg,
}

pub fn run(args: ResolveArgs) -> anyhow::Result<std::process::ExitCode> {
    let settings = palisade_resolver::Settings { node: args.node, ..Default::default() };
    let loaded = manifests::load(&args.path, args.beta_rule.dialect_settings(), settings)?;
    let rules = loaded.resolver.rule_set();
    let text = match args.output {
        Format::Yaml => serde_yaml::to_string(rules)?,
        Format::Json => serde_json::to_string_pretty(rules)? + "\n",
    };
    print!("{text}");
    Ok(loaded.exit_code())
}
