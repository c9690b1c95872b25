//! `palisade run --source kube`: the Kubernetes source, the pipeline, and
//! the backend plugin, failing static.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use palisade_daemon::{Enforcer, Programmed};
use palisade_model::{Delta, RuleSet};
use palisade_pipeline::{Pipeline, Rejected};
use palisade_plugin_host::PluginError;
use palisade_store::ObjectKey;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::events::{self, Rejection};
use crate::health::Health;
use crate::readiness::{self, Gated, Gates};
use crate::source::{KubeSource, SourceClosed, SourceConfig};

/// What programs rule sets: the [`Enforcer`] (a plugin under its
/// supervisor), or a recorder in tests.
pub trait Programmer {
    fn program(&mut self, rules: &RuleSet, delta: &Delta) -> Result<Programmed, PluginError>;
    /// Fresh plugin instances made after failures.
    fn restarts(&self) -> u64 {
        0
    }
}

impl Programmer for Enforcer {
    fn program(&mut self, rules: &RuleSet, delta: &Delta) -> Result<Programmed, PluginError> {
        Enforcer::program(self, rules, delta)
    }
    fn restarts(&self) -> u64 {
        self.supervisor().status().restarts
    }
}

/// Settings of the Kubernetes daemon.
#[derive(Debug, Clone, Default)]
pub struct KubeConfig {
    pub source: SourceConfig,
    pub dialects: palisade_dialects::Settings,
    /// `node`: this node's name (pods on it are the endpoints).
    pub resolver: palisade_resolver::Settings,
    /// Post a Kubernetes Event on each object that fails validation.
    pub post_events: bool,
    /// Set the `palisade.io/policy-programmed` condition of pods that ask
    /// for it in their readiness gates (`readiness`).
    pub readiness_gates: bool,
}

/// One round, for logs and tests.
#[derive(Debug)]
pub struct KubeRound {
    pub applied: usize,
    pub deleted: usize,
    pub rejected: Vec<Rejected>,
    pub programmed: Result<Programmed, PluginError>,
}

pub struct KubeDaemon<P> {
    source: KubeSource,
    pipeline: Pipeline,
    programmer: P,
    health: Arc<Health>,
    events: Option<UnboundedSender<Rejection>>,
    /// The last rejection reported per object, so that an Event is posted
    /// once per distinct problem, not on every resync.
    reported: HashMap<ObjectKey, String>,
    /// When to retry after a failed programming.
    retry_at: Option<Instant>,
    /// Pods with palisade's readiness gate.
    gates: Gates,
    gate_tx: Option<UnboundedSender<(Gated, u64)>>,
}

/// Delay before a failed programming is retried without a change (the
/// plugin's supervisor adds its own backoff on repeated failures).
const RETRY: Duration = Duration::from_secs(1);

impl<P: Programmer> KubeDaemon<P> {
    /// Starts the watchers (and the Event poster) on `runtime`; nothing is
    /// programmed until the first complete sync ([`KubeDaemon::round`]).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: Client,
        config: &KubeConfig,
        programmer: P,
        health: Arc<Health>,
    ) -> KubeDaemon<P> {
        let source = KubeSource::start(runtime, &client, &config.source, health.clone());
        let gates = Gates::default();
        let gate_tx = config
            .readiness_gates
            .then(|| readiness::spawn(runtime, client.clone(), &gates, health.clone()));
        let events = config
            .post_events
            .then(|| events::spawn(runtime, client, config.resolver.node.clone(), health.clone()));
        KubeDaemon {
            source,
            pipeline: Pipeline::new(config.dialects, config.resolver.clone()),
            programmer,
            health,
            events,
            reported: HashMap::new(),
            retry_at: None,
            gates,
            gate_tx,
        }
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn programmer_mut(&mut self) -> &mut P {
        &mut self.programmer
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The kinds not completely listed yet (for logs while not ready).
    pub fn unsynced(&self) -> Vec<String> {
        self.source.reflection().unsynced()
    }

    /// Waits up to `timeout` for a debounced batch, applies it and programs
    /// the change. `None` if nothing changed.
    pub fn round(&mut self, timeout: Duration) -> Result<Option<KubeRound>, SourceClosed> {
        let Some(batch) = self.source.next_batch(timeout)? else {
            return Ok(self.retry());
        };
        let started = Instant::now();
        self.health.batch();
        let identities: Vec<Identity> = batch.apply.iter().map(identity).collect();
        for object in &batch.apply {
            self.gates.observe(object);
        }
        let applied = batch.apply.len();
        let outcome = self.pipeline.apply(batch.apply);
        for w in &outcome.warnings {
            tracing::warn!("{w}");
        }
        for r in &outcome.rejected {
            tracing::error!(object = %r.object, field = ?r.field, "{}", r.message);
            if let Some(id) = identities.get(r.index) {
                self.report(r, id);
            }
        }
        self.health.rejected(outcome.rejected.len());
        for deleted in &batch.delete {
            self.reported.remove(deleted);
            self.gates.forget(deleted);
        }
        for r in self.pipeline.delete(&batch.delete).refused {
            tracing::error!(object = %r.object, field = ?r.field, "{}", r.message);
        }
        let programmed = self.program(started);
        Ok(Some(KubeRound {
            applied: applied - outcome.rejected.len(),
            deleted: batch.delete.len(),
            rejected: outcome.rejected,
            programmed,
        }))
    }

    /// Programs the change since the last call; on failure, schedules a
    /// retry of the full rule set, so that a failed first sync does not wait
    /// for the next change in the cluster to become ready.
    fn program(&mut self, started: Instant) -> Result<Programmed, PluginError> {
        let delta = self.pipeline.take_delta();
        let programmed = self.programmer.program(self.pipeline.rule_set(), &delta);
        self.health.set_plugin_restarts(self.programmer.restarts());
        self.health.set_objects(&self.source.reflection().counts());
        match &programmed {
            Ok(p) => {
                if !matches!(p, Programmed::Unchanged) {
                    self.health.programmed(started.elapsed());
                }
                let rules = self.pipeline.rule_set();
                let programmed: BTreeSet<&str> =
                    rules.endpoints.iter().map(|e| e.name.as_str()).collect();
                self.health.set_generation(rules.generation);
                self.health.set_endpoints(rules.generation, programmed.iter().copied());
                if let Some(tx) = &self.gate_tx {
                    for pod in self.gates.due(&programmed) {
                        self.gates.sent(&pod);
                        let _ = tx.send((pod, rules.generation));
                    }
                }
                self.health.set_ready();
                self.retry_at = None;
                log_programmed(p);
            }
            Err(e) => {
                self.health.plugin_failed();
                self.retry_at = Some(Instant::now() + RETRY);
                tracing::error!(
                    "programming failed; the last programmed state stays in force: {e}"
                );
            }
        }
        programmed
    }

    /// A retry of a failed programming, when it is due.
    fn retry(&mut self) -> Option<KubeRound> {
        if self.retry_at.is_none_or(|at| Instant::now() < at) {
            return None;
        }
        let programmed = self.program(Instant::now());
        Some(KubeRound { applied: 0, deleted: 0, rejected: Vec::new(), programmed })
    }

    fn report(&mut self, r: &Rejected, id: &Identity) {
        let Some(events) = &self.events else { return };
        if r.unsupported_kind {
            return;
        }
        let Some(key) = id.key.clone() else { return };
        if self.reported.get(&key) == Some(&r.message) {
            return;
        }
        self.reported.insert(key.clone(), r.message.clone());
        let _ = events.send(Rejection {
            key,
            api_version: id.api_version.clone(),
            uid: id.uid.clone(),
            field: r.field.clone(),
            message: r.message.clone(),
        });
    }
}

/// What an Event names of an object of the batch.
struct Identity {
    key: Option<ObjectKey>,
    api_version: String,
    uid: Option<String>,
}

fn identity(object: &Value) -> Identity {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
    Identity { key: ObjectKey::of_object(object).ok(), api_version: api_version.to_string(), uid }
}

fn log_programmed(p: &Programmed) {
    match p {
        Programmed::Unchanged => tracing::debug!("nothing to program"),
        Programmed::Full { generation, rules, elapsed } => {
            tracing::info!(generation, rules, ?elapsed, "programmed the full rule set")
        }
        Programmed::Delta { generation, records, elapsed } => {
            tracing::info!(generation, records, ?elapsed, "programmed a delta")
        }
    }
}
