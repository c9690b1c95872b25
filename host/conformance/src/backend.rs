//! Backends the runner judges: anything that, given the cluster state after
//! a step, answers whether a probe gets through.

use std::net::IpAddr;

use palisade_evaluator::{Evaluator, Flow};
use palisade_model::{Delta, Protocol, RuleSet};
use palisade_store::Store;

/// Why a backend could not program a step or answer a probe.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: String,
    pub message: String,
}

/// The state after one step, as every backend receives it.
#[derive(Debug, Clone, Copy)]
pub struct StepState<'a> {
    pub scenario: &'a str,
    /// 1-based step index (0: the scenario's initial objects).
    pub step: usize,
    /// Every object, defaulted as the API server would.
    pub store: &'a Store,
    /// The resolved rule set (model mode: every pod is a local endpoint).
    pub rule_set: &'a RuleSet,
    /// The change from the rule set the backend was last given.
    pub delta: &'a Delta,
    /// The scenario's endpoints outside the cluster (`ip:...`, `node:...`)
    /// that its expectations name and that resolve at this step: a
    /// dataplane backend gives each a host of its own.
    pub externals: &'a [ProbeEnd],
}

/// One end of a probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeEnd {
    /// As the scenario writes it (`ns/pod`, `ip:...`, `node:...`).
    pub name: String,
    pub address: IpAddr,
    /// `namespace/name` when the end is a pod of the scenario.
    pub pod: Option<String>,
}

/// A new connection the runner asks about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    pub from: ProbeEnd,
    pub to: ProbeEnd,
    pub protocol: Protocol,
    pub port: u16,
}

/// What a backend observed for a probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observation {
    pub allowed: bool,
    /// Backend-specific detail (a trace, the verdict's source), if any.
    pub detail: Option<String>,
}

/// A policy enforcement to hold to the scenarios.
///
/// The runner calls [`Backend::reset`] before each scenario, then after
/// every step [`Backend::program`] with the new state, then
/// [`Backend::probe`] for each expectation of the step. A dataplane backend
/// (nftables in network namespaces, eBPF) programs the rule set or delta
/// into its lab in `program` and sends real traffic in `probe`; the
/// reference backend evaluates the rule set.
pub trait Backend {
    /// Short name, e.g. `reference`.
    fn name(&self) -> &str;

    /// Forgets everything programmed (a new scenario starts).
    fn reset(&mut self) -> Result<(), BackendError>;

    /// Takes the state after a step.
    fn program(&mut self, state: &StepState<'_>) -> Result<(), BackendError>;

    /// Answers one probe against the last programmed state.
    fn probe(&mut self, probe: &Probe) -> Result<Observation, BackendError>;

    /// Answers every probe of a step. The default asks one at a time; a
    /// dataplane backend sends them all at once (a denied probe costs its
    /// whole timeout).
    fn probe_many(&mut self, probes: &[Probe]) -> Vec<Result<Observation, BackendError>> {
        probes.iter().map(|p| self.probe(p)).collect()
    }
}

/// The reference backend: the reference evaluator over a copy of the rule
/// set that it keeps current by applying the deltas, as a real backend
/// would (a delta that does not apply is an error).
#[derive(Debug, Default)]
pub struct ReferenceBackend {
    rules: RuleSet,
}

impl ReferenceBackend {
    pub fn new() -> ReferenceBackend {
        ReferenceBackend::default()
    }
}

impl Backend for ReferenceBackend {
    fn name(&self) -> &str {
        "reference"
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        self.rules = RuleSet::default();
        Ok(())
    }

    fn program(&mut self, state: &StepState<'_>) -> Result<(), BackendError> {
        self.rules.apply_delta(state.delta).map_err(|e| BackendError {
            backend: self.name().to_string(),
            message: format!("delta to generation {} does not apply: {e}", state.delta.generation),
        })?;
        if self.rules != *state.rule_set {
            return Err(BackendError {
                backend: self.name().to_string(),
                message: "the rule set rebuilt from deltas differs from the resolver's".into(),
            });
        }
        Ok(())
    }

    fn probe(&mut self, probe: &Probe) -> Result<Observation, BackendError> {
        let trace = Evaluator::new(&self.rules).evaluate(Flow {
            source: probe.from.address,
            destination: probe.to.address,
            protocol: probe.protocol,
            port: probe.port,
        });
        Ok(Observation { allowed: trace.allowed, detail: None })
    }
}

/// The names [`backend_by_name`] knows.
pub const BACKENDS: &[&str] = &["reference"];

/// A backend by its name.
pub fn backend_by_name(name: &str) -> Option<Box<dyn Backend>> {
    match name {
        "reference" => Some(Box::new(ReferenceBackend::new())),
        _ => None,
    }
}
