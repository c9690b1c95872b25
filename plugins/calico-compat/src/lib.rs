//! The Calico/Romana-compatible backend: enforces the rule set in userspace.
//!
//! It keeps the applied rule set and answers `evaluate` for one flow with the
//! verdict and a trace: tiers in order, rules in order; `log` records and
//! continues, `pass` skips to the next tier, `allow`/`deny` decide; a tier
//! without a match ends in its no-match outcome; after the last tier the
//! verdict is allow. A flow needs the source's egress and the destination's
//! ingress to allow it.

mod evaluate;

use palisade_plugin_sdk::types::{Delta, Error, Flow, PluginInfo, RuleSet, Verdict};
use palisade_plugin_sdk::{applied, export, Guest};

struct CalicoCompat;

impl Guest for CalicoCompat {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "calico-compat".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![],
            features: ["tiers", "pass", "log", "sctp", "ipv6", "evaluate"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), Error> {
        match settings.first() {
            None => Ok(()),
            Some((key, _)) => Err(palisade_plugin_sdk::invalid_input(format!(
                "unknown setting `{key}` (calico-compat takes none yet)"
            ))),
        }
    }

    fn apply(rules: RuleSet) -> Result<(), Error> {
        applied::apply(rules);
        Ok(())
    }

    fn update(change: Delta) -> Result<(), Error> {
        applied::update(change)
    }

    fn reset() -> Result<(), Error> {
        applied::clear();
        Ok(())
    }

    fn evaluate(flow: Flow) -> Result<Verdict, Error> {
        applied::with(|s| evaluate::verdict(s, &flow))
    }
}

export!(CalicoCompat with_types_in palisade_plugin_sdk);
