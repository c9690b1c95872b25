//! Finding plugin files by name, so that users never copy `.wasm` files by
//! hand.
//!
//! `--plugin nftables` is looked up as `palisade_nftables.wasm` (the name the
//! project's build gives it) or `nftables.wasm`, in this order of folders:
//! the explicit plugin directories, `$PALISADE_PLUGIN_PATH` (colon-separated),
//! `plugins/` beside the executable, the workspace build output
//! (`target/wasm32-wasip2/release/`, found from the executable's location),
//! and `/usr/lib/palisade/plugins`. A value containing `/` or ending in
//! `.wasm` is taken as a path.

use std::path::PathBuf;

/// Plugins shipped with Palisade.
pub const BUILTIN: &[&str] = &["nftables", "ebpf", "calico-compat"];

/// Folders searched for plugins, in order.
pub fn search_path(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(p) = std::env::var_os("PALISADE_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin_dir) = exe.parent() {
            dirs.push(bin_dir.join("plugins"));
            // target/{debug,release}[/deps]/palisade → target/wasm32-wasip2/release
            for up in bin_dir.ancestors().take(3) {
                let candidate = up.join("wasm32-wasip2").join("release");
                if candidate.is_dir() {
                    dirs.push(candidate);
                    break;
                }
            }
        }
    }
    dirs.push(PathBuf::from("/usr/lib/palisade/plugins"));
    dirs
}

fn file_names(name: &str) -> [String; 2] {
    [format!("palisade_{}.wasm", name.replace('-', "_")), format!("{name}.wasm")]
}

/// Resolves a plugin name or path to a file.
pub fn find(name_or_path: &str, extra: &[PathBuf]) -> Result<PathBuf, String> {
    if name_or_path.contains('/') || name_or_path.ends_with(".wasm") {
        let p = PathBuf::from(name_or_path);
        return if p.is_file() { Ok(p) } else { Err(format!("no plugin file at {}", p.display())) };
    }
    let dirs = search_path(extra);
    for dir in &dirs {
        for file in file_names(name_or_path) {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "plugin `{name_or_path}` not found (looked for {} in: {}); build the plugins with \
         scripts/build-plugins, or pass a path to a .wasm file",
        file_names(name_or_path).join(" or "),
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Every `.wasm` file in the search path whose name is a known plugin.
pub fn builtin_plugins(extra: &[PathBuf]) -> Vec<(String, Result<PathBuf, String>)> {
    BUILTIN.iter().map(|n| (n.to_string(), find(n, extra))).collect()
}
