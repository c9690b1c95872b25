//! `palisade matrix`: the verdict of every pod pair as a table.

use std::fmt::Write;
use std::path::PathBuf;

use palisade_evaluator::{Evaluator, Flow};
use palisade_model::Protocol;

use crate::manifests::{self, BetaRuleArg};

/// Print the truth table of every pod pair.
///
/// Resolves PATH (a manifest file or directory) and judges a new connection
/// from every pod (rows) to every other pod (columns) on one port. Pods are
/// shown by short labels (p1, p2, ...) explained in a legend.
///
/// Cells: `+` allowed, `-` denied, `.` the pod itself (not judged).
///
/// Examples:
///   palisade matrix manifests/
///   palisade matrix cluster.yaml --port 53/UDP
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct MatrixArgs {
    /// Manifest file or directory.
    pub path: PathBuf,
    /// Destination port with optional protocol (default 80/TCP).
    #[arg(long, value_name = "N[/PROTO]", value_parser = manifests::parse_port,
          default_value = "80/TCP")]
    pub port: (u16, Protocol),
    /// When extensions/v1beta1 policies are in force.
    #[arg(long = "v1beta1-rule", value_enum, default_value_t = BetaRuleArg::Beta)]
    pub beta_rule: BetaRuleArg,
}

pub fn run(args: MatrixArgs) -> anyhow::Result<std::process::ExitCode> {
    let loaded =
        manifests::load(&args.path, args.beta_rule.dialect_settings(), Default::default())?;
    let rules = loaded.resolver.rule_set();
    let mut pods: Vec<(&str, std::net::IpAddr)> = rules
        .endpoints
        .iter()
        .filter_map(|e| e.addresses.first().map(|a| (e.name.as_str(), *a)))
        .collect();
    pods.sort();
    print!("{}", render(&Evaluator::new(rules), &pods, args.port));
    Ok(loaded.exit_code())
}

fn render(ev: &Evaluator<'_>, pods: &[(&str, std::net::IpAddr)], port: (u16, Protocol)) -> String {
    let mut s = String::new();
    if pods.is_empty() {
        s.push_str("no pods with an address\n");
        return s;
    }
    let labels: Vec<String> = (1..=pods.len()).map(|i| format!("p{i}")).collect();
    let width = labels.iter().map(String::len).max().unwrap_or(2).max(4);
    let _ = writeln!(s, "{}/{} (rows: from, columns: to)", port.0, port.1);
    let _ = write!(s, "{:>width$} ", "");
    for l in &labels {
        let _ = write!(s, " {l:>width$}");
    }
    s.push('\n');
    let (mut allowed, mut denied) = (0, 0);
    for (i, (_, from)) in pods.iter().enumerate() {
        let _ = write!(s, "{:>width$} ", labels[i]);
        for (j, (_, to)) in pods.iter().enumerate() {
            let cell = if i == j {
                "."
            } else {
                let flow = Flow { source: *from, destination: *to, protocol: port.1, port: port.0 };
                if ev.evaluate(flow).allowed {
                    allowed += 1;
                    "+"
                } else {
                    denied += 1;
                    "-"
                }
            };
            let _ = write!(s, " {cell:>width$}");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n{allowed} allowed, {denied} denied   (+ allowed, - denied, . self)");
    s.push_str("legend:\n");
    for (l, (name, ip)) in labels.iter().zip(pods) {
        let _ = writeln!(s, "  {l:>width$}  {name} ({ip})");
    }
    s
}
