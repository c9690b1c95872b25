//! `palisade conformance`: scenario files judged against a backend.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use palisade_conformance::{agreement, backend_by_name, load, report, run, RunSettings, BACKENDS};

use crate::manifests::BetaRuleArg;

/// Report format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Mismatches with traces, then `N passed, N failed`.
    #[default]
    Text,
    /// Every expectation with its result.
    Json,
}

/// Run conformance scenarios against a backend.
///
/// Each PATH is a scenario file (YAML or JSON, scenario format v1) or a
/// directory searched recursively. Every scenario starts from its objects;
/// steps apply and delete objects cumulatively and state expected verdicts,
/// which the backend must reproduce. Invalid objects are reported (scenario,
/// step, object, field) and skipped; the run goes on.
///
/// Exit status: 0 if every expectation passed, 1 otherwise.
///
/// Examples:
///   palisade conformance tests/scenarios
///   palisade conformance --verbose tests/scenarios/walkthroughs
///   palisade conformance suite/ other.yaml --output json > results.json
///   palisade conformance legacy/ --v1beta1-rule v1
///   palisade conformance --backend nftables --dataplane tests/scenarios   (as root)
///   palisade conformance --backend ebpf --dataplane tests/scenarios       (as root)
///   palisade conformance --backend reference,nftables,ebpf --dataplane tests/scenarios
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ConformanceArgs {
    /// Scenario files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Backend to judge: `reference` (the rule-set evaluator, no root
    /// needed), or a backend plugin (`nftables`, `ebpf`, ...) with
    /// --dataplane. Several, comma-separated, run one after the other and
    /// are compared: the run fails unless they answer every expectation
    /// alike.
    #[arg(long, default_value = "reference")]
    pub backend: String,
    /// Enforce each step for real: build a network-namespace lab of the
    /// scenario's pods (root), program the plugin through the plugin host,
    /// and probe every expectation on the wire.
    #[arg(long)]
    pub dataplane: bool,
    /// How long a probe waits before it counts as dropped (--dataplane).
    #[arg(long, default_value_t = 300)]
    pub probe_timeout_ms: u64,
    /// Extra folders to search for plugins by name (--dataplane).
    #[arg(long = "plugin-dir")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// When extensions/v1beta1 policies are in force.
    #[arg(long = "v1beta1-rule", value_enum, default_value_t = BetaRuleArg::Beta)]
    pub beta_rule: BetaRuleArg,
    /// Print every step and every expectation, not only the mismatches.
    #[arg(long, short)]
    pub verbose: bool,
}

fn backend(
    args: &ConformanceArgs,
    name: &str,
) -> anyhow::Result<Box<dyn palisade_conformance::Backend>> {
    if args.dataplane && name != "reference" {
        return Ok(Box::new(palisade_harness::LabBackend::new(
            name,
            args.plugin_dirs.clone(),
            std::time::Duration::from_millis(args.probe_timeout_ms),
        )?));
    }
    backend_by_name(name).ok_or_else(|| {
        anyhow!(
            "--backend `{name}` is unknown without --dataplane (known: {}; plugins such as \
             nftables and ebpf run with --dataplane, as root)",
            BACKENDS.join(", ")
        )
    })
}

pub fn run_cmd(args: ConformanceArgs) -> anyhow::Result<std::process::ExitCode> {
    let names: Vec<&str> =
        args.backend.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Err(anyhow!("--backend names no backend"));
    }
    // Every backend first: an unknown name fails before anything is read.
    let mut backends = Vec::new();
    for name in &names {
        backends.push(backend(&args, name)?);
    }
    let mut scenarios = Vec::new();
    for path in &args.paths {
        scenarios.extend(
            load(path).with_context(|| format!("cannot read scenarios from {}", path.display()))?,
        );
    }
    let settings =
        RunSettings { dialects: args.beta_rule.dialect_settings(), ..Default::default() };
    let mut reports = Vec::new();
    for (name, mut backend) in names.iter().zip(backends) {
        let result = run(&scenarios, backend.as_mut(), &settings);
        // A lab backend tears its lab down when dropped: before the next.
        drop(backend);
        if names.len() > 1 && args.output == Format::Text {
            println!("== backend {name}");
        }
        match args.output {
            Format::Text if args.verbose => print!("{}", report::text_verbose(&result)),
            Format::Text => print!("{}", report::text(&result)),
            Format::Json if names.len() == 1 => println!("{}", report::json(&result)?),
            Format::Json => {}
        }
        reports.push(result);
    }
    let mut success = reports.iter().all(|r| r.success());
    if names.len() > 1 {
        let a = agreement::agreement(&reports);
        success &= a.complete();
        match args.output {
            Format::Text => print!("{}", agreement::text(&a)),
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"runs": reports, "agreement": a})
                )?
            ),
        }
    }
    Ok(if success { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}
