//! The conformance runner: scenario files (`FORMAT.md` v1) run step by step
//! through the store, the dialect compilers and the resolver into a
//! [`Backend`], whose answers are compared with the expected verdicts.
//!
//! ```no_run
//! use palisade_conformance::{backend_by_name, load, report, run, RunSettings};
//!
//! let scenarios = load(std::path::Path::new("tests/scenarios")).map_err(|e| e.to_string())?;
//! let mut backend = backend_by_name("reference").ok_or("unknown backend")?;
//! let result = run(&scenarios, backend.as_mut(), &RunSettings::default());
//! print!("{}", report::text(&result));
//! # Ok::<(), String>(())
//! ```

pub mod agreement;
mod backend;
pub mod report;
mod runner;
mod scenario;

pub use backend::{
    backend_by_name, Backend, BackendError, Observation, Probe, ProbeEnd, ReferenceBackend,
    StepState, BACKENDS,
};
pub use runner::{resolve_end, run, ExpectationResult, Problem, RunReport, RunSettings};
pub use scenario::{load, parse, Expectation, Scenario, ScenarioError, Step};
