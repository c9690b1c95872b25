//! The precompile cache: compiled components keyed by the SHA-256 of the
//! component bytes and the engine's compatibility hash, in memory and
//! optionally on disk.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

pub(crate) struct Cache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Component>>,
    engine_tag: String,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Memory,
    Disk,
    Compiled,
}

pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Cache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Cache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Cache {
            dir,
            memory: Mutex::new(HashMap::new()),
            engine_tag: format!("{:016x}", h.finish()),
        }
    }

    fn disk_path(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{hash}-{}.cwasm", self.engine_tag)))
    }

    /// The compiled component for `bytes`, from memory, disk or a fresh
    /// compilation (which is then stored in both).
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, String, CacheOutcome)> {
        let hash = content_hash(bytes);
        if let Some(c) = self.memory.lock().map_err(poisoned)?.get(&hash) {
            return Ok((c.clone(), hash, CacheOutcome::Memory));
        }
        let (component, outcome) = match self.disk_path(&hash) {
            Some(path) if path.is_file() => match load_own_artifact(engine, &path) {
                Ok(c) => (c, CacheOutcome::Disk),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unreadable cache entry: {e:#}");
                    (self.compile_and_store(engine, bytes, Some(&path))?, CacheOutcome::Compiled)
                }
            },
            path => {
                (self.compile_and_store(engine, bytes, path.as_deref())?, CacheOutcome::Compiled)
            }
        };
        self.memory.lock().map_err(poisoned)?.insert(hash.clone(), component.clone());
        Ok((component, hash, outcome))
    }

    fn compile_and_store(
        &self,
        engine: &Engine,
        bytes: &[u8],
        path: Option<&Path>,
    ) -> wasmtime::Result<Component> {
        let component = Component::new(engine, bytes)?;
        if let Some(path) = path {
            if let Err(e) = store_artifact(&component, path) {
                tracing::warn!(path = %path.display(), "cannot write the precompile cache: {e:#}");
            }
        }
        Ok(component)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> wasmtime::Error {
    wasmtime::Error::msg("precompile cache lock poisoned")
}

fn store_artifact(component: &Component, path: &Path) -> std::io::Result<()> {
    let data = component.serialize().map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Loads an artifact this cache wrote itself.
#[allow(unsafe_code)]
fn load_own_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts its input to be a wasmtime artifact.
    // Only files this cache wrote are read: they live in the host's private
    // cache directory (mode 0700), are named by the SHA-256 of the component
    // they were compiled from and by the engine's compatibility hash, and are
    // written through a temporary file and an atomic rename. Artifacts
    // supplied by anyone else are never loaded (see `PluginEngine::load`).
    unsafe { Component::deserialize_file(engine, path) }
}
