//! A loaded plugin: compiled, checked against its grants, ready to
//! instantiate cheaply.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::bindings::v0_1::AnyBackendPre as HostPre;
use crate::capability::Capabilities;
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::grants::{Capability, ImportSummary};
use crate::instance::PluginInstance;
use crate::limits::Limits;
use crate::state::StoreState;

/// What a plugin says about itself, plus what its component imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// `palisade:backend` version it is built against.
    pub wit_version: String,
    /// Capabilities the plugin says it needs (from `info`).
    pub declared_capabilities: Vec<String>,
    /// Capabilities its component really imports.
    pub imported_capabilities: BTreeSet<Capability>,
    pub features: Vec<String>,
    /// SHA-256 of the component.
    pub hash: String,
}

/// A compiled, checked plugin.
pub struct LoadedPlugin {
    pub(crate) engine: PluginEngine,
    name: Arc<str>,
    hash: String,
    imports: ImportSummary,
    pre: HostPre<StoreState>,
    limits: Limits,
    caps: Capabilities,
}

impl LoadedPlugin {
    pub(crate) fn new(
        engine: PluginEngine,
        name: &str,
        component: wasmtime::component::Component,
        hash: String,
        imports: ImportSummary,
        limits: Limits,
        caps: Capabilities,
    ) -> Result<LoadedPlugin, PluginError> {
        let instance_pre = engine.inner.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Compile { plugin: name.to_string(), message: format!("{e:#}") }
        })?;
        let pre = HostPre::new(instance_pre).map_err(|e| PluginError::Compile {
            plugin: name.to_string(),
            message: format!("{e:#}"),
        })?;
        Ok(LoadedPlugin { engine, name: Arc::from(name), hash, imports, pre, limits, caps })
    }

    /// The name the plugin was loaded under (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn imports(&self) -> &ImportSummary {
        &self.imports
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh instance in a fresh store.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(
            &self.pre,
            StoreState::new(self.name.clone(), self.limits.clone(), self.caps.clone()),
            self.engine.inner.tick,
        )
    }

    /// Asks a fresh instance for the plugin's `info`.
    pub fn info(&self) -> Result<PluginInfo, PluginError> {
        let raw = self.instantiate()?.info()?;
        Ok(PluginInfo {
            name: raw.name,
            version: raw.version,
            wit_version: self.imports.wit_version.clone().unwrap_or_default(),
            declared_capabilities: raw.capabilities,
            imported_capabilities: self.imports.capability_set(),
            features: raw.features,
            hash: self.hash.clone(),
        })
    }
}
