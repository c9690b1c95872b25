//! `palisade run`: the enforcer of one node.
//!
//! A manifest directory (watched with inotify) feeds the pipeline (store,
//! dialects, resolver); every settled change becomes a delta that the backend
//! plugin programs. If the plugin fails, what it programmed last stays in
//! force (fail static), the error is logged, and the full rule set is sent
//! again at the next change or after [`RETRY`], whichever comes first (the
//! plugin's supervisor adds its own backoff on repeated failures).

pub mod enforcer;
pub mod manifests;
pub mod profile;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use enforcer::{Enforcer, Programmed};
pub use manifests::{LoadReport, ManifestDir};
use palisade_pipeline::Pipeline;
pub use profile::{profile, Profile, ProfileError, Target};
pub use watch::{DirWatcher, WatchError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("manifest source {}: {message}", path.display())]
    Source { path: PathBuf, message: String },
}

/// How the daemon reads its source.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub source_dir: PathBuf,
    /// Quiet time after a change before it is read.
    pub settle: Duration,
    pub dialects: palisade_dialects::Settings,
    pub resolver: palisade_resolver::Settings,
}

/// One round of the daemon, for logs and benchmarks.
#[derive(Debug)]
pub struct Round {
    pub changed_files: Vec<PathBuf>,
    pub load: LoadReport,
    pub programmed: Result<Programmed, palisade_plugin_host::PluginError>,
}

pub struct Daemon {
    manifests: ManifestDir,
    pipeline: Pipeline,
    watcher: DirWatcher,
    enforcer: Enforcer,
    /// When to retry a failed programming without a change.
    retry_at: Option<Instant>,
}

/// Delay before a failed programming is retried without a change.
pub const RETRY: Duration = Duration::from_secs(1);

fn log_load(report: &LoadReport) {
    for (file, r) in &report.rejected {
        tracing::error!(file = %file.display(), object = %r.object, field = ?r.field, "{}", r.message);
    }
    for u in &report.unreadable {
        tracing::error!("{u}");
    }
}

fn log_programmed(result: &Result<Programmed, palisade_plugin_host::PluginError>) {
    match result {
        Ok(Programmed::Unchanged) => tracing::debug!("nothing to program"),
        Ok(Programmed::Full { generation, rules, elapsed }) => {
            tracing::info!(generation, rules, ?elapsed, "programmed the full rule set")
        }
        Ok(Programmed::Delta { generation, records, elapsed }) => {
            tracing::info!(generation, records, ?elapsed, "programmed a delta")
        }
        Err(e) => {
            tracing::error!("programming failed; the last programmed state stays in force: {e}")
        }
    }
}

impl Daemon {
    /// Reads the whole source and programs it.
    pub fn start(
        config: &DaemonConfig,
        enforcer: Enforcer,
    ) -> Result<(Daemon, Round), DaemonError> {
        let watcher = DirWatcher::new(&config.source_dir, config.settle)?;
        let mut pipeline = Pipeline::new(config.dialects, config.resolver.clone());
        let mut manifests = ManifestDir::new(&config.source_dir);
        let load = manifests.load_all(&mut pipeline).map_err(|e| DaemonError::Source {
            path: config.source_dir.clone(),
            message: e.to_string(),
        })?;
        log_load(&load);
        let mut daemon = Daemon { manifests, pipeline, watcher, enforcer, retry_at: None };
        let programmed = daemon.program();
        Ok((daemon, Round { changed_files: Vec::new(), load, programmed }))
    }

    fn program(&mut self) -> Result<Programmed, palisade_plugin_host::PluginError> {
        let delta = self.pipeline.take_delta();
        let result = self.enforcer.program(self.pipeline.rule_set(), &delta);
        log_programmed(&result);
        self.retry_at = result.is_err().then(|| Instant::now() + RETRY);
        result
    }

    pub fn source(&self) -> &Path {
        self.manifests.root()
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn enforcer_mut(&mut self) -> &mut Enforcer {
        &mut self.enforcer
    }

    /// Waits up to `timeout` for a settled change, then reads and programs
    /// it; or retries a failed programming when that is due. `None` if
    /// nothing changed and no retry was due.
    pub fn round(&mut self, timeout: Duration) -> Result<Option<Round>, DaemonError> {
        let changed_files = self.watcher.next_changes(timeout)?;
        if changed_files.is_empty() {
            if self.retry_at.is_none_or(|at| Instant::now() < at) {
                return Ok(None);
            }
            let programmed = self.program();
            return Ok(Some(Round { changed_files, load: LoadReport::default(), programmed }));
        }
        let load = self.manifests.reload(&mut self.pipeline, &changed_files);
        log_load(&load);
        let programmed = self.program();
        Ok(Some(Round { changed_files, load, programmed }))
    }

    /// Runs rounds until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DaemonError> {
        while !stop.load(Ordering::Relaxed) {
            self.round(Duration::from_millis(200))?;
        }
        Ok(())
    }
}
