//! The enforcer: one backend plugin under a supervisor, fed full rule sets
//! and deltas, failing static; with an endpoint guard, new endpoints fail
//! closed until their policy is programmed (`palisade_nft::guard`).

use std::time::{Duration, Instant};

use palisade_model::{Delta, RuleSet};
use palisade_nft::EndpointGuard;
use palisade_plugin_host::{Backoff, LoadedPlugin, PluginError, Supervisor};

/// What one programming call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Programmed {
    /// Nothing changed.
    Unchanged,
    /// A full rule set was applied.
    Full { generation: u64, rules: usize, elapsed: Duration },
    /// A delta was applied.
    Delta { generation: u64, records: usize, elapsed: Duration },
}

pub struct Enforcer {
    supervisor: Supervisor,
    /// True until a full rule set was accepted, and again after a failure:
    /// the next programming then sends the whole current rule set.
    needs_full: bool,
    /// Lets through the endpoints whose policy is programmed.
    guard: Option<EndpointGuard>,
}

impl Enforcer {
    pub fn start(
        plugin: LoadedPlugin,
        settings: Vec<(String, String)>,
    ) -> Result<Enforcer, PluginError> {
        Ok(Enforcer {
            supervisor: Supervisor::start(plugin, settings, Backoff::default())?,
            needs_full: true,
            guard: None,
        })
    }

    /// Guards new endpoints with `guard`: after every successful
    /// programming, exactly the rule set's endpoints are let through.
    pub fn with_guard(mut self, guard: EndpointGuard) -> Enforcer {
        self.guard = Some(guard);
        self
    }

    pub fn guard(&self) -> Option<&EndpointGuard> {
        self.guard.as_ref()
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Programs the change to `rules` (the current rule set, of which
    /// `delta` is the change since the last call). On failure the plugin's
    /// last good state stays in force (fail static) and the next call sends
    /// the full rule set.
    pub fn program(&mut self, rules: &RuleSet, delta: &Delta) -> Result<Programmed, PluginError> {
        let started = Instant::now();
        let full = self.needs_full
            || self.supervisor.last_good().map(|r| r.generation) != Some(delta.base);
        let result = if full {
            self.supervisor.apply(rules).map(|()| Programmed::Full {
                generation: rules.generation,
                rules: rules.rule_count(),
                elapsed: started.elapsed(),
            })
        } else if delta.is_empty() && delta.base == delta.generation {
            Ok(Programmed::Unchanged)
        } else {
            self.supervisor.update(delta).map(|()| Programmed::Delta {
                generation: delta.generation,
                records: delta.size(),
                elapsed: started.elapsed(),
            })
        };
        self.needs_full = result.is_err();
        if result.is_ok() {
            self.sync_guard(rules);
        }
        result
    }

    /// Lets the endpoints of `rules` (programmed just now) through the
    /// guard. A failure leaves new endpoints isolated (fail closed) and is
    /// retried with the next programming.
    fn sync_guard(&mut self, rules: &RuleSet) {
        let Some(guard) = self.guard.as_mut() else { return };
        let started = Instant::now();
        match guard.sync(rules.endpoints.iter().flat_map(|e| &e.addresses)) {
            Ok((0, 0)) => {}
            Ok((added, removed)) => tracing::info!(
                generation = rules.generation,
                added,
                removed,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "endpoint guard: programmed endpoints let through"
            ),
            Err(e) => tracing::error!(
                generation = rules.generation,
                "endpoint guard not updated (new endpoints stay isolated): {e}"
            ),
        }
    }

    /// Removes everything the plugin programmed, and the guard.
    pub fn reset(&mut self) -> Result<(), PluginError> {
        self.needs_full = true;
        self.supervisor.reset()?;
        if let Some(guard) = self.guard.as_mut() {
            guard.remove().map_err(|e| PluginError::Host {
                plugin: palisade_nft::guard::GUARD.into(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}
