//! Dataplane conformance: scenarios enforced for real.
//!
//! [`LabBackend`] is a conformance [`Backend`] that, for each scenario,
//! builds a network-namespace lab of the scenario's pods and external
//! endpoints, loads a backend plugin (nftables, ...) through the real plugin
//! host with the real capability providers acting in the lab's node
//! namespace, programs every step's rule set or delta through it, and
//! answers each expectation with a real TCP, UDP or SCTP probe.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use palisade_conformance::{Backend, BackendError, Observation, Probe, StepState};
use palisade_daemon::{profile, Enforcer, Target};
use palisade_lab::{Lab, LabExternal, LabPod, LabSpec, ProbeRequest};
use palisade_model::ModelEvent;
use palisade_plugin_host::{EngineOptions, Limits, PluginEngine};
use palisade_store::Store;

/// A backend plugin enforcing scenarios in the lab.
pub struct LabBackend {
    backend: String,
    plugin_dirs: Vec<PathBuf>,
    engine: PluginEngine,
    timeout: Duration,
    lab: Option<Lab>,
    enforcer: Option<Enforcer>,
    /// What the lab holds, by key.
    endpoints: BTreeMap<String, (std::net::IpAddr, Vec<(palisade_model::Protocol, u16)>)>,
}

impl LabBackend {
    /// A lab backend for the plugin `backend` (a name the plugin search path
    /// knows, e.g. `nftables`).
    pub fn new(
        backend: &str,
        plugin_dirs: Vec<PathBuf>,
        timeout: Duration,
    ) -> Result<LabBackend, BackendError> {
        let engine = PluginEngine::new(EngineOptions::default())
            .map_err(|e| error(backend, format!("plugin engine: {e}")))?;
        Ok(LabBackend {
            backend: backend.to_string(),
            plugin_dirs,
            engine,
            timeout,
            lab: None,
            enforcer: None,
            endpoints: BTreeMap::new(),
        })
    }

    fn err(&self, message: impl Into<String>) -> BackendError {
        error(&self.backend, message)
    }

    fn start(&mut self, spec: &LabSpec) -> Result<(), BackendError> {
        let lab = Lab::up(spec).map_err(|e| self.err(format!("lab: {e}")))?;
        let target = Target { netns: Some(lab.node_netns()), nft_table: None, bpf_pins: None };
        let profile = profile(&self.backend, &self.plugin_dirs, &target)
            .map_err(|e| self.err(e.to_string()))?;
        let plugin =
            profile.load(&self.engine, Limits::default()).map_err(|e| self.err(e.to_string()))?;
        let enforcer =
            Enforcer::start(plugin, profile.settings).map_err(|e| self.err(e.to_string()))?;
        self.lab = Some(lab);
        self.enforcer = Some(enforcer);
        Ok(())
    }

    /// Brings the lab in line with the step's pods and external endpoints.
    fn sync(&mut self, pods: Vec<LabPod>, externals: Vec<LabExternal>) -> Result<(), BackendError> {
        let wanted: BTreeMap<String, _> = pods
            .iter()
            .map(|p| (p.key.clone(), (p.ip, p.ports.clone())))
            .chain(externals.iter().map(|e| (e.key.clone(), (e.ip, e.ports.clone()))))
            .collect();
        if self.lab.is_none() {
            self.start(&LabSpec { pods, externals, notes: Vec::new() })?;
            self.endpoints = wanted;
            return Ok(());
        }
        let backend = self.backend.clone();
        let lab = self.lab.as_mut().ok_or_else(|| error(&backend, "no lab"))?;
        let stale: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(k, v)| wanted.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            lab.remove(key).map_err(|e| error(&backend, format!("lab: {e}")))?;
            self.endpoints.remove(key);
        }
        for pod in pods.iter().filter(|p| !self.endpoints.contains_key(&p.key)) {
            lab.add_pod(pod).map_err(|e| error(&backend, format!("lab: {e}")))?;
        }
        for ext in externals.iter().filter(|e| !self.endpoints.contains_key(&e.key)) {
            lab.add_external(ext).map_err(|e| error(&backend, format!("lab: {e}")))?;
        }
        self.endpoints = wanted;
        Ok(())
    }
}

fn error(backend: &str, message: impl Into<String>) -> BackendError {
    BackendError { backend: backend.to_string(), message: message.into() }
}

/// The lab pods of the store's Pod objects (finished, host-network and
/// address-less pods have no place in the lab and are left out).
fn lab_pods(store: &Store) -> Vec<LabPod> {
    let mut compiler = palisade_dialects::Compiler::new(Default::default());
    store
        .of_kind("", "Pod")
        .filter_map(|(_, object)| compiler.apply(object).ok())
        .flat_map(|compiled| compiled.events)
        .filter_map(|event| match event {
            ModelEvent::PodUpserted(pod) => LabPod::from_model(&pod).ok(),
            _ => None,
        })
        .collect()
}

impl Backend for LabBackend {
    fn name(&self) -> &str {
        &self.backend
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        let mut result = Ok(());
        if let Some(mut enforcer) = self.enforcer.take() {
            if let Err(e) = enforcer.reset() {
                result = Err(self.err(format!("reset: {e}")));
            }
        }
        if let Some(lab) = self.lab.take() {
            if let Err(e) = lab.down() {
                result = Err(self.err(format!("lab teardown: {e}")));
            }
        }
        self.endpoints.clear();
        result
    }

    fn program(&mut self, state: &StepState<'_>) -> Result<(), BackendError> {
        let pods = lab_pods(state.store);
        let externals: Vec<LabExternal> = state
            .externals
            .iter()
            .filter(|end| !pods.iter().any(|p| p.ip == end.address))
            .map(|end| LabExternal::named(&end.name, end.address))
            .collect();
        self.sync(pods, externals)?;
        let backend = self.backend.clone();
        let enforcer = self.enforcer.as_mut().ok_or_else(|| error(&backend, "no plugin"))?;
        enforcer
            .program(state.rule_set, state.delta)
            .map(|_| ())
            .map_err(|e| error(&backend, e.to_string()))
    }

    fn probe(&mut self, probe: &Probe) -> Result<Observation, BackendError> {
        self.probe_many(std::slice::from_ref(probe))
            .pop()
            .unwrap_or_else(|| Err(self.err("no answer")))
    }

    fn probe_many(&mut self, probes: &[Probe]) -> Vec<Result<Observation, BackendError>> {
        let Some(lab) = &self.lab else {
            return probes.iter().map(|_| Err(self.err("no lab"))).collect();
        };
        let requests: Vec<ProbeRequest> = probes
            .iter()
            .map(|p| ProbeRequest::new(&p.from.name, &p.to.name, p.protocol, p.port))
            .collect();
        lab.probe_many(&requests, self.timeout)
            .into_iter()
            .map(|outcome| {
                if outcome.is_failure() {
                    Err(self.err(format!("probe failed: {}", outcome.detail)))
                } else {
                    Ok(Observation { allowed: outcome.allowed, detail: Some(outcome.detail) })
                }
            })
            .collect()
    }
}

impl Drop for LabBackend {
    fn drop(&mut self) {
        let _ = Backend::reset(self);
    }
}
