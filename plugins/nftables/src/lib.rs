//! The nftables backend plugin.
//!
//! Current state: accepts and tracks the rule set (full applies and deltas)
//! and reports what it would program. Turning the rule set into nftables
//! objects through the host's `nft` capability is the next step (see
//! docs/plugin-authors.md and the project's issues).

use std::cell::RefCell;

use palisade_plugin_sdk::types::{Delta, Error, Flow, PluginInfo, RuleSet, Verdict};
use palisade_plugin_sdk::{applied, export, Guest};

thread_local! {
    static TABLE: RefCell<String> = RefCell::new(String::from("palisade"));
}

struct Nftables;

impl Guest for Nftables {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "nftables".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["log".into(), "nft".into()],
            features: vec![],
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), Error> {
        for (key, value) in settings {
            match key.as_str() {
                "table" if !value.is_empty() => TABLE.with(|t| *t.borrow_mut() = value),
                _ => {
                    return Err(palisade_plugin_sdk::invalid_input(format!(
                        "unknown or empty setting `{key}` (known: table)"
                    )))
                }
            }
        }
        Ok(())
    }

    fn apply(rules: RuleSet) -> Result<(), Error> {
        applied::apply(rules);
        applied::with(|s| {
            let table = TABLE.with(|t| t.borrow().clone());
            palisade_plugin_sdk::info(&format!(
                "generation {}: {} endpoints, {} address sets, {} rules for table inet {table}",
                s.generation,
                s.endpoints.len(),
                s.sets.len(),
                s.rule_count()
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
            "nftables enforces in the kernel; use the reference evaluator",
        ))
    }
}

export!(Nftables with_types_in palisade_plugin_sdk);
