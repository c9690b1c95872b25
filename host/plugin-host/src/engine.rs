//! One wasmtime engine for every plugin, its epoch ticker, its linker and its
//! precompile cache.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::cache::{Cache, CacheOutcome};
use crate::capability::{self, Capabilities};
use crate::error::PluginError;
use crate::grants::{Grants, ImportSummary};
use crate::limits::Limits;
use crate::plugin::LoadedPlugin;
use crate::state::StoreState;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Directory of the on-disk precompile cache; `None` keeps it in memory.
    pub cache_dir: Option<PathBuf>,
    /// Epoch tick: the resolution of CPU deadlines.
    pub tick: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { cache_dir: default_cache_dir(), tick: Duration::from_millis(5) }
    }
}

/// `$PALISADE_CACHE_DIR`, else `$XDG_CACHE_HOME/palisade`, else
/// `~/.cache/palisade`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PALISADE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("palisade"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("palisade"))
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct EngineInner {
    pub engine: Engine,
    pub linker: Linker<StoreState>,
    cache: Cache,
    pub tick: Duration,
    _ticker: Ticker,
}

/// The shared engine. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) inner: Arc<EngineInner>,
}

impl PluginEngine {
    pub fn new(options: EngineOptions) -> Result<PluginEngine, PluginError> {
        let host_err = |e: wasmtime::Error| PluginError::Host {
            plugin: String::new(),
            message: format!("{e:#}"),
        };
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(host_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(host_err)?;
        capability::add_to_linker(&mut linker).map_err(host_err)?;

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let tick = options.tick.max(Duration::from_millis(1));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("palisade-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Host { plugin: String::new(), message: e.to_string() })?;

        let cache = Cache::new(&engine, options.cache_dir);
        Ok(PluginEngine {
            inner: Arc::new(EngineInner { engine, linker, cache, tick, _ticker: Ticker { stop } }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Reads, compiles (or fetches from the cache) and checks a plugin file.
    pub fn load_file(
        &self,
        path: &Path,
        grants: &Grants,
        limits: Limits,
        caps: Capabilities,
    ) -> Result<LoadedPlugin, PluginError> {
        let (name, bytes) = read_plugin_file(path)?;
        self.load(&name, &bytes, grants, limits, caps)
    }

    /// Compiles (or fetches from the cache) a component and reads its
    /// imports and exports; precompiled artifacts are refused.
    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Component, String, ImportSummary), PluginError> {
        if Engine::detect_precompiled(bytes).is_some() {
            return Err(PluginError::Precompiled { plugin: name.to_string() });
        }
        let (component, hash, outcome) =
            self.inner.cache.get_or_compile(&self.inner.engine, bytes).map_err(|e| {
                PluginError::Compile { plugin: name.to_string(), message: format!("{e:#}") }
            })?;
        tracing::debug!(plugin = name, %hash, cache = ?outcome, "plugin compiled");
        let imports = ImportSummary::of(&self.inner.engine, &component);
        Ok((component, hash, imports))
    }

    /// Compiles (or fetches from the cache) and checks a plugin component.
    /// A plugin importing a capability outside `grants` is refused here.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &Grants,
        limits: Limits,
        caps: Capabilities,
    ) -> Result<LoadedPlugin, PluginError> {
        let (component, hash, imports) = self.compile(name, bytes)?;
        imports.check(name, grants)?;
        LoadedPlugin::new(self.clone(), name, component, hash, imports, limits, caps)
    }

    /// What a component is, without running it: its hash, the
    /// `palisade:backend` version it exports, what it imports, and whether
    /// this host could load it with every capability granted (and if not,
    /// why). Only a file that is no WebAssembly component is an error.
    pub fn describe_file(&self, path: &Path) -> Result<Described, PluginError> {
        let (name, bytes) = read_plugin_file(path)?;
        let (_, hash, imports) = self.compile(&name, &bytes)?;
        let loadable = imports.check(&name, &crate::Grants::all());
        Ok(Described { name, hash, imports, loadable })
    }

    /// Whether a component is already compiled in memory (for tests and
    /// benchmarks).
    pub fn precompiled_outcome(&self, bytes: &[u8]) -> Option<&'static str> {
        self.inner.cache.get_or_compile(&self.inner.engine, bytes).ok().map(|(_, _, o)| match o {
            CacheOutcome::Memory => "memory",
            CacheOutcome::Disk => "disk",
            CacheOutcome::Compiled => "compiled",
        })
    }
}

/// A plugin file's bytes, and its name (the file's stem).
fn read_plugin_file(path: &Path) -> Result<(String, Vec<u8>), PluginError> {
    let bytes = std::fs::read(path)
        .map_err(|e| PluginError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok((name, bytes))
}

/// A component as [`PluginEngine::describe_file`] read it.
#[derive(Debug)]
pub struct Described {
    /// The file's stem.
    pub name: String,
    /// SHA-256 of the component's bytes.
    pub hash: String,
    pub imports: ImportSummary,
    /// Whether this host loads it (every capability granted), or why not.
    pub loadable: Result<(), PluginError>,
}
