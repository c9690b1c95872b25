//! Errors of the plugin host. Every error names the plugin it concerns.

use std::path::PathBuf;
use std::time::Duration;

use crate::grants::Capability;
use crate::limits::LimitKind;

/// The plugin call during which something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Instantiate,
    Info,
    Configure,
    Apply,
    Update,
    Reset,
    Evaluate,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Call::Instantiate => "instantiate",
            Call::Info => "info",
            Call::Configure => "configure",
            Call::Apply => "apply",
            Call::Update => "update",
            Call::Reset => "reset",
            Call::Evaluate => "evaluate",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin file {path}: {message}")]
    Read { path: PathBuf, message: String },

    #[error("plugin `{plugin}`: not a loadable WebAssembly component: {message}")]
    Compile { plugin: String, message: String },

    #[error("plugin `{plugin}`: precompiled artifacts are refused; ship the .wasm component")]
    Precompiled { plugin: String },

    #[error(
        "plugin `{plugin}` imports capability `{capability}` ({import}), which it was not granted; \
         grant it (e.g. --grant {capability}) or use another plugin"
    )]
    UngrantedCapability { plugin: String, capability: Capability, import: String },

    #[error("plugin `{plugin}` imports `{import}`, which this host does not provide")]
    UnknownImport { plugin: String, import: String },

    #[error(
        "plugin `{plugin}` is built for {found}; this host supports {WIT_PACKAGE_NAME}@{supported}"
    )]
    WitVersion { plugin: String, found: String, supported: String },

    #[error("plugin `{plugin}` exports no `{WIT_PACKAGE_NAME}/backend` interface: not a Palisade backend")]
    NotABackend { plugin: String },

    #[error(
        "plugin `{plugin}` broke the {limit} limit during `{call}`; the instance was discarded"
    )]
    Limit { plugin: String, call: Call, limit: LimitKind },

    #[error("plugin `{plugin}` trapped during `{call}`: {message}; the instance was discarded")]
    Trap { plugin: String, call: Call, message: String },

    #[error("plugin `{plugin}` refused `{call}` ({code}): {message}")]
    Backend { plugin: String, call: Call, code: String, message: String },

    #[error(
        "plugin `{plugin}` failed {failures} times in a row; backing off, next attempt in {retry_in:?}"
    )]
    BackingOff { plugin: String, failures: u32, retry_in: Duration },

    #[error("plugin `{plugin}`: delta does not fit the last applied rule set: {message}")]
    Delta { plugin: String, message: String },

    #[error("plugin `{plugin}`: host error: {message}")]
    Host { plugin: String, message: String },
}

const WIT_PACKAGE_NAME: &str = crate::WIT_PACKAGE;

impl PluginError {
    /// True if the error discarded the instance (a trap or a broken limit).
    pub fn is_fatal_to_instance(&self) -> bool {
        matches!(self, PluginError::Limit { .. } | PluginError::Trap { .. })
    }

    /// The limit that was broken, if that is what happened.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            PluginError::Limit { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}
