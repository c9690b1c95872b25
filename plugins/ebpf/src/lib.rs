//! The eBPF backend plugin: enforces the rule set with a TC classifier that
//! the host loads and attaches on its behalf (the `bpf` capability).
//!
//! - bpf/palisade_tc.c: the classifier (compiled by build.rs, embedded);
//!   the policy lives in its maps, no program is generated per policy;
//! - `encode`: an endpoint policy's tiers → the `peers` and `ports` maps;
//! - `kernel`: what is programmed, and the map updates, attaches and
//!   deletions that bring it to a new rule set or delta.
//!
//! Layout and limits: docs/ebpf-backend.md.

use std::cell::RefCell;
use std::collections::BTreeSet;

#[cfg(target_family = "wasm")]
use palisade_plugin_sdk::export;
use palisade_plugin_sdk::types::{Delta, Error, Flow, PluginInfo, RuleSet, Verdict};
use palisade_plugin_sdk::{applied, Guest};

pub mod encode;
pub mod kernel;

thread_local! {
    static KERNEL: RefCell<kernel::Kernel> = RefCell::new(kernel::Kernel::default());
}

fn log_written(generation: u64, what: &str, w: kernel::Written) {
    palisade_plugin_sdk::info(&format!(
        "generation {generation}: {what}: {} entries written, {} deleted, {} links attached, {} detached, {} endpoints without interface",
        w.updated, w.deleted, w.attached, w.detached, w.unattached
    ));
}

struct Ebpf;

impl Guest for Ebpf {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "ebpf".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["log".into(), "bpf".into()],
            features: vec!["tiers".into(), "pass".into(), "sctp".into()],
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), Error> {
        match settings.first() {
            None => Ok(()),
            Some((key, _)) => Err(palisade_plugin_sdk::invalid_input(format!(
                "unknown setting `{key}` (the ebpf backend takes none)"
            ))),
        }
    }

    fn apply(rules: RuleSet) -> Result<(), Error> {
        let generation = rules.generation;
        applied::apply(rules);
        KERNEL.with(|k| {
            let mut k = k.borrow_mut();
            if k.dirty {
                // What a failed sync left is not known: forget it and load
                // the object again. The host hands back the same maps and
                // links when it pins them, and after this full apply removes
                // what it did not write (docs/reliability.md); the kernel
                // keeps enforcing the former state meanwhile.
                k.forget();
            }
            let w = applied::with(|st| k.sync(st, None))?;
            log_written(generation, "full apply", w);
            Ok(())
        })
    }

    fn update(change: Delta) -> Result<(), Error> {
        let generation = change.generation;
        let mut touched: BTreeSet<(u32, u8)> = change
            .policies_upserted
            .iter()
            .map(|p| (p.endpoint, encode::direction_code(p.direction)))
            .chain(
                change
                    .policies_removed
                    .iter()
                    .map(|k| (k.endpoint, encode::direction_code(k.direction))),
            )
            .collect();
        let sets: BTreeSet<u32> = change
            .sets_added
            .iter()
            .map(|s| s.id)
            .chain(change.sets_changed.iter().map(|c| c.id))
            .chain(change.sets_removed.iter().copied())
            .collect();
        KERNEL.with(|k| {
            let mut k = k.borrow_mut();
            if k.dirty || k.object().is_none() {
                return Err(palisade_plugin_sdk::invalid_input(
                    "the programmed state is not known after a failure: apply the full rule set",
                ));
            }
            applied::update(change)?;
            let w = applied::with(|st| {
                touched.extend(kernel::policies_reading(st, &sets));
                k.sync(st, Some(&touched))
            })?;
            log_written(generation, "delta", w);
            Ok(())
        })
    }

    fn reset() -> Result<(), Error> {
        applied::clear();
        KERNEL.with(|k| k.borrow_mut().reset())
    }

    fn evaluate(_flow: Flow) -> Result<Verdict, Error> {
        Err(palisade_plugin_sdk::unsupported(
            "ebpf enforces in the kernel; use the reference evaluator",
        ))
    }
}

#[cfg(target_family = "wasm")]
export!(Ebpf with_types_in palisade_plugin_sdk);
