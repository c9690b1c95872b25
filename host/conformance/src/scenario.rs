//! The scenario format (`/shared/conformance/FORMAT.md`, v1): reading files
//! and folders of scenarios.

use std::path::{Path, PathBuf};

use palisade_model::Protocol;
use serde::Deserialize;
use serde_json::Value;

/// Why scenarios could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a scenario: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: expectation {index} of step {step}: `protocol` `{value}` is not TCP, UDP or SCTP", path.display())]
    Protocol { path: PathBuf, step: usize, index: usize, value: String },
}

/// One probe a step states the verdict of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Expectation {
    /// `NAMESPACE/POD`, `ip:A.B.C.D` or `node:NAME`.
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: bool,
}

/// One step: changes, then expectations.
#[derive(Debug, Clone)]
pub struct Step {
    pub description: Option<String>,
    pub apply: Vec<Value>,
    /// Delete references `{apiVersion, kind, namespace, name}`.
    pub delete: Vec<Value>,
    pub expect: Vec<Expectation>,
}

/// A scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub source: Option<String>,
    pub features: Vec<String>,
    pub objects: Vec<Value>,
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    notes: Vec<String>,
    #[serde(default)]
    objects: Vec<Value>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    apply: Vec<Value>,
    #[serde(default)]
    delete: Vec<Value>,
    #[serde(default)]
    expect: Vec<RawExpectation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectation {
    from: String,
    to: String,
    port: u16,
    #[serde(default)]
    protocol: Option<String>,
    allowed: bool,
}

/// Parses one scenario from text (YAML, which includes JSON).
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let syntax = |message: String| ScenarioError::Syntax { path: path.to_path_buf(), message };
    let value: Value = serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
    let raw: RawScenario = serde_json::from_value(value).map_err(|e| syntax(e.to_string()))?;
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (s, step) in raw.steps.into_iter().enumerate() {
        let mut expect = Vec::with_capacity(step.expect.len());
        for (i, e) in step.expect.into_iter().enumerate() {
            let protocol = match &e.protocol {
                None => Protocol::Tcp,
                Some(p) => Protocol::parse_any_case(p).ok_or_else(|| ScenarioError::Protocol {
                    path: path.to_path_buf(),
                    step: s + 1,
                    index: i + 1,
                    value: p.clone(),
                })?,
            };
            expect.push(Expectation {
                from: e.from,
                to: e.to,
                port: e.port,
                protocol,
                allowed: e.allowed,
            });
        }
        steps.push(Step {
            description: step.description,
            apply: step.apply,
            delete: step.delete,
            expect,
        });
    }
    Ok(Scenario {
        name: raw.name,
        path: path.to_path_buf(),
        source: raw.source,
        features: raw.features,
        objects: raw.objects,
        steps,
    })
}

/// Reads a scenario file, or every `*.yaml`/`*.yml`/`*.json` file under a
/// folder (recursively, in path order).
pub fn load(path: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let io = |p: &Path, source| ScenarioError::Io { path: p.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect(path, &mut files).map_err(|(p, e)| io(&p, e))?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        out.push(parse(&text, &file)?);
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), (PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["yaml", "yml", "json"].iter().any(|x| e.eq_ignore_ascii_case(x)))
        {
            out.push(path);
        }
    }
    Ok(())
}
