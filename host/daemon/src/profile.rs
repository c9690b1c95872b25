//! Backend profiles: for a backend name, the plugin file, the capabilities
//! to grant, the providers behind them, and the plugin's settings.
//!
//! The operator picks a backend by name; the grants are the least that
//! backend needs, and nothing more.

use std::path::PathBuf;
use std::sync::Arc;

use palisade_bpf::{BpfDataplane, BpfLimits, Pinning};
use palisade_nft::{NftDataplane, TableGrants, TableRef};
use palisade_plugin_host::{
    discovery, Capabilities, Capability, Grants, Limits, LoadedPlugin, PluginEngine, PluginError,
};

/// Where a backend programs.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The network namespace to act in (`None`: the process's own).
    pub netns: Option<PathBuf>,
    /// The nftables table of the nftables backend (family inet).
    pub nft_table: Option<String>,
    /// Where the eBPF backend pins its maps, programs and links
    /// (`palisade_bpf::pins`); `None`: nothing pinned, everything goes
    /// with the process (the lab backend).
    pub bpf_pins: Option<PathBuf>,
}

/// Everything needed to load one backend.
pub struct Profile {
    pub path: PathBuf,
    pub grants: Grants,
    pub caps: Capabilities,
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("backend `{backend}`: {message}")]
    Backend { backend: String, message: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The name the host gives a plugin loaded from `path` (its file stem).
pub fn plugin_name(path: &std::path::Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The profile of `backend` (`nftables`, `ebpf`, `calico-compat`, or a path
/// to a vendor's `.wasm`, which gets only `log`).
pub fn profile(
    backend: &str,
    plugin_dirs: &[PathBuf],
    target: &Target,
) -> Result<Profile, ProfileError> {
    let fail = |message: String| ProfileError::Backend { backend: backend.to_string(), message };
    let path = discovery::find(backend, plugin_dirs).map_err(fail)?;
    let name = plugin_name(&path);
    let profile = match backend {
        "nftables" => {
            let table = target.nft_table.clone().unwrap_or_else(|| "palisade".to_string());
            let table_ref: TableRef = format!("inet {table}").parse().map_err(fail)?;
            let nft =
                NftDataplane::new(target.netns.clone(), TableGrants::new().grant(&name, table_ref));
            Profile {
                path,
                grants: Grants::of(&[Capability::Log, Capability::Nft]),
                caps: Capabilities { nft: Arc::new(nft), ..Capabilities::default() },
                settings: vec![("table".to_string(), table)],
            }
        }
        "ebpf" => {
            let bpf = match &target.bpf_pins {
                None => BpfDataplane::new(target.netns.clone(), &[&name], BpfLimits::default()),
                Some(root) => BpfDataplane::pinned(
                    target.netns.clone(),
                    &[&name],
                    BpfLimits::default(),
                    Pinning::new(root, palisade_plugin_host::SUPPORTED_WIT_VERSIONS[0]),
                )
                .map_err(fail)?,
            };
            Profile {
                path,
                grants: Grants::of(&[Capability::Log, Capability::Bpf]),
                caps: Capabilities { bpf: Arc::new(bpf), ..Capabilities::default() },
                settings: Vec::new(),
            }
        }
        _ => Profile {
            path,
            grants: Grants::of(&[Capability::Log]),
            caps: Capabilities::default(),
            settings: Vec::new(),
        },
    };
    Ok(profile)
}

impl Profile {
    /// Loads the plugin: compiled (or from the cache) and checked against
    /// the grants.
    pub fn load(&self, engine: &PluginEngine, limits: Limits) -> Result<LoadedPlugin, PluginError> {
        engine.load_file(&self.path, &self.grants, limits, self.caps.clone())
    }
}
