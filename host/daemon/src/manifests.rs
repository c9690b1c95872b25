//! A manifest directory as a source: which file holds which objects, so that
//! a changed file is re-read alone and objects removed from it are deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use palisade_pipeline::{Pipeline, Rejected};
use palisade_store::source::{self, is_manifest_file};
use palisade_store::ObjectKey;

/// What one (re)load did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Objects created or replaced.
    pub applied: usize,
    /// Objects deleted (their file no longer holds them).
    pub deleted: usize,
    /// Objects not applied, with the file they came from.
    pub rejected: Vec<(PathBuf, Rejected)>,
    /// Files that could not be read or parsed (their objects stay as they
    /// were: a half-written file never deletes anything).
    pub unreadable: Vec<String>,
}

pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, Vec<ObjectKey>>,
}

impl ManifestDir {
    pub fn new(root: &Path) -> ManifestDir {
        ManifestDir { root: root.to_path_buf(), files: BTreeMap::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every manifest under the root, as one batch.
    pub fn load_all(&mut self, pipeline: &mut Pipeline) -> Result<LoadReport, source::SourceError> {
        let documents = source::load_path(&self.root)?;
        let mut by_file: BTreeMap<PathBuf, Vec<serde_json::Value>> = BTreeMap::new();
        for d in documents {
            by_file.entry(d.origin.path).or_default().push(d.object);
        }
        Ok(self.apply_files(pipeline, by_file, Vec::new()))
    }

    /// Re-reads the given files (changed, created or deleted), as one batch.
    pub fn reload(&mut self, pipeline: &mut Pipeline, paths: &[PathBuf]) -> LoadReport {
        let mut by_file = BTreeMap::new();
        let mut unreadable = Vec::new();
        for path in paths.iter().filter(|p| is_manifest_file(p)) {
            if !path.exists() {
                by_file.insert(path.clone(), Vec::new());
                continue;
            }
            match source::load_file(path) {
                Ok(docs) => {
                    by_file.insert(path.clone(), docs.into_iter().map(|d| d.object).collect());
                }
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        self.apply_files(pipeline, by_file, unreadable)
    }

    fn apply_files(
        &mut self,
        pipeline: &mut Pipeline,
        by_file: BTreeMap<PathBuf, Vec<serde_json::Value>>,
        unreadable: Vec<String>,
    ) -> LoadReport {
        let mut report = LoadReport { unreadable, ..LoadReport::default() };
        let mut objects = Vec::new();
        let mut gone = Vec::new();
        let mut origin_of = Vec::new();
        for (path, values) in by_file {
            let keys: Vec<ObjectKey> =
                values.iter().filter_map(|v| ObjectKey::of_object(v).ok()).collect();
            let before = self.files.insert(path.clone(), keys.clone()).unwrap_or_default();
            gone.extend(before.into_iter().filter(|k| !keys.contains(k)));
            origin_of.extend(std::iter::repeat_n(path, values.len()));
            objects.extend(values);
        }
        self.files.retain(|_, keys| !keys.is_empty());
        // An object that moved to another file is not gone.
        gone.retain(|k| !self.files.values().any(|keys| keys.contains(k)));
        report.applied = objects.len();
        let outcome = pipeline.apply(objects);
        report.applied -= outcome.rejected.len();
        for r in outcome.rejected {
            let file = origin_of.get(r.index).cloned().unwrap_or_else(|| self.root.clone());
            report.rejected.push((file, r));
        }
        for w in outcome.warnings {
            tracing::warn!("{w}");
        }
        report.deleted = gone.len();
        for r in pipeline.delete(&gone).refused {
            tracing::error!(object = %r.object, field = ?r.field, "{}", r.message);
        }
        report
    }
}
