//! The host's `bpf` capability: what stands behind `palisade:backend/bpf`.
//!
//! [`BpfDataplane`] implements [`palisade_plugin_host::BpfProvider`] with
//! aya. Its rules, checked on every call:
//!
//! - only plugins named in its grant may use it at all;
//! - an object holds TC classifier programs only (anything else is refused
//!   before a program reaches the verifier); a plugin has one object at a
//!   time: loading again replaces (unloads) its previous one, so a plugin
//!   restarted by the supervisor cannot leave programs of its former self
//!   attached;
//! - handles are the plugin's own: another plugin's object or link is
//!   unknown to it;
//! - attach names an endpoint by id: the host's [`EndpointTable`] gives its
//!   addresses and the node namespace's host route of an address gives the
//!   node-side interface (see [`endpoints`]); the endpoint's ingress is TC
//!   egress of that interface, its egress TC ingress; attached with TCX
//!   inside the node namespace, the link kept here while the host runs;
//! - map writes reach only maps of the plugin's own object, of a writable
//!   type (hash, LRU hash, LPM trie, array), with keys and values of exactly
//!   the map's sizes, at most [`BpfLimits::max_batch`] entries a call;
//! - [`BpfDataplane::release`] (the host's reset) and drop remove every
//!   program, link and map.

pub mod endpoints;
mod syscall;

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use aya::maps::{Map, MapData};
use aya::programs::tc::{SchedClassifierLinkId, TcAttachType};
use aya::programs::{Program, SchedClassifier};
use aya::Ebpf;
use palisade_model::Direction;
use palisade_plugin_host::BpfProvider;

pub use endpoints::EndpointTable;

/// Why a capability call failed. The plugin receives the `Display` text.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf capability: plugin `{plugin}` is not granted the eBPF dataplane")]
    NotGranted { plugin: String },
    #[error("bpf capability: plugin `{plugin}`: object of {size} bytes refused (limit {limit})")]
    ObjectTooLarge { plugin: String, size: usize, limit: usize },
    #[error("bpf capability: plugin `{plugin}`: object refused: {reason}")]
    BadObject { plugin: String, reason: String },
    #[error(
        "bpf capability: plugin `{plugin}`: program `{program}` refused by the kernel: {reason}"
    )]
    Load { plugin: String, program: String, reason: String },
    #[error("bpf capability: plugin `{plugin}`: no object {handle} of this plugin")]
    UnknownObject { plugin: String, handle: u32 },
    #[error("bpf capability: plugin `{plugin}`: no link {handle} of this plugin")]
    UnknownLink { plugin: String, handle: u32 },
    #[error("bpf capability: plugin `{plugin}`: object {handle} has no TC program `{program}`")]
    UnknownProgram { plugin: String, handle: u32, program: String },
    #[error("bpf capability: plugin `{plugin}`: endpoint {endpoint}: {reason}")]
    Endpoint { plugin: String, endpoint: u32, reason: String },
    #[error("bpf capability: plugin `{plugin}`: attach `{program}` to {interface} ({direction}): {reason}")]
    Attach { plugin: String, program: String, interface: String, direction: String, reason: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` is not a map of its object {handle} (its maps: {own})")]
    NotOwnMap { plugin: String, handle: u32, map: String, own: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` ({kind}) cannot be written through the capability")]
    MapType { plugin: String, map: String, kind: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` entry {index}: {field} of {got} bytes, the map's is {want}")]
    EntrySize {
        plugin: String,
        map: String,
        index: usize,
        field: &'static str,
        got: usize,
        want: usize,
    },
    #[error("bpf capability: plugin `{plugin}`: map `{map}`: batch of {entries} entries refused (limit {limit})")]
    BatchTooLarge { plugin: String, map: String, entries: usize, limit: usize },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` entry {index}: {reason}")]
    MapWrite { plugin: String, map: String, index: usize, reason: String },
    #[error("bpf capability: plugin `{plugin}`: {reason}")]
    Internal { plugin: String, reason: String },
}

/// Bounds on what one plugin may ask of the dataplane.
#[derive(Debug, Clone, Copy)]
pub struct BpfLimits {
    /// Size of an object file.
    pub max_object_bytes: usize,
    /// Entries in one `map-update` or `map-delete`.
    pub max_batch: usize,
}

impl Default for BpfLimits {
    fn default() -> Self {
        BpfLimits { max_object_bytes: 4 << 20, max_batch: 65_536 }
    }
}

/// Counters of one dataplane (all plugins together).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BpfStats {
    pub objects_loaded: u64,
    pub links_attached: u64,
    pub entries_written: u64,
    pub entries_deleted: u64,
    pub refused: u64,
}

/// A map of a loaded object: its kernel-side shape.
struct OwnMap {
    kind: &'static str,
    key_size: usize,
    value_size: usize,
}

struct Object {
    plugin: String,
    ebpf: Ebpf,
    maps: HashMap<String, OwnMap>,
}

struct Link {
    plugin: String,
    object: u32,
    program: String,
    id: SchedClassifierLinkId,
}

#[derive(Default)]
struct State {
    next: u32,
    objects: HashMap<u32, Object>,
    links: HashMap<u32, Link>,
    stats: BpfStats,
}

/// The `bpf` capability on one node namespace, for the plugins of a grant.
pub struct BpfDataplane {
    netns: Option<PathBuf>,
    plugins: BTreeSet<String>,
    endpoints: EndpointTable,
    limits: BpfLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for BpfDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfDataplane")
            .field("netns", &self.netns)
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

fn writable_kind(map: &Map) -> Option<(&'static str, &MapData)> {
    match map {
        Map::HashMap(d) => Some(("hash", d)),
        Map::LruHashMap(d) => Some(("lru hash", d)),
        Map::LpmTrie(d) => Some(("lpm trie", d)),
        Map::Array(d) => Some(("array", d)),
        _ => None,
    }
}

impl BpfDataplane {
    /// Acts in `netns` (`None`: the process's own namespace) for `plugins`.
    pub fn new(netns: Option<PathBuf>, plugins: &[&str], limits: BpfLimits) -> BpfDataplane {
        BpfDataplane {
            netns,
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
            endpoints: EndpointTable::new(),
            limits,
            state: Mutex::new(State::default()),
        }
    }

    pub fn endpoints(&self) -> &EndpointTable {
        &self.endpoints
    }

    pub fn stats(&self) -> BpfStats {
        self.state.lock().map(|s| s.stats).unwrap_or_default()
    }

    /// How many objects and links are held (all plugins).
    pub fn held(&self) -> (usize, usize) {
        self.state.lock().map(|s| (s.objects.len(), s.links.len())).unwrap_or_default()
    }

    fn lock(&self, plugin: &str) -> Result<std::sync::MutexGuard<'_, State>, BpfError> {
        if !self.plugins.contains(plugin) {
            return Err(BpfError::NotGranted { plugin: plugin.into() });
        }
        self.state.lock().map_err(|_| BpfError::Internal {
            plugin: plugin.into(),
            reason: "the dataplane's state is poisoned".into(),
        })
    }

    fn refused<T>(&self, e: BpfError) -> Result<T, BpfError> {
        if let Ok(mut s) = self.state.lock() {
            s.stats.refused += 1;
        }
        tracing::warn!(error = %e, "bpf call refused");
        Err(e)
    }

    /// Loads `plugin`'s object (replacing its previous one).
    pub fn load_object(&self, plugin: &str, object: &[u8]) -> Result<u32, BpfError> {
        let result = self.load_inner(plugin, object);
        match result {
            Err(e) => self.refused(e),
            ok => ok,
        }
    }

    fn load_inner(&self, plugin: &str, object: &[u8]) -> Result<u32, BpfError> {
        let started = Instant::now();
        let mut state = self.lock(plugin)?;
        if object.len() > self.limits.max_object_bytes {
            return Err(BpfError::ObjectTooLarge {
                plugin: plugin.into(),
                size: object.len(),
                limit: self.limits.max_object_bytes,
            });
        }
        let bad = |reason: String| BpfError::BadObject { plugin: plugin.into(), reason };
        // Only TC classifiers: check the ELF's programs before creating maps.
        let parsed = aya_obj_programs(object).map_err(bad)?;
        if let Some(other) = parsed.iter().find(|(_, tc)| !tc) {
            return Err(bad(format!(
                "program `{}` is not a TC classifier (only `classifier/...` sections are allowed)",
                other.0
            )));
        }
        if parsed.is_empty() {
            return Err(bad("no program".into()));
        }
        // One object per plugin: the previous one goes first.
        let previous: Vec<u32> =
            state.objects.iter().filter(|(_, o)| o.plugin == plugin).map(|(h, _)| *h).collect();
        for handle in previous {
            remove_object(&mut state, handle);
        }
        let mut ebpf = Ebpf::load(object).map_err(|e| bad(e.to_string()))?;
        for (name, program) in ebpf.programs_mut() {
            let Program::SchedClassifier(tc) = program else {
                return Err(bad(format!("program `{name}` is not a TC classifier")));
            };
            tc.load().map_err(|e| BpfError::Load {
                plugin: plugin.into(),
                program: name.to_string(),
                reason: verifier_text(&e),
            })?;
        }
        let mut maps = HashMap::new();
        for (name, map) in ebpf.maps() {
            let Some((kind, data)) = writable_kind(map) else {
                maps.insert(name.to_string(), OwnMap { kind: "other", key_size: 0, value_size: 0 });
                continue;
            };
            let info = data.info().map_err(|e| bad(format!("map `{name}`: {e}")))?;
            maps.insert(
                name.to_string(),
                OwnMap {
                    kind,
                    key_size: info.key_size() as usize,
                    value_size: info.value_size() as usize,
                },
            );
        }
        state.next = state.next.wrapping_add(1).max(1);
        let handle = state.next;
        state.objects.insert(handle, Object { plugin: plugin.into(), ebpf, maps });
        state.stats.objects_loaded += 1;
        tracing::info!(
            plugin,
            handle,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "bpf object loaded"
        );
        Ok(handle)
    }

    /// The node-side interface of endpoint `endpoint`.
    fn interface_of(&self, plugin: &str, endpoint: u32) -> Result<String, BpfError> {
        let fail = |reason: String| BpfError::Endpoint { plugin: plugin.into(), endpoint, reason };
        let addresses = self
            .endpoints
            .addresses(endpoint)
            .ok_or_else(|| fail("not an endpoint of this host".into()))?;
        if addresses.is_empty() {
            return Err(fail("the endpoint has no IPv4 address".into()));
        }
        let routes = match &self.netns {
            None => endpoints::routes_here(),
            Some(path) => palisade_netns::run_in(path, endpoints::routes_here)
                .map_err(|e| fail(e.to_string()))?,
        }
        .map_err(|e| fail(format!("routes: {e}")))?;
        addresses
            .iter()
            .find_map(|a| endpoints::host_route_device(&routes, *a))
            .map(str::to_string)
            .ok_or_else(|| {
                fail(format!(
                    "no host route (/32, no gateway) for {addresses:?} in the node namespace"
                ))
            })
    }

    /// Attaches `program` of `plugin`'s object to endpoint `endpoint`.
    pub fn attach_program(
        &self,
        plugin: &str,
        object: u32,
        program: &str,
        endpoint: u32,
        direction: Direction,
    ) -> Result<u32, BpfError> {
        match self.attach_inner(plugin, object, program, endpoint, direction) {
            Err(e) => self.refused(e),
            ok => ok,
        }
    }

    fn attach_inner(
        &self,
        plugin: &str,
        object: u32,
        program: &str,
        endpoint: u32,
        direction: Direction,
    ) -> Result<u32, BpfError> {
        let started = Instant::now();
        let mut state = self.lock(plugin)?;
        owned(&state, plugin, object)?;
        let interface = self.interface_of(plugin, endpoint)?;
        let (attach_type, hook) = match direction {
            Direction::Ingress => (TcAttachType::Egress, "tc egress"),
            Direction::Egress => (TcAttachType::Ingress, "tc ingress"),
        };
        let fail = |reason: String| BpfError::Attach {
            plugin: plugin.into(),
            program: program.into(),
            interface: interface.clone(),
            direction: hook.into(),
            reason,
        };
        let obj = state
            .objects
            .get_mut(&object)
            .ok_or_else(|| BpfError::UnknownObject { plugin: plugin.into(), handle: object })?;
        let tc: &mut SchedClassifier =
            obj.ebpf.program_mut(program).and_then(|p| p.try_into().ok()).ok_or_else(|| {
                BpfError::UnknownProgram {
                    plugin: plugin.into(),
                    handle: object,
                    program: program.into(),
                }
            })?;
        let id = match &self.netns {
            None => tc.attach(&interface, attach_type).map_err(|e| e.to_string()),
            Some(path) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        palisade_netns::enter(path).map_err(|e| e.to_string())?;
                        tc.attach(&interface, attach_type).map_err(|e| e.to_string())
                    })
                    .join()
                    .unwrap_or_else(|_| Err("the attaching thread panicked".into()))
            }),
        }
        .map_err(fail)?;
        state.next = state.next.wrapping_add(1).max(1);
        let handle = state.next;
        state
            .links
            .insert(handle, Link { plugin: plugin.into(), object, program: program.into(), id });
        state.stats.links_attached += 1;
        tracing::info!(
            plugin,
            program,
            endpoint,
            %interface,
            hook,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "bpf program attached"
        );
        Ok(handle)
    }

    /// Detaches one of `plugin`'s links.
    pub fn detach_link(&self, plugin: &str, link: u32) -> Result<(), BpfError> {
        let mut state = self.lock(plugin)?;
        if state.links.get(&link).is_none_or(|l| l.plugin != plugin) {
            drop(state);
            return self.refused(BpfError::UnknownLink { plugin: plugin.into(), handle: link });
        }
        remove_link(&mut state, link);
        Ok(())
    }

    /// Checks a batch against the map's definition; the map's data.
    fn checked_map<'s>(
        &self,
        state: &'s mut State,
        plugin: &str,
        object: u32,
        map: &str,
        entries: usize,
    ) -> Result<(&'s OwnMap, &'s MapData), BpfError> {
        owned(state, plugin, object)?;
        let obj = state
            .objects
            .get(&object)
            .ok_or_else(|| BpfError::UnknownObject { plugin: plugin.into(), handle: object })?;
        let not_own = || BpfError::NotOwnMap {
            plugin: plugin.into(),
            handle: object,
            map: map.into(),
            own: {
                let mut names: Vec<&str> = obj.maps.keys().map(String::as_str).collect();
                names.sort_unstable();
                names.join(", ")
            },
        };
        let shape = obj.maps.get(map).ok_or_else(not_own)?;
        let data =
            obj.ebpf.map(map).and_then(|m| writable_kind(m).map(|(_, d)| d)).ok_or_else(|| {
                BpfError::MapType {
                    plugin: plugin.into(),
                    map: map.into(),
                    kind: shape.kind.into(),
                }
            })?;
        if entries > self.limits.max_batch {
            return Err(BpfError::BatchTooLarge {
                plugin: plugin.into(),
                map: map.into(),
                entries,
                limit: self.limits.max_batch,
            });
        }
        Ok((shape, data))
    }

    /// Writes entries into one of `plugin`'s maps.
    pub fn update_map(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), BpfError> {
        let mut state = self.lock(plugin)?;
        let result = (|| {
            let (shape, data) = self.checked_map(&mut state, plugin, object, map, entries.len())?;
            let size = |index, field, got: usize, want| {
                if got == want {
                    Ok(())
                } else {
                    Err(BpfError::EntrySize {
                        plugin: plugin.into(),
                        map: map.into(),
                        index,
                        field,
                        got,
                        want,
                    })
                }
            };
            for (index, (k, v)) in entries.iter().enumerate() {
                size(index, "key", k.len(), shape.key_size)?;
                size(index, "value", v.len(), shape.value_size)?;
            }
            let fd = data.fd().as_fd();
            for (index, (k, v)) in entries.iter().enumerate() {
                syscall::update(fd, k, v).map_err(|e| BpfError::MapWrite {
                    plugin: plugin.into(),
                    map: map.into(),
                    index,
                    reason: e.to_string(),
                })?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                state.stats.entries_written += entries.len() as u64;
                Ok(())
            }
            Err(e) => {
                drop(state);
                self.refused(e)
            }
        }
    }

    /// Deletes entries of one of `plugin`'s maps (missing keys are ignored).
    pub fn delete_from_map(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        keys: &[Vec<u8>],
    ) -> Result<(), BpfError> {
        let mut state = self.lock(plugin)?;
        let result = (|| {
            let (shape, data) = self.checked_map(&mut state, plugin, object, map, keys.len())?;
            if let Some((index, k)) =
                keys.iter().enumerate().find(|(_, k)| k.len() != shape.key_size)
            {
                return Err(BpfError::EntrySize {
                    plugin: plugin.into(),
                    map: map.into(),
                    index,
                    field: "key",
                    got: k.len(),
                    want: shape.key_size,
                });
            }
            let fd = data.fd().as_fd();
            for (index, k) in keys.iter().enumerate() {
                syscall::delete(fd, k).map_err(|e| BpfError::MapWrite {
                    plugin: plugin.into(),
                    map: map.into(),
                    index,
                    reason: e.to_string(),
                })?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                state.stats.entries_deleted += keys.len() as u64;
                Ok(())
            }
            Err(e) => {
                drop(state);
                self.refused(e)
            }
        }
    }

    /// Unloads one of `plugin`'s objects with its links and maps.
    pub fn unload_object(&self, plugin: &str, object: u32) -> Result<(), BpfError> {
        let mut state = self.lock(plugin)?;
        if let Err(e) = owned(&state, plugin, object) {
            drop(state);
            return self.refused(e);
        }
        remove_object(&mut state, object);
        tracing::info!(plugin, handle = object, "bpf object unloaded");
        Ok(())
    }

    /// Removes every object, link and map of `plugin` (the host's reset).
    pub fn release(&self, plugin: &str) {
        if let Ok(mut state) = self.state.lock() {
            let handles: Vec<u32> =
                state.objects.iter().filter(|(_, o)| o.plugin == plugin).map(|(h, _)| *h).collect();
            for h in handles {
                remove_object(&mut state, h);
            }
        }
    }

    /// Removes everything of every plugin.
    pub fn release_all(&self) {
        if let Ok(mut state) = self.state.lock() {
            let handles: Vec<u32> = state.objects.keys().copied().collect();
            for h in handles {
                remove_object(&mut state, h);
            }
        }
    }
}

impl Drop for BpfDataplane {
    fn drop(&mut self) {
        self.release_all();
    }
}

fn owned(state: &State, plugin: &str, object: u32) -> Result<(), BpfError> {
    match state.objects.get(&object) {
        Some(o) if o.plugin == plugin => Ok(()),
        _ => Err(BpfError::UnknownObject { plugin: plugin.into(), handle: object }),
    }
}

fn remove_link(state: &mut State, link: u32) {
    let Some(l) = state.links.remove(&link) else { return };
    if let Some(obj) = state.objects.get_mut(&l.object) {
        if let Some(Ok(tc)) = obj.ebpf.program_mut(&l.program).map(<&mut SchedClassifier>::try_from)
        {
            if let Err(e) = tc.detach(l.id) {
                tracing::warn!(plugin = %l.plugin, program = %l.program, error = %e, "bpf detach");
            }
        }
    }
}

/// Detaches the object's links, then drops it (programs and maps close
/// with their file descriptors).
fn remove_object(state: &mut State, object: u32) {
    let links: Vec<u32> =
        state.links.iter().filter(|(_, l)| l.object == object).map(|(h, _)| *h).collect();
    for l in links {
        remove_link(state, l);
    }
    state.objects.remove(&object);
}

/// The programs of an ELF object: (section, is a TC classifier).
fn aya_obj_programs(object: &[u8]) -> Result<Vec<(String, bool)>, String> {
    let obj = aya_obj::Object::parse(object).map_err(|e| e.to_string())?;
    Ok(obj
        .programs
        .iter()
        .map(|(name, p)| {
            (name.clone(), matches!(p.section, aya_obj::ProgramSection::SchedClassifier))
        })
        .collect())
}

fn verifier_text(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            format!("{io_error}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
        }
        other => other.to_string(),
    }
}

impl BpfProvider for BpfDataplane {
    fn load(&self, plugin: &str, object: &[u8]) -> Result<u32, String> {
        self.load_object(plugin, object).map_err(|e| e.to_string())
    }
    fn attach(
        &self,
        plugin: &str,
        object: u32,
        program: &str,
        endpoint: u32,
        direction: Direction,
    ) -> Result<u32, String> {
        self.attach_program(plugin, object, program, endpoint, direction).map_err(|e| e.to_string())
    }
    fn detach(&self, plugin: &str, link: u32) -> Result<(), String> {
        self.detach_link(plugin, link).map_err(|e| e.to_string())
    }
    fn map_update(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), String> {
        self.update_map(plugin, object, map, entries).map_err(|e| e.to_string())
    }
    fn map_delete(
        &self,
        plugin: &str,
        object: u32,
        map: &str,
        keys: &[Vec<u8>],
    ) -> Result<(), String> {
        self.delete_from_map(plugin, object, map, keys).map_err(|e| e.to_string())
    }
    fn unload(&self, plugin: &str, object: u32) -> Result<(), String> {
        self.unload_object(plugin, object).map_err(|e| e.to_string())
    }
    fn endpoints(
        &self,
        plugin: &str,
        upserted: &[palisade_model::Endpoint],
        removed: &[u32],
        full: bool,
    ) {
        if self.plugins.contains(plugin) {
            self.endpoints.record(upserted, removed, full);
        }
    }
    fn release(&self, plugin: &str) {
        BpfDataplane::release(self, plugin);
    }
}
