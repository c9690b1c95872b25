//! Runs scenarios step by step: store → dialects → resolver → backend.

use std::net::IpAddr;

use palisade_evaluator::{explain_with, Evaluator, Flow};
use palisade_model::Direction;
use palisade_pipeline::Pipeline;
use palisade_store::{describe, ObjectKey, Store};
use serde::Serialize;
use serde_json::Value;

use crate::backend::{Backend, BackendError, Observation, Probe, ProbeEnd, StepState};
use crate::scenario::{Expectation, Scenario};

/// How scenarios are compiled and resolved.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub dialects: palisade_dialects::Settings,
    pub resolver: palisade_resolver::Settings,
}

/// The outcome of one expectation.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectationResult {
    pub scenario: String,
    pub file: String,
    /// 1-based.
    pub step: usize,
    pub description: Option<String>,
    pub expectation: Expectation,
    /// What the backend answered; `None` when it could not be asked.
    pub observed: Option<bool>,
    pub passed: bool,
    /// Why the probe could not be made (unknown pod, backend error).
    pub error: Option<String>,
    /// The reference evaluator's explanation, for mismatches.
    pub trace: Option<String>,
}

/// An object the runner could not apply or delete; the run went on.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub scenario: String,
    pub file: String,
    /// 0 for the scenario's initial objects.
    pub step: usize,
    pub object: String,
    pub field: Option<String>,
    pub message: String,
    /// True for an unsupported kind (ignored), false for a rejected object.
    pub ignored_kind: bool,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub backend: String,
    pub scenarios: usize,
    pub passed: usize,
    pub failed: usize,
    pub results: Vec<ExpectationResult>,
    pub problems: Vec<Problem>,
    /// Warnings of the dialect compilers (`object: field: message`).
    pub warnings: Vec<String>,
}

impl RunReport {
    /// True if every expectation passed.
    pub fn success(&self) -> bool {
        self.failed == 0
    }
}

/// Runs every scenario against `backend`.
pub fn run(scenarios: &[Scenario], backend: &mut dyn Backend, settings: &RunSettings) -> RunReport {
    let mut report = RunReport { backend: backend.name().to_string(), ..RunReport::default() };
    for scenario in scenarios {
        ScenarioRun::new(scenario, settings, &mut report).run(backend);
        report.scenarios += 1;
    }
    report.passed = report.results.iter().filter(|r| r.passed).count();
    report.failed = report.results.len() - report.passed;
    report
}

struct ScenarioRun<'a> {
    scenario: &'a Scenario,
    report: &'a mut RunReport,
    pipeline: Pipeline,
}

impl<'a> ScenarioRun<'a> {
    fn new(scenario: &'a Scenario, settings: &RunSettings, report: &'a mut RunReport) -> Self {
        ScenarioRun {
            scenario,
            report,
            pipeline: Pipeline::new(settings.dialects, settings.resolver.clone()),
        }
    }

    fn file(&self) -> String {
        self.scenario.path.display().to_string()
    }

    fn problem(
        &mut self,
        step: usize,
        object: String,
        field: Option<String>,
        message: String,
        ignored_kind: bool,
    ) {
        tracing::debug!(scenario = %self.scenario.name, step, %object, "{message}");
        self.report.problems.push(Problem {
            scenario: self.scenario.name.clone(),
            file: self.file(),
            step,
            object,
            field,
            message,
            ignored_kind,
        });
    }

    fn apply_objects(&mut self, step: usize, objects: &[Value]) {
        let outcome = self.pipeline.apply(objects.iter().cloned());
        self.report.warnings.extend(
            outcome.warnings.iter().map(|w| format!("{} (step {step}): {w}", self.scenario.name)),
        );
        for r in outcome.rejected {
            self.problem(step, r.object, r.field, r.message, r.unsupported_kind);
        }
    }

    fn delete_objects(&mut self, step: usize, refs: &[Value]) {
        let mut keys = Vec::new();
        for reference in refs {
            match ObjectKey::of_delete_ref(reference) {
                Ok(key) => keys.push(key),
                Err(e) => self.problem(step, describe(reference), None, e.to_string(), false),
            }
        }
        let deleted = self.pipeline.delete(&keys);
        for key in deleted.missing {
            let message = "delete of an object that does not exist".to_string();
            self.problem(step, key.to_string(), None, message, false);
        }
        for r in deleted.refused {
            self.problem(step, r.object, r.field, r.message, false);
        }
    }

    /// The `ip:` and `node:` ends the scenario's expectations name, as they
    /// resolve against the current objects.
    fn externals(&self) -> Vec<ProbeEnd> {
        let mut names: Vec<&str> = self
            .scenario
            .steps
            .iter()
            .flat_map(|s| &s.expect)
            .flat_map(|e| [e.from.as_str(), e.to.as_str()])
            .filter(|n| n.starts_with("ip:") || n.starts_with("node:"))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().filter_map(|n| self.end(n).ok()).collect()
    }

    fn program(&mut self, backend: &mut dyn Backend, step: usize) -> Result<(), String> {
        let delta = self.pipeline.take_delta();
        let externals = self.externals();
        let state = StepState {
            scenario: &self.scenario.name,
            step,
            store: self.pipeline.store(),
            rule_set: self.pipeline.rule_set(),
            delta: &delta,
            externals: &externals,
        };
        backend.program(&state).map_err(|e| e.to_string())
    }

    fn run(mut self, backend: &mut dyn Backend) {
        let mut backend_error = backend.reset().err().map(|e| e.to_string());
        self.apply_objects(0, &self.scenario.objects);
        for (i, step) in self.scenario.steps.iter().enumerate() {
            let index = i + 1;
            self.apply_objects(index, &step.apply);
            self.delete_objects(index, &step.delete);
            if backend_error.is_none() {
                backend_error = self.program(backend, index).err();
            }
            // Traffic from a pod to itself is never judged.
            let judged: Vec<&Expectation> = step.expect.iter().filter(|e| e.from != e.to).collect();
            let mut results = Vec::with_capacity(judged.len());
            let mut probes = Vec::new();
            let mut probe_of = Vec::with_capacity(judged.len());
            for expectation in &judged {
                let mut result = ExpectationResult {
                    scenario: self.scenario.name.clone(),
                    file: self.file(),
                    step: index,
                    description: step.description.clone(),
                    expectation: (*expectation).clone(),
                    observed: None,
                    passed: false,
                    error: backend_error.clone(),
                    trace: None,
                };
                match (self.end(&expectation.from), self.end(&expectation.to)) {
                    (Ok(from), Ok(to)) if backend_error.is_none() => {
                        probe_of.push(Some(probes.len()));
                        probes.push(Probe {
                            from,
                            to,
                            protocol: expectation.protocol,
                            port: expectation.port,
                        });
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        result.error = Some(e);
                        probe_of.push(None);
                    }
                    _ => probe_of.push(None),
                }
                results.push(result);
            }
            let mut answers = backend.probe_many(&probes).into_iter();
            for (result, slot) in results.iter_mut().zip(&probe_of) {
                if let Some(i) = slot {
                    let answer = answers.next().unwrap_or_else(|| {
                        Err(BackendError {
                            backend: backend.name().to_string(),
                            message: "no answer for this probe".into(),
                        })
                    });
                    self.judge(result, &probes[*i], answer);
                }
            }
            self.report.results.extend(results);
        }
    }

    fn judge(
        &self,
        result: &mut ExpectationResult,
        probe: &Probe,
        answer: Result<Observation, BackendError>,
    ) {
        let expectation = &result.expectation;
        match answer {
            Ok(observation) => {
                result.passed = observation.allowed == expectation.allowed;
                result.observed = Some(observation.allowed);
                if !result.passed {
                    let mut trace = self.reference_trace(probe);
                    if let Some(detail) = observation.detail {
                        trace.push_str(&format!("  backend: {detail}\n"));
                    }
                    result.trace = Some(trace);
                }
            }
            Err(e) => result.error = Some(e.to_string()),
        }
    }

    /// The reference evaluator's explanation of a probe.
    fn reference_trace(&self, probe: &Probe) -> String {
        let rules = self.pipeline.rule_set();
        let trace = Evaluator::new(rules).evaluate(Flow {
            source: probe.from.address,
            destination: probe.to.address,
            protocol: probe.protocol,
            port: probe.port,
        });
        let resolver = self.pipeline.resolver();
        explain_with(
            &trace,
            &|endpoint, direction: Direction| {
                resolver
                    .selecting(&endpoint.name, direction)
                    .into_iter()
                    .map(|(_, o)| format!("{} {}/{}", o.kind, o.namespace, o.name))
                    .collect()
            },
            &|endpoint, direction| resolver.tier_names(&endpoint.name, direction),
        )
    }

    /// Resolves `ns/pod`, `ip:ADDR` or `node:NAME` to an address.
    fn end(&self, name: &str) -> Result<ProbeEnd, String> {
        resolve_end(self.pipeline.store(), name)
    }
}

/// Resolves a scenario endpoint name against the objects of `store`:
/// `NS/POD` → the pod's `status.podIP` (or first `podIPs`), `ip:ADDR`,
/// `node:NAME` → the Node's InternalIP (or first address).
pub fn resolve_end(store: &Store, name: &str) -> Result<ProbeEnd, String> {
    if let Some(ip) = name.strip_prefix("ip:") {
        let address: IpAddr =
            ip.parse().map_err(|_| format!("`{name}`: `{ip}` is not an IP address"))?;
        return Ok(ProbeEnd { name: name.to_string(), address, pod: None });
    }
    if let Some(node) = name.strip_prefix("node:") {
        let key = ObjectKey::new("", "Node", None, node);
        let object = store.get(&key).ok_or_else(|| format!("`{name}`: no Node `{node}`"))?;
        let addresses = object.pointer("/status/addresses").and_then(Value::as_array);
        let pick = |internal: bool| {
            addresses.into_iter().flatten().find_map(|a| {
                let is_internal = a.get("type").and_then(Value::as_str) == Some("InternalIP");
                if internal && !is_internal {
                    return None;
                }
                a.get("address").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok())
            })
        };
        let address = pick(true)
            .or_else(|| pick(false))
            .ok_or_else(|| format!("`{name}`: Node `{node}` has no address"))?;
        return Ok(ProbeEnd { name: name.to_string(), address, pod: None });
    }
    let Some((ns, pod)) = name.split_once('/') else {
        return Err(format!("`{name}` is neither NAMESPACE/POD, ip:ADDRESS nor node:NAME"));
    };
    let key = ObjectKey::new("", "Pod", Some(ns), pod);
    let object =
        store.get(&key).ok_or_else(|| format!("`{name}`: no Pod `{pod}` in namespace `{ns}`"))?;
    let ip = object
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .or_else(|| object.pointer("/status/podIPs/0/ip").and_then(Value::as_str))
        .ok_or_else(|| format!("`{name}`: the pod has no status.podIP"))?;
    let address =
        ip.parse().map_err(|_| format!("`{name}`: status.podIP `{ip}` is not an IP address"))?;
    Ok(ProbeEnd { name: name.to_string(), address, pod: Some(format!("{ns}/{pod}")) })
}
