//! The Palisade plugin host: runs backend plugins, WebAssembly components of
//! the `palisade:backend` WIT package, in a sandbox.
//!
//! * [`PluginEngine`]: one wasmtime engine with a fixed configuration, an
//!   epoch ticker for CPU deadlines, and a precompile cache keyed by the
//!   component's hash.
//! * [`PluginEngine::load`] → [`LoadedPlugin`]: a compiled component whose
//!   imports were checked against the operator's [`Grants`] (a plugin importing
//!   an ungranted capability is refused here, before it ever runs).
//! * [`Supervisor`]: a persistent instance of one plugin with recovery: after a
//!   trap or a broken limit it makes a fresh instance, re-applies the last good
//!   rule set, and backs off on repeated failure.
//! * [`Limits`]: memory, CPU deadline and host-call budgets per call.
//! * Capabilities (`log`, `nft`, `bpf`) are served by [`capability`] providers
//!   that the embedding process supplies.

pub mod bindings;
mod cache;
pub mod capability;
mod engine;
mod error;
mod grants;
mod instance;
mod limits;
mod plugin;
mod state;
mod supervisor;

pub mod discovery;

pub use capability::{BpfProvider, Capabilities, NftProvider};
pub use engine::{Described, EngineOptions, PluginEngine};
pub use error::{Call, PluginError};
pub use grants::{Capability, Grants, ImportSummary};
pub use instance::PluginInstance;
pub use limits::{LimitKind, Limits};
pub use plugin::{LoadedPlugin, PluginInfo};
pub use supervisor::{Backoff, Supervisor, SupervisorStatus};

/// The WIT package version this host speaks.
pub const WIT_PACKAGE: &str = "palisade:backend";
/// Versions of [`WIT_PACKAGE`] this host has bindings for.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];
