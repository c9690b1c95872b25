//! A persistent plugin instance with recovery.
//!
//! The supervisor keeps one instance alive across calls and remembers the
//! last rule set the plugin accepted. When a call traps or breaks a limit,
//! the instance is discarded; the supervisor makes a fresh one, configures
//! it, and re-applies that rule set, so the plugin is back in the last good
//! state. Repeated failures back off exponentially; while backing off, calls
//! fail fast without entering the plugin. The kernel state a plugin
//! programmed stays in force meanwhile (fail static).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use palisade_model::{Delta, Protocol, RuleSet};

use crate::bindings::v0_1::types;
use crate::error::PluginError;
use crate::instance::PluginInstance;
use crate::plugin::LoadedPlugin;

/// Exponential backoff between recovery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures in a row tolerated before backing off at all.
    pub free_retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            free_retries: 1,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn delay(&self, failures: u32) -> Duration {
        if failures <= self.free_retries {
            return Duration::ZERO;
        }
        let exp = (failures - self.free_retries - 1).min(20);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStatus {
    /// Fresh instances made after a failure.
    pub restarts: u64,
    /// Failures in a row (0 once a call succeeds).
    pub consecutive_failures: u32,
    /// Generation of the last rule set the plugin accepted.
    pub generation: Option<u64>,
}

pub struct Supervisor {
    plugin: LoadedPlugin,
    settings: Vec<(String, String)>,
    instance: Option<PluginInstance>,
    last_good: Option<RuleSet>,
    backoff: Backoff,
    status: SupervisorStatus,
    retry_at: Option<Instant>,
}

impl Supervisor {
    /// Instantiates and configures the plugin.
    pub fn start(
        plugin: LoadedPlugin,
        settings: Vec<(String, String)>,
        backoff: Backoff,
    ) -> Result<Supervisor, PluginError> {
        let mut s = Supervisor {
            plugin,
            settings,
            instance: None,
            last_good: None,
            backoff,
            status: SupervisorStatus::default(),
            retry_at: None,
        };
        s.instance = Some(s.fresh_instance()?);
        Ok(s)
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    pub fn status(&self) -> SupervisorStatus {
        SupervisorStatus {
            generation: self.last_good.as_ref().map(|r| r.generation),
            ..self.status
        }
    }

    /// The last rule set the plugin accepted (with accepted deltas applied).
    pub fn last_good(&self) -> Option<&RuleSet> {
        self.last_good.as_ref()
    }

    fn fresh_instance(&self) -> Result<PluginInstance, PluginError> {
        let mut inst = self.plugin.instantiate()?;
        inst.configure(&self.settings)?;
        Ok(inst)
    }

    /// A live instance: the current one, or a fresh one with the last good
    /// rule set re-applied (unless backing off).
    fn live(&mut self) -> Result<&mut PluginInstance, PluginError> {
        let healthy = self.instance.as_ref().is_some_and(|i| !i.is_poisoned());
        if !healthy {
            if let Some(at) = self.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(PluginError::BackingOff {
                        plugin: self.plugin.name().to_string(),
                        failures: self.status.consecutive_failures,
                        retry_in: at - now,
                    });
                }
            }
            self.instance = None;
            let recovered = self.fresh_instance().and_then(|mut inst| {
                if let Some(rules) = &self.last_good {
                    inst.apply(rules)?;
                }
                Ok(inst)
            });
            match recovered {
                Ok(inst) => {
                    self.status.restarts += 1;
                    self.retry_at = None;
                    tracing::info!(
                        plugin = self.plugin.name(),
                        restarts = self.status.restarts,
                        generation = ?self.last_good.as_ref().map(|r| r.generation),
                        "fresh plugin instance; last good rule set re-applied"
                    );
                    self.instance = Some(inst);
                }
                Err(e) => {
                    self.failed(&e);
                    return Err(e);
                }
            }
        }
        self.instance.as_mut().ok_or_else(|| PluginError::Host {
            plugin: String::new(),
            message: "no plugin instance".into(),
        })
    }

    fn failed(&mut self, e: &PluginError) {
        self.status.consecutive_failures += 1;
        let delay = self.backoff.delay(self.status.consecutive_failures);
        self.retry_at = (!delay.is_zero()).then(|| Instant::now() + delay);
        tracing::warn!(
            plugin = self.plugin.name(),
            failures = self.status.consecutive_failures,
            retry_in = ?delay,
            "{e}"
        );
    }

    /// Runs `f` on a live instance; on a trap or broken limit, discards the
    /// instance and recovers right away (so the next call finds the plugin
    /// in its last good state), then returns the original error.
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut PluginInstance) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let result = f(self.live()?);
        match &result {
            Ok(_) => {
                self.status.consecutive_failures = 0;
            }
            Err(e) if e.is_fatal_to_instance() => {
                self.failed(e);
                self.instance = None;
                if self.retry_at.is_none() {
                    // Recovery errors are logged and counted by `live`.
                    let _ = self.live();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Applies a full rule set; on success it becomes the last good one.
    pub fn apply(&mut self, rules: &RuleSet) -> Result<(), PluginError> {
        self.run(|i| i.apply(rules))?;
        let mut kept = rules.clone();
        kept.canonicalize();
        self.last_good = Some(kept);
        Ok(())
    }

    /// Applies a delta against the last good rule set.
    pub fn update(&mut self, delta: &Delta) -> Result<(), PluginError> {
        let plugin = self.plugin.name().to_string();
        let misfit = |message: String| PluginError::Delta { plugin: plugin.clone(), message };
        let last =
            self.last_good.as_ref().ok_or_else(|| misfit("no rule set applied yet".into()))?;
        last.check_delta(delta).map_err(|e| misfit(e.to_string()))?;
        self.run(|i| i.update(delta))?;
        // Checked above, so this cannot fail; it costs what the delta holds.
        if let Some(last) = self.last_good.as_mut() {
            last.apply_delta(delta).map_err(|e| misfit(e.to_string()))?;
        }
        Ok(())
    }

    /// Removes what the plugin programmed and forgets the last good rule set.
    pub fn reset(&mut self) -> Result<(), PluginError> {
        self.run(|i| i.reset())?;
        self.last_good = None;
        Ok(())
    }

    pub fn evaluate(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Result<types::Verdict, PluginError> {
        self.run(|i| i.evaluate(src, dst, protocol, port))
    }

    pub fn info(&mut self) -> Result<types::PluginInfo, PluginError> {
        self.run(|i| i.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            free_retries: 1,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::ZERO);
        assert_eq!(b.delay(2), Duration::from_millis(100));
        assert_eq!(b.delay(3), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(400));
        assert_eq!(b.delay(10), Duration::from_secs(1));
    }
}
