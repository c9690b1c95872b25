//! The enforcer: one backend plugin under a supervisor, fed full rule sets
//! and deltas, failing static.

use std::time::{Duration, Instant};

use palisade_model::{Delta, RuleSet};
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
}

impl Enforcer {
    pub fn start(
        plugin: LoadedPlugin,
        settings: Vec<(String, String)>,
    ) -> Result<Enforcer, PluginError> {
        Ok(Enforcer {
            supervisor: Supervisor::start(plugin, settings, Backoff::default())?,
            needs_full: true,
        })
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
        result
    }

    /// Removes everything the plugin programmed.
    pub fn reset(&mut self) -> Result<(), PluginError> {
        self.needs_full = true;
        self.supervisor.reset()
    }
}
