//! The nftables backend plugin: programs the rule set as one `inet` table in
//! the node's network namespace through the host's `nft` capability.
//!
//! - `render`: rule set → the table's full definition (one atomic batch);
//! - `delta`: incremental batches for `update`, with a fallback to a full
//!   replace for large deltas;
//! - `runs`: runs of rules with one action as lookups in named sets
//!   (`ADDR . PROTO . PORT` concatenations, address sets);
//! - `names`, `nft`: object names and libnftables JSON building blocks.
//!
//! Layout and examples: docs/nftables-backend.md.

use std::cell::RefCell;

#[cfg(target_family = "wasm")]
use palisade_plugin_sdk::export;
use palisade_plugin_sdk::types::{Delta, Error, ErrorCode, Flow, PluginInfo, RuleSet, Verdict};
use palisade_plugin_sdk::{applied, AppliedState, Guest};

pub mod delta;
pub mod names;
pub mod nft;
pub mod render;
pub mod runs;
pub mod state;

/// Deltas with more records than this are applied as a full replace.
pub const DEFAULT_UPDATE_THRESHOLD: usize = 2000;

struct Config {
    table: String,
    threshold: usize,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config {
        table: String::from("palisade"),
        threshold: DEFAULT_UPDATE_THRESHOLD,
    });
}

fn table() -> nft::Table {
    CONFIG.with(|c| nft::Table::new(c.borrow().table.clone()))
}

fn capability(op: &str, message: String) -> Error {
    Error { code: ErrorCode::Capability, message: format!("nft {op}: {message}") }
}

fn apply_batch(batch: &serde_json::Value) -> Result<(), Error> {
    apply_json(batch.to_string())
}

fn apply_json(batch: String) -> Result<(), Error> {
    palisade_plugin_sdk::nft::apply_batch(&batch).map_err(|m| capability("apply-batch", m))
}

/// Programs the plan of one update (`st`: the state after it).
fn program(
    t: &nft::Table,
    st: &AppliedState,
    generation: u64,
    plan: delta::Plan,
) -> Result<(), Error> {
    match plan {
        delta::Plan::Incremental { batch, commands } => {
            let result = if commands == 0 { Ok(()) } else { apply_batch(&batch) };
            drop(batch);
            match result {
                Ok(()) => {
                    palisade_plugin_sdk::info(&format!(
                        "generation {generation}: incremental update of table inet {}: {commands} commands",
                        t.name
                    ));
                }
                Err(e) => {
                    palisade_plugin_sdk::warn(&format!(
                        "generation {generation}: incremental update failed ({}); replacing table inet {}",
                        e.message, t.name
                    ));
                    apply_json(render::full_json(t, st))?;
                }
            }
        }
        delta::Plan::Full { reason } => {
            palisade_plugin_sdk::info(&format!(
                "generation {generation}: {reason}: full replace of table inet {}",
                t.name
            ));
            apply_json(render::full_json(t, st))?;
        }
    }
    Ok(())
}

/// Whether `name` is acceptable as a table name: an identifier as `nft`
/// writes them (a letter, `_` or `.`, then letters, digits, `/`, `-`, `_`,
/// `.`; at most 255 bytes), the names the host grants.
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    name.len() <= 255
        && (first.is_ascii_alphabetic() || first == '_' || first == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
}

/// The plugin (its `Guest` implementation is the exported `backend`).
pub struct Nftables;

impl Guest for Nftables {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "nftables".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["log".into(), "nft".into()],
            features: [
                "tiers",
                "pass",
                "log",
                "deny",
                "tcp",
                "udp",
                "sctp",
                "ipv4",
                "ipv6",
                "stateful",
                "incremental",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }

    fn configure(settings: Vec<(String, String)>) -> Result<(), Error> {
        for (key, value) in settings {
            match key.as_str() {
                "table" if valid_table_name(&value) => CONFIG.with(|c| c.borrow_mut().table = value),
                "table" => {
                    return Err(palisade_plugin_sdk::invalid_input(format!(
                        "setting `table`: `{value}` is not an nftables identifier (a letter, `_` or `.`, then letters, digits, `/`, `-`, `_`, `.`)"
                    )))
                }
                "update-threshold" => match value.parse::<usize>() {
                    Ok(n) => CONFIG.with(|c| c.borrow_mut().threshold = n),
                    Err(_) => {
                        return Err(palisade_plugin_sdk::invalid_input(format!(
                            "setting `update-threshold`: `{value}` is not a number of records"
                        )))
                    }
                },
                _ => {
                    return Err(palisade_plugin_sdk::invalid_input(format!(
                        "unknown setting `{key}` (known: table, update-threshold)"
                    )))
                }
            }
        }
        Ok(())
    }

    fn apply(rules: RuleSet) -> Result<(), Error> {
        let t = table();
        let mut st = AppliedState::default();
        st.apply(rules);
        apply_json(render::full_json(&t, &st))?;
        palisade_plugin_sdk::info(&format!(
            "generation {}: table inet {} replaced: {} endpoints, {} address sets, {} policies, {} rules",
            st.generation,
            t.name,
            st.endpoints.len(),
            st.sets.len(),
            st.policies.len(),
            st.rule_count()
        ));
        applied::replace(st);
        Ok(())
    }

    fn update(change: Delta) -> Result<(), Error> {
        let t = table();
        let threshold = CONFIG.with(|c| c.borrow().threshold);
        let generation = change.generation;
        // The applied state is updated in place; only the records the delta
        // replaced are kept aside, to roll back if the kernel refuses.
        applied::with_mut(|st| {
            let (undo, plan) = delta::update_in_place(&t, st, change, threshold)?;
            let result = program(&t, st, generation, plan);
            if result.is_err() {
                st.rollback(undo);
            }
            result
        })
    }

    fn reset() -> Result<(), Error> {
        let t = table();
        palisade_plugin_sdk::nft::delete_table(nft::FAMILY, &t.name)
            .map_err(|m| capability("delete-table", m))?;
        applied::clear();
        Ok(())
    }

    fn evaluate(_flow: Flow) -> Result<Verdict, Error> {
        Err(palisade_plugin_sdk::unsupported(
            "nftables enforces in the kernel; use the reference evaluator",
        ))
    }
}

// Exported only in the component: on the host target the crate is built for
// its tests, and the component's export names are not valid native symbols.
#[cfg(target_family = "wasm")]
export!(Nftables with_types_in palisade_plugin_sdk);
