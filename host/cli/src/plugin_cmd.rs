//! `palisade plugin ...`: inspect and list backend plugins.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use palisade_plugin_host::{
    discovery, Capabilities, Described, EngineOptions, Grants, Limits, PluginEngine, PluginError,
    PluginInfo,
};

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Print a plugin's name, version, WIT package version and the
    /// capabilities its component imports.
    ///
    /// The plugin's own `info` runs inside the sandbox; the imports are read
    /// from the component itself, so they are what the plugin can really
    /// call, whatever it claims. A plugin this host cannot run (built for
    /// another version of palisade:backend, importing what no host grants)
    /// is described from the component alone, with the reason it cannot
    /// run; exit status 0 either way (2: not a component at all).
    ///
    /// Examples:
    ///   palisade plugin inspect target/wasm32-wasip2/release/palisade_nftables.wasm
    ///   palisade plugin inspect nftables --output json
    #[command(verbatim_doc_comment)]
    Inspect {
        /// A .wasm component, or the name of a plugin on the search path
        /// (nftables, ebpf, calico-compat).
        plugin: String,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
        /// Extra folders to search for plugins by name.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Find every plugin shipped with Palisade and print its info.
    ///
    /// Plugins are looked up in the --plugin-dir folders, $PALISADE_PLUGIN_PATH,
    /// plugins/ beside the executable, the workspace build output
    /// (target/wasm32-wasip2/release) and /usr/lib/palisade/plugins.
    #[command(verbatim_doc_comment)]
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Format,
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let engine =
        PluginEngine::new(EngineOptions::default()).context("starting the plugin engine")?;
    match cmd {
        PluginCommand::Inspect { plugin, output, plugin_dirs } => {
            let path = discovery::find(&plugin, &plugin_dirs).map_err(anyhow::Error::msg)?;
            let described = engine
                .describe_file(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if let Err(why) = &described.loadable {
                match output {
                    Format::Text => print!("{}", render_unloadable(&path, &described, why)),
                    Format::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&unloadable_json(&path, &described, why))?
                    ),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let info = inspect(&engine, &path)?;
            match output {
                Format::Text => print!("{}", render(&path, &info)),
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&to_json(&path, &info))?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::List { output, plugin_dirs } => {
            let mut failed = false;
            let mut json = Vec::new();
            for (name, found) in discovery::builtin_plugins(&plugin_dirs) {
                let result = found.map_err(anyhow::Error::msg).and_then(|path| {
                    let info = inspect(&engine, &path)?;
                    Ok((path, info))
                });
                match (result, output) {
                    (Ok((path, info)), Format::Text) => println!("{}", render(&path, &info)),
                    (Ok((path, info)), Format::Json) => json.push(to_json(&path, &info)),
                    (Err(e), _) => {
                        failed = true;
                        eprintln!("{name}: {e:#}");
                    }
                }
            }
            if let Format::Json = output {
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}

/// Loads a plugin for inspection only: every capability is granted so that
/// the load never fails on grants (nothing stands behind them here), and the
/// plugin's `info` runs in the sandbox with the default limits.
fn inspect(engine: &PluginEngine, path: &std::path::Path) -> anyhow::Result<PluginInfo> {
    let plugin = engine
        .load_file(path, &Grants::all(), Limits::default(), Capabilities::default())
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(plugin.info()?)
}

fn render(path: &std::path::Path, info: &PluginInfo) -> String {
    let list = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
    let imported: Vec<String> = info.imported_capabilities.iter().map(|c| c.to_string()).collect();
    format!(
        "{name} {version}\n  file:          {file}\n  sha256:        {hash}\n  wit package:   palisade:backend@{wit}\n  imports:       {imports}\n  declares:      {declared}\n  features:      {features}\n",
        name = info.name,
        version = info.version,
        file = path.display(),
        hash = info.hash,
        wit = info.wit_version,
        imports = list(&imported),
        declared = list(&info.declared_capabilities),
        features = list(&info.features),
    )
}

fn to_json(path: &std::path::Path, info: &PluginInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "version": info.version,
        "file": path.display().to_string(),
        "sha256": info.hash,
        "witPackage": format!("palisade:backend@{}", info.wit_version),
        "imports": info.imported_capabilities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "declaredCapabilities": info.declared_capabilities,
        "features": info.features,
    })
}

/// The imports of a component as its full names: capabilities, WASI, other.
fn import_names(d: &Described) -> Vec<String> {
    let mut out: Vec<String> = d.imports.capabilities.iter().map(|(_, n)| n.clone()).collect();
    out.extend(d.imports.wasi.iter().cloned());
    out.extend(d.imports.other.iter().cloned());
    out
}

fn render_unloadable(path: &std::path::Path, d: &Described, why: &PluginError) -> String {
    let wit = match &d.imports.wit_version {
        Some(v) => format!("palisade:backend@{v}"),
        None => "(no palisade:backend interface exported)".to_string(),
    };
    let imports = import_names(d);
    format!(
        "{name} (not runnable by this host)\n  file:          {file}\n  sha256:        {hash}\n  wit package:   {wit}\n  imports:       {imports}\n  runnable:      no: {why}\n  this host:     palisade:backend@{supported}\n",
        name = d.name,
        file = path.display(),
        hash = d.hash,
        imports = if imports.is_empty() { "(none)".to_string() } else { imports.join(", ") },
        supported = palisade_plugin_host::SUPPORTED_WIT_VERSIONS.join(", "),
    )
}

fn unloadable_json(path: &std::path::Path, d: &Described, why: &PluginError) -> serde_json::Value {
    serde_json::json!({
        "name": d.name,
        "file": path.display().to_string(),
        "sha256": d.hash,
        "witPackage": d.imports.wit_version.as_ref().map(|v| format!("palisade:backend@{v}")),
        "imports": import_names(d),
        "runnable": false,
        "reason": why.to_string(),
        "hostSupports": palisade_plugin_host::SUPPORTED_WIT_VERSIONS,
    })
}
