//! The eBPF backend plugin.
//!
//! Current state: accepts and tracks the rule set (full applies and deltas).
//! Encoding it into BPF map contents for the TC classifier and loading that
//! through the host's `bpf` capability is the next step (see the project's
//! issues).

use palisade_plugin_sdk::types::{Delta, Error, Flow, PluginInfo, RuleSet, Verdict};
use palisade_plugin_sdk::{applied, export, Guest};

struct Ebpf;

impl Guest for Ebpf {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "ebpf".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["log".into(), "bpf".into()],
            features: vec![],
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), Error> {
        match settings.first() {
            None => Ok(()),
            Some((key, _)) => Err(palisade_plugin_sdk::invalid_input(format!(
                "unknown setting `{key}` (the ebpf backend takes none yet)"
            ))),
        }
    }

    fn apply(rules: RuleSet) -> Result<(), Error> {
        applied::apply(rules);
        applied::with(|s| {
            palisade_plugin_sdk::info(&format!(
                "generation {}: {} endpoint policies",
                s.generation,
                s.policies.len()
            ));
        });
        Ok(())
    }

    fn update(change: Delta) -> Result<(), Error> {
        applied::update(change)
    }

    fn reset() -> Result<(), Error> {
        applied::clear();
        Ok(())
    }

    fn evaluate(_flow: Flow) -> Result<Verdict, Error> {
        Err(palisade_plugin_sdk::unsupported(
            "ebpf enforces in the kernel; use the reference evaluator",
        ))
    }
}

export!(Ebpf with_types_in palisade_plugin_sdk);
