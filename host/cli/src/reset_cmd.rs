//! `palisade reset`: removes what a backend programmed on this node, by
//! this process or an earlier one.

use std::path::PathBuf;

use palisade_daemon::Target;

/// Remove what a backend plugin programmed on this node.
///
/// Enforcement outlives `palisade run` on every backend (the nftables table
/// stays, the eBPF backend's maps, programs and links stay pinned): this is
/// the way to lift it on purpose. The plugin is loaded in its sandbox and
/// asked to reset; the host then removes whatever the plugin still holds
/// (for eBPF, its whole pin directory), and the endpoint guard's table goes
/// too. Removing nothing is not an error.
///
/// Examples:
///   palisade reset --plugin nftables
///   palisade reset --plugin ebpf --netns /run/netns/node1
///   palisade reset --plugin ebpf --bpf-pin-dir /sys/fs/bpf/palisade
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ResetArgs {
    /// Backend plugin: nftables, ebpf, calico-compat, or a path to a .wasm.
    #[arg(long)]
    pub plugin: String,
    /// Network namespace it programmed (default: this process's own).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// nftables table (family inet) of the nftables backend.
    #[arg(long, default_value = "palisade")]
    pub table: String,
    /// The eBPF backend's pin directory (as given to `palisade run`).
    #[arg(long, default_value = palisade_bpf::pins::DEFAULT_ROOT)]
    pub bpf_pin_dir: PathBuf,
    /// The endpoint guard's table (`run --endpoint-interfaces`), removed
    /// too.
    #[arg(long, default_value = palisade_nft::guard::DEFAULT_TABLE)]
    pub guard_table: String,
    /// Extra folders to search for plugins by name.
    #[arg(long = "plugin-dir")]
    pub plugin_dirs: Vec<PathBuf>,
}

pub fn run(args: ResetArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = Target {
        netns: args.netns.clone(),
        nft_table: Some(args.table.clone()),
        bpf_pins: Some(args.bpf_pin_dir.clone()),
    };
    let enforcer = crate::run_cmd::start_backend(
        &args.plugin,
        &args.plugin_dirs,
        &target,
        palisade_plugin_host::Limits::default(),
    )?;
    reset(enforcer, &args.plugin, args.netns.as_deref(), &args.guard_table)
}

/// Resets the plugin behind `enforcer` and removes the endpoint guard's
/// table (`palisade reset`, `palisade run --reset-only`).
pub fn reset(
    mut enforcer: palisade_daemon::Enforcer,
    plugin: &str,
    netns: Option<&std::path::Path>,
    guard_table: &str,
) -> anyhow::Result<std::process::ExitCode> {
    enforcer.reset()?;
    palisade_nft::EndpointGuard::remove_table(netns.map(Into::into), guard_table)?;
    eprintln!("palisade: removed what the {plugin} plugin programmed");
    Ok(std::process::ExitCode::SUCCESS)
}
