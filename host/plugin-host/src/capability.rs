//! Capability providers and the host side of the capability interfaces.
//!
//! The host process decides what stands behind each capability: the daemon
//! plugs in the real nftables and eBPF providers of the dataplane; tests plug
//! in recorders. Every call is first charged against the plugin's host-call
//! budget; the provider then checks that the plugin only touches what is its
//! own (its tables, its objects and maps, endpoints by id).

use std::sync::Arc;

use wasmtime::component::HasSelf;

use crate::bindings::v0_1::palisade::backend::{bpf, log, nft, types};
use crate::limits::LimitKind;
use crate::state::StoreState;

/// What stands behind the `nft` capability.
pub trait NftProvider: Send + Sync {
    /// Applies a libnftables JSON batch atomically for `plugin`.
    fn apply_batch(&self, plugin: &str, batch_json: &str) -> Result<(), String>;
    /// Lists one of `plugin`'s tables as JSON.
    fn list_table(&self, plugin: &str, family: &str, name: &str) -> Result<String, String>;
    /// Deletes one of `plugin`'s tables.
    fn delete_table(&self, plugin: &str, family: &str, name: &str) -> Result<(), String>;
}

/// What stands behind the `bpf` capability.
pub trait BpfProvider: Send + Sync {
    fn load(&self, plugin: &str, object: &[u8]) -> Result<u32, String>;
    fn attach(
        &self,
        plugin: &str,
        object: u32,
        program: &str,
        endpoint: u32,
        direction: palisade_model::Direction,
    ) -> Result<u32, String>;
    fn detach(&self, plugin: &str, link: u32) -> Result<(), String>;
    fn map_update(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), String>;
    fn map_delete(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        keys: &[Vec<u8>],
    ) -> Result<(), String>;
    fn unload(&self, plugin: &str, object: u32) -> Result<(), String>;
    /// The host's endpoints as `plugin` is about to see them: all of them
    /// (`full`, a rule set) or the ones a delta upserts and removes. The
    /// provider resolves `attach`'s endpoint ids with them.
    fn endpoints(
        &self,
        _plugin: &str,
        _upserted: &[palisade_model::Endpoint],
        _removed: &[u32],
        _full: bool,
    ) {
    }
    /// `plugin`'s full `apply` succeeded: whatever a former instance or
    /// process left that it did not take over can go.
    fn applied(&self, _plugin: &str) {}
    /// `plugin` was reset: remove whatever it still holds.
    fn release(&self, _plugin: &str) {}
}

/// The provider of a host process that has no dataplane for a capability:
/// every call fails with an error saying so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotProvided;

const NFT_MISSING: &str = "this host process has no nftables dataplane behind the nft capability";
const BPF_MISSING: &str = "this host process has no eBPF dataplane behind the bpf capability";

impl NftProvider for NotProvided {
    fn apply_batch(&self, _: &str, _: &str) -> Result<(), String> {
        Err(NFT_MISSING.into())
    }
    fn list_table(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Err(NFT_MISSING.into())
    }
    fn delete_table(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(NFT_MISSING.into())
    }
}

impl BpfProvider for NotProvided {
    fn load(&self, _: &str, _: &[u8]) -> Result<u32, String> {
        Err(BPF_MISSING.into())
    }
    fn attach(
        &self,
        _: &str,
        _: u32,
        _: &str,
        _: u32,
        _: palisade_model::Direction,
    ) -> Result<u32, String> {
        Err(BPF_MISSING.into())
    }
    fn detach(&self, _: &str, _: u32) -> Result<(), String> {
        Err(BPF_MISSING.into())
    }
    fn map_update(&self, _: &str, _: u32, _: &str, _: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        Err(BPF_MISSING.into())
    }
    fn map_delete(&self, _: &str, _: u32, _: &str, _: &[Vec<u8>]) -> Result<(), String> {
        Err(BPF_MISSING.into())
    }
    fn unload(&self, _: &str, _: u32) -> Result<(), String> {
        Err(BPF_MISSING.into())
    }
}

/// The providers a plugin's capability calls reach.
#[derive(Clone)]
pub struct Capabilities {
    pub nft: Arc<dyn NftProvider>,
    pub bpf: Arc<dyn BpfProvider>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities { nft: Arc::new(NotProvided), bpf: Arc::new(NotProvided) }
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Capabilities { .. }")
    }
}

/// Links every capability interface into `linker`; which of them a plugin
/// may import is decided at load time by its grants.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<StoreState>,
) -> wasmtime::Result<()> {
    crate::bindings::v0_1::AnyBackend::add_to_linker::<StoreState, HasSelf<StoreState>>(
        linker,
        |s| s,
    )
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.charge(message.len())?;
        if message.len() > self.limits.log_message_bytes {
            return Err(self.broke(LimitKind::LogMessage {
                limit: self.limits.log_message_bytes,
                length: message.len(),
            }));
        }
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl nft::Host for StoreState {
    fn apply_batch(&mut self, batch_json: String) -> wasmtime::Result<Result<(), String>> {
        self.charge(batch_json.len())?;
        Ok(self.serve(|c, p| c.nft.apply_batch(p, &batch_json)))
    }

    fn list_table(
        &mut self,
        family: String,
        name: String,
    ) -> wasmtime::Result<Result<String, String>> {
        self.charge(family.len() + name.len())?;
        Ok(self.serve(|c, p| c.nft.list_table(p, &family, &name)))
    }

    fn delete_table(
        &mut self,
        family: String,
        name: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.charge(family.len() + name.len())?;
        Ok(self.serve(|c, p| c.nft.delete_table(p, &family, &name)))
    }
}

fn model_direction(d: types::Direction) -> palisade_model::Direction {
    match d {
        types::Direction::Ingress => palisade_model::Direction::Ingress,
        types::Direction::Egress => palisade_model::Direction::Egress,
    }
}

impl bpf::Host for StoreState {
    fn load(&mut self, object: Vec<u8>) -> wasmtime::Result<Result<u32, String>> {
        self.charge(object.len())?;
        Ok(self.serve(|c, p| c.bpf.load(p, &object)))
    }

    fn attach(
        &mut self,
        obj: u32,
        program: String,
        endpoint: u32,
        direction: types::Direction,
    ) -> wasmtime::Result<Result<u32, String>> {
        self.charge(program.len())?;
        Ok(self.serve(|c, p| c.bpf.attach(p, obj, &program, endpoint, model_direction(direction))))
    }

    fn detach(&mut self, link: u32) -> wasmtime::Result<Result<(), String>> {
        self.charge(0)?;
        Ok(self.serve(|c, p| c.bpf.detach(p, link)))
    }

    fn map_update(
        &mut self,
        obj: u32,
        map_name: String,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), String>> {
        let bytes = map_name.len() + entries.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.charge(bytes)?;
        Ok(self.serve(|c, p| c.bpf.map_update(p, obj, &map_name, &entries)))
    }

    fn map_delete(
        &mut self,
        obj: u32,
        map_name: String,
        keys: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.charge(map_name.len() + keys.iter().map(Vec::len).sum::<usize>())?;
        Ok(self.serve(|c, p| c.bpf.map_delete(p, obj, &map_name, &keys)))
    }

    fn unload(&mut self, obj: u32) -> wasmtime::Result<Result<(), String>> {
        self.charge(0)?;
        Ok(self.serve(|c, p| c.bpf.unload(p, obj)))
    }
}
