//! `palisade select`: what a Calico selector picks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use palisade_model::calico_selector::Selector;
use palisade_model::policy::Labels;

use crate::manifests;

/// Test a Calico selector: against the pods and network sets of manifests,
/// or against one label map.
///
/// With PATH (a manifest file or directory), lists the pods and
/// (Global)NetworkSets the selector picks, reading the labels Calico adds
/// to an endpoint: projectcalico.org/namespace, projectcalico.org/
/// orchestrator (k8s), projectcalico.org/serviceaccount, pcns.<label> (its
/// namespace's), pcsa.<label> (its ServiceAccount's); a namespaced
/// NetworkSet gets projectcalico.org/namespace and pcns.* too.
///
/// With --labels, says whether that label map (taken as it is) matches:
/// exit status 0 for a match, 1 for none. An invalid selector is an error
/// naming the column (exit status 2).
///
/// Examples:
///   palisade select manifests/ --selector "app == 'web' && pcns.team == 'a'"
///   palisade select --selector "has(app) && tier in {'a', 'b'}" --labels '{"app": "x", "tier": "a"}'
///   palisade select manifests/ --selector "role == 'partner'" -o json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct SelectArgs {
    /// Manifest file or directory.
    pub path: Option<PathBuf>,
    /// The selector, in Calico's selector language.
    #[arg(long)]
    pub selector: String,
    /// A label map as JSON, e.g. '{"app": "web"}'.
    #[arg(long, value_name = "JSON")]
    pub labels: Option<String>,
    /// Output: a table, JSON, or one `kind/namespace/name` per line.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Name,
}

pub fn run(args: SelectArgs) -> anyhow::Result<ExitCode> {
    let selector = Selector::parse(&args.selector)
        .map_err(|e| anyhow!("--selector `{}`: {e}", args.selector))?;
    match (&args.path, &args.labels) {
        (Some(_), Some(_)) => bail!("give PATH or --labels, not both"),
        (None, None) => bail!("give PATH (manifests to select from) or --labels JSON"),
        (None, Some(json)) => {
            let labels: Labels = serde_json::from_str(json)
                .with_context(|| format!("--labels `{json}`: expected a JSON map of strings"))?;
            let matched = selector.matches(&labels);
            match args.output {
                Output::Json => println!("{}", serde_json::json!({ "matches": matched })),
                _ => println!("{}", if matched { "match" } else { "no match" }),
            }
            Ok(if matched { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        (Some(path), None) => {
            let loaded = manifests::load(path, Default::default(), Default::default())?;
            let picked = loaded.resolver.calico_select(&selector);
            match args.output {
                Output::Json => {
                    let items: Vec<serde_json::Value> = picked
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "kind": s.kind,
                                "namespace": s.namespace,
                                "name": s.name,
                                "addresses": s.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&items)?);
                }
                Output::Name => {
                    for s in &picked {
                        match s.namespace.as_str() {
                            "" => println!("{}/{}", s.kind, s.name),
                            ns => println!("{}/{ns}/{}", s.kind, s.name),
                        }
                    }
                }
                Output::Table => {
                    println!("{:<17} {:<20} {:<28} ADDRESSES", "KIND", "NAMESPACE", "NAME");
                    for s in &picked {
                        let addrs: Vec<String> =
                            s.addresses.iter().map(ToString::to_string).collect();
                        let ns = if s.namespace.is_empty() { "-" } else { &s.namespace };
                        println!("{:<17} {:<20} {:<28} {}", s.kind, ns, s.name, addrs.join(","));
                    }
                    eprintln!("{} selected", picked.len());
                }
            }
            Ok(loaded.exit_code())
        }
    }
}
