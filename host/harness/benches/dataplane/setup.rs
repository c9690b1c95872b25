//! The enforcer under test (the plugin with its provider, nft batches recorded), temporary directories.

use super::*;

// The nft provider, recorded: every batch's size and time.

#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) bytes: usize,
    pub(crate) commands: usize,
    pub(crate) elapsed: Duration,
    pub(crate) ok: bool,
}

pub(crate) struct Recorder {
    pub(crate) inner: NftDataplane,
    pub(crate) batches: Mutex<Vec<Batch>>,
}

impl Recorder {
    pub(crate) fn take(&self) -> Vec<Batch> {
        std::mem::take(&mut *self.batches.lock().unwrap())
    }
}

impl NftProvider for Recorder {
    fn apply_batch(&self, plugin: &str, batch_json: &str) -> Result<(), String> {
        let started = Instant::now();
        let result = self.inner.apply(plugin, batch_json);
        let elapsed = started.elapsed();
        if let Ok(dir) = std::env::var("PALISADE_BENCH_DUMP") {
            // For diagnosis: every batch, numbered.
            let n = self.batches.lock().map(|b| b.len()).unwrap_or(0);
            let _ = std::fs::write(
                Path::new(&dir).join(format!("batch-{}-{n}.json", batch_json.len())),
                batch_json,
            );
        }
        self.batches.lock().unwrap().push(Batch {
            bytes: batch_json.len(),
            commands: result.as_ref().map(|c| c.commands).unwrap_or(0),
            elapsed,
            ok: result.is_ok(),
        });
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    fn list_table(&self, plugin: &str, family: &str, name: &str) -> Result<String, String> {
        self.inner.list_table(plugin, family, name)
    }

    fn delete_table(&self, plugin: &str, family: &str, name: &str) -> Result<(), String> {
        self.inner.delete_table(plugin, family, name)
    }
}

/// The backends compared (`PALISADE_BENCH_BACKENDS`, default both).
pub(crate) fn backends() -> Vec<String> {
    std::env::var("PALISADE_BENCH_BACKENDS")
        .unwrap_or_else(|_| "nftables,ebpf".into())
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The plugin `backend` acting in `netns`; for nftables, its nft calls
/// recorded.
pub(crate) fn enforcer(
    engine: &PluginEngine,
    netns: PathBuf,
    backend: &str,
) -> Result<(Enforcer, Option<Arc<Recorder>>, String), Error> {
    let target =
        Target { netns: Some(netns.clone()), nft_table: Some(TABLE.into()), bpf_pins: None };
    let mut profile = profile(backend, &plugin_dirs(), &target)?;
    let name = plugin_name(&profile.path);
    let recorder = if backend == "nftables" {
        let table: TableRef = format!("inet {TABLE}").parse()?;
        let recorder = Arc::new(Recorder {
            inner: NftDataplane::new(Some(netns), TableGrants::new().grant(&name, table)),
            batches: Mutex::new(Vec::new()),
        });
        profile.caps.nft = recorder.clone();
        Some(recorder)
    } else {
        None
    };
    let mut limits = Limits::default();
    if let Some(mb) =
        std::env::var("PALISADE_BENCH_PLUGIN_MEMORY_MB").ok().and_then(|v| v.parse::<usize>().ok())
    {
        limits.memory_bytes = mb << 20;
    }
    println!("plugin memory limit: {} MiB", limits.memory_bytes >> 20);
    let plugin = profile.load(engine, limits)?;
    Ok((Enforcer::start(plugin, profile.settings)?, recorder, name))
}

pub(crate) fn plugin_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    vec![root.join("target/wasm32-wasip2/release")]
}

// A temporary directory, removed on every exit path.

pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("palisade-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_vec(value)?)
}
