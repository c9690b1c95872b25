//! `palisade`: the command-line front end.
//!
//! One module per command family; `main` only parses arguments, sets up
//! logging and dispatches.

mod conformance_cmd;
mod explain_cmd;
mod lab_cmd;
mod manifests;
mod matrix_cmd;
mod plugin_cmd;
mod reset_cmd;
mod resolve_cmd;
mod run_cmd;
mod run_kube;
mod select_cmd;
mod status_cmd;

use clap::{Parser, Subcommand};

/// Palisade enforces Kubernetes network policy on a node through sandboxed
/// backend plugins (WebAssembly components).
///
/// Policy objects of several dialects (NetworkPolicy v1, extensions/v1beta1
/// with the DefaultDeny annotation, the 2016 experimental proposal, Calico
/// v3 with its tiers and network sets) are
/// compiled into one rule set, which a backend plugin (nftables, eBPF,
/// userspace) enforces.
#[derive(Parser, Debug)]
#[command(name = "palisade", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `palisade=debug` (also from RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// Emit logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect, list and exercise backend plugins (.wasm components).
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
    Resolve(resolve_cmd::ResolveArgs),
    Explain(explain_cmd::ExplainArgs),
    Matrix(matrix_cmd::MatrixArgs),
    Conformance(conformance_cmd::ConformanceArgs),
    #[command(subcommand)]
    Lab(lab_cmd::LabCommand),
    Run(run_cmd::RunArgs),
    Reset(reset_cmd::ResetArgs),
    Status(status_cmd::StatusArgs),
    Select(select_cmd::SelectArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    let result = match cli.command {
        Command::Plugin(cmd) => plugin_cmd::run(cmd),
        Command::Resolve(args) => resolve_cmd::run(args),
        Command::Explain(args) => explain_cmd::run(args),
        Command::Matrix(args) => matrix_cmd::run(args),
        Command::Conformance(args) => conformance_cmd::run_cmd(args),
        Command::Lab(cmd) => lab_cmd::run(cmd),
        Command::Run(args) => run_cmd::run(args),
        Command::Reset(args) => reset_cmd::run(args),
        Command::Status(args) => status_cmd::run(args),
        Command::Select(args) => select_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_logging(filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    // kube-client logs every failed request at ERROR; `run --source kube`
    // reports the API server's reachability itself, once per change.
    if !filter.to_string().contains("kube_client") {
        if let Ok(quiet) = "kube_client::client::builder=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
