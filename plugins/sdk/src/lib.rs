//! Guest-side SDK for Palisade backend plugins.
//!
//! The bindings are generated for the `any-backend` world of
//! `palisade:backend@0.1.0`, which imports every capability; a plugin's
//! component only imports the capability interfaces its code actually calls
//! (the component linker drops unused imports), so `palisade plugin inspect`
//! shows exactly what a plugin needs and the operator grants exactly that.
//!
//! A plugin implements [`Guest`] and registers it with
//! `palisade_plugin_sdk::export!(MyPlugin with_types_in palisade_plugin_sdk);`.

wit_bindgen::generate!({
    world: "any-backend",
    path: "../../wit/0.1.0",
    pub_export_macro: true,
    default_bindings_module: "palisade_plugin_sdk",
    generate_all,
});

mod state;

pub use exports::palisade::backend::backend::Guest;
pub use palisade::backend::types;
pub use palisade::backend::{bpf, log as host_log, nft};
pub use state::{applied, AppliedState, Undo};

use palisade::backend::types::{EndpointPolicy, Error, ErrorCode, PortRange, Rule};

/// The port ranges of `rule`, a rule of `policy` (empty: every port of every
/// protocol). A span outside the policy's table yields no ranges.
pub fn rule_ports<'a>(policy: &'a EndpointPolicy, rule: &Rule) -> &'a [PortRange] {
    let first = rule.ports.first as usize;
    let end = first.saturating_add(rule.ports.count as usize);
    policy.ports.get(first..end).unwrap_or(&[])
}

/// The WIT package version these bindings were generated from.
pub const WIT_VERSION: &str = "0.1.0";

/// Logs at info level through the host (needs the `log` capability).
pub fn info(message: &str) {
    host_log::log(host_log::Level::Info, message);
}

/// Logs at warn level through the host (needs the `log` capability).
pub fn warn(message: &str) {
    host_log::log(host_log::Level::Warn, message);
}

/// An `invalid-input` error.
pub fn invalid_input(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::InvalidInput, message: message.into() }
}

/// An `unsupported` error.
pub fn unsupported(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::Unsupported, message: message.into() }
}
