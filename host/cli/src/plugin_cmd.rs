//! `palisade plugin ...`
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum PluginCommand {}

pub fn run(cmd: PluginCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
