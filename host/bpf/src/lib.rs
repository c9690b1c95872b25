//! The host's `bpf` capability: what stands behind `palisade:backend/bpf`.
//!
//! [`BpfDataplane`] implements [`palisade_plugin_host::BpfProvider`] with
//! aya. Its rules, checked on every call:
//!
//! - only plugins named in its grant may use it at all;
//! - an object holds TC classifier programs only (anything else is refused
//!   before a program reaches the verifier); a plugin has one object at a
//!   time: loading again replaces its previous one;
//! - handles are the plugin's own: another plugin's object or link is
//!   unknown to it;
//! - attach names an endpoint by id: the host's [`EndpointTable`] gives its
//!   addresses and the node namespace's host route of an address gives the
//!   node-side interface (see [`endpoints`]); the endpoint's ingress is TC
//!   egress of that interface, its egress TC ingress; attached with TCX
//!   inside the node namespace;
//! - map writes reach only maps of the plugin's own object, of a writable
//!   type (hash, LRU hash, LPM trie, array), with keys and values of exactly
//!   the map's sizes, at most [`BpfLimits::max_batch`] entries a call;
//! - [`BpfDataplane::release`] (the host's reset) removes every program,
//!   link and map of the plugin, pinned or not.
//!
//! **Pinned** ([`BpfDataplane::pinned`], what `palisade run` uses): maps,
//! programs and links live under bpffs ([`pins`]) and stay in force when
//! the process ends, however it ends. A plugin's object loaded again (by a
//! fresh instance after a trap, or by the next process) finds its maps
//! pinned and takes over its links: attaching to an interface and hook that
//! has a link swaps the program inside it atomically; the plugin's full
//! apply rewrites every entry it wants, and when it ends
//! ([`BpfDataplane::applied`]) the entries it did not write, the links it
//! did not claim and the generations of other objects are removed. An
//! object with other bytes (an upgrade) gets fresh maps, filled by the
//! plugin before its attaches swap the links over; the connection tracking
//! (LRU maps) of the old generation is copied across. **Unpinned** (the
//! lab backend, tests): everything is removed with the dataplane, and
//! loading again unloads the previous object first.

mod carry;
pub mod endpoints;
mod error;
mod maps;
mod object;
pub mod pins;
mod syscall;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use aya::programs::links::FdLink;
use aya::programs::tc::SchedClassifierLink;
use aya::programs::SchedClassifier;
use palisade_model::Direction;
use palisade_plugin_host::BpfProvider;

use carry::{Carry, Held, Link};
pub use endpoints::EndpointTable;
pub use error::{BpfError, BpfLimits, BpfStats};
use object::Object;
use pins::PluginPins;
pub use pins::{Hook, Pinning};

#[derive(Default)]
pub(crate) struct State {
    next: u32,
    objects: HashMap<u32, Object>,
    links: HashMap<u32, Link>,
    carry: HashMap<String, Carry>,
    stats: BpfStats,
}

/// Pinning of one dataplane: the configuration and its node namespace.
#[derive(Debug, Clone)]
struct Pins {
    pinning: Pinning,
    netns_id: u64,
}

/// The `bpf` capability on one node namespace, for the plugins of a grant.
pub struct BpfDataplane {
    netns: Option<PathBuf>,
    plugins: BTreeSet<String>,
    endpoints: EndpointTable,
    limits: BpfLimits,
    pins: Option<Pins>,
    state: Mutex<State>,
}

impl std::fmt::Debug for BpfDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfDataplane")
            .field("netns", &self.netns)
            .field("plugins", &self.plugins)
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

impl BpfDataplane {
    /// Acts in `netns` (`None`: the process's own namespace) for `plugins`;
    /// nothing pinned: everything goes with the dataplane.
    pub fn new(netns: Option<PathBuf>, plugins: &[&str], limits: BpfLimits) -> BpfDataplane {
        BpfDataplane {
            netns,
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
            endpoints: EndpointTable::new(),
            limits,
            pins: None,
            state: Mutex::new(State::default()),
        }
    }

    /// The same, with the plugins' state pinned under `pinning.root`
    /// (mounting bpffs on /sys/fs/bpf if the node has none there): it
    /// outlives the dataplane and the process, and the next one adopts it.
    pub fn pinned(
        netns: Option<PathBuf>,
        plugins: &[&str],
        limits: BpfLimits,
        pinning: Pinning,
    ) -> Result<BpfDataplane, String> {
        pins::ensure_bpffs(&pinning.root)?;
        let netns_id = pins::netns_id(netns.as_deref())
            .map_err(|e| format!("the node namespace's identity: {e}"))?;
        let mut dp = BpfDataplane::new(netns, plugins, limits);
        dp.pins = Some(Pins { pinning, netns_id });
        Ok(dp)
    }

    /// Where `plugin`'s state is pinned (pinned dataplanes).
    pub fn pin_dir(&self, plugin: &str) -> Option<PathBuf> {
        self.plugin_pins(plugin).map(|p| p.dir)
    }

    fn plugin_pins(&self, plugin: &str) -> Option<PluginPins> {
        self.pins.as_ref().map(|p| PluginPins::new(&p.pinning, p.netns_id, plugin))
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
        let elf = object::parse(object).map_err(bad)?;
        if let Some(other) = elf.programs.iter().find(|(_, tc)| !tc) {
            return Err(bad(format!(
                "program `{}` is not a TC classifier (only `classifier/...` sections are allowed)",
                other.0
            )));
        }
        if elf.programs.is_empty() {
            return Err(bad("no program".into()));
        }
        let pins = self.plugin_pins(plugin);
        let pin_fail = |path: &std::path::Path, reason: String| BpfError::Pins {
            plugin: plugin.into(),
            path: path.display().to_string(),
            reason,
        };
        let generation = match &pins {
            Some(pp) => {
                let g = pp.generation(&pins::digest(object));
                pp.create().map_err(|e| pin_fail(&pp.dir, format!("creating it: {e}")))?;
                std::fs::create_dir_all(&g)
                    .map_err(|e| pin_fail(&g, format!("creating it: {e}")))?;
                Some(g)
            }
            None => None,
        };
        // One object per plugin. Pinned: the previous one's links are
        // carried over to the new object (they keep enforcing until it
        // swaps its programs in); unpinned: it goes first.
        let previous: Vec<u32> =
            state.objects.iter().filter(|(_, o)| o.plugin == plugin).map(|(h, _)| *h).collect();
        for handle in previous {
            if pins.is_some() {
                retire_object(&mut state, handle, generation.as_deref());
            } else {
                remove_object(&mut state, handle);
            }
        }
        let (mut ebpf, adopted) = object::create(object, &elf, generation.as_deref()).map_err(
            |reason| match &generation {
                Some(g) => pin_fail(g, reason),
                None => bad(reason),
            },
        )?;
        object::load_programs(&mut ebpf).map_err(|(program, reason)| BpfError::Load {
            plugin: plugin.into(),
            program,
            reason,
        })?;
        let maps = object::own_maps(&ebpf).map_err(bad)?;
        if let (true, Some(g)) = (adopted, &generation) {
            object::check_adopted(&maps, &elf, g).map_err(|e| pin_fail(g, e))?;
        }
        let mut obj = Object {
            plugin: plugin.into(),
            ebpf,
            maps,
            generation: generation.clone(),
            claims: adopted.then(HashMap::new),
        };
        let mut taken = 0;
        let mut flows = 0;
        if let (Some(pp), Some(g)) = (&pins, &generation) {
            object::pin_programs(&mut obj.ebpf, g).map_err(|e| pin_fail(g, e))?;
            let carry = state.carry.entry(plugin.to_string()).or_default();
            taken = carry.take_pinned_links(pp);
            for old in pp.other_generations(g) {
                if !carry.retiring.contains(&old) {
                    carry.retiring.push(old);
                }
            }
            for old in &carry.retiring {
                flows += carry::copy_flows(&obj, old);
            }
        }
        state.next = state.next.wrapping_add(1).max(1);
        let handle = state.next;
        state.objects.insert(handle, obj);
        state.stats.objects_loaded += 1;
        state.stats.flows_copied += flows as u64;
        tracing::info!(
            plugin,
            handle,
            adopted,
            pinned_links_found = taken,
            flows_copied = flows,
            generation = ?generation,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "bpf object loaded"
        );
        Ok(handle)
    }

    /// Runs `f` in the node namespace.
    fn in_netns<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, String> {
        match &self.netns {
            None => Ok(f()),
            Some(path) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        palisade_netns::enter(path).map_err(|e| e.to_string())?;
                        Ok(f())
                    })
                    .join()
                    .unwrap_or_else(|_| Err("the thread in the node namespace panicked".into()))
            }),
        }
    }

    /// The node-side interface of endpoint `endpoint`, and its index: one
    /// visit to the node namespace reads its routes and the index.
    fn interface_of(&self, plugin: &str, endpoint: u32) -> Result<(String, u32), BpfError> {
        let fail = |reason: String| BpfError::Endpoint { plugin: plugin.into(), endpoint, reason };
        let addresses = self
            .endpoints
            .addresses(endpoint)
            .ok_or_else(|| fail("not an endpoint of this host".into()))?;
        if addresses.is_empty() {
            return Err(fail("the endpoint has no IPv4 address".into()));
        }
        let lookup = move || -> Result<(String, u32), String> {
            let routes = endpoints::routes_here().map_err(|e| format!("routes: {e}"))?;
            let device = addresses
                .iter()
                .find_map(|a| endpoints::host_route_device(&routes, *a))
                .map(str::to_string)
                .ok_or_else(|| {
                    format!(
                        "no host route (/32, no gateway) for {addresses:?} in the node namespace"
                    )
                })?;
            let index = nix::net::if_::if_nametoindex(device.as_str())
                .map_err(|e| format!("interface index of {device}: {e}"))?;
            Ok((device, index))
        };
        match &self.netns {
            None => lookup(),
            Some(path) => palisade_netns::run_in(path, lookup).map_err(|e| fail(e.to_string()))?,
        }
        .map_err(fail)
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
        let (interface, ifindex) = self.interface_of(plugin, endpoint)?;
        let hook = match direction {
            Direction::Ingress => Hook::TcEgress,
            Direction::Egress => Hook::TcIngress,
        };
        let fail = |reason: String| BpfError::Attach {
            plugin: plugin.into(),
            program: program.into(),
            interface: interface.clone(),
            direction: hook.name().into(),
            reason,
        };
        let inherited =
            state.carry.get_mut(plugin).and_then(|c| c.inherited.remove(&(ifindex, hook)));
        let link_pin = self.plugin_pins(plugin).map(|p| p.link(ifindex, hook));
        let State { objects, .. } = &mut *state;
        let obj = objects
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
        // A link at this interface and hook from a former object or
        // process: the program inside it is replaced atomically.
        let swapped = inherited.and_then(|i| {
            let swap = SchedClassifierLink::try_from(i.link)
                .map_err(|e| e.to_string())
                .and_then(|l| tc.attach_to_link(l).map_err(|e| e.to_string()))
                .and_then(|id| tc.take_link(id).map_err(|e| e.to_string()))
                .and_then(|l| FdLink::try_from(l).map_err(|e| e.to_string()));
            match swap {
                Ok(link) => Some(Held::Pinned { link, path: i.path }),
                Err(e) => {
                    tracing::warn!(plugin, %interface, hook = hook.name(), error = %e, "pinned link not taken over; attaching anew");
                    carry::remove_pin(&i.path);
                    None
                }
            }
        });
        let adopted = swapped.is_some();
        let held = match swapped {
            Some(h) => h,
            None => {
                let attach_type = hook.attach_type();
                let id = {
                    let name = interface.clone();
                    let tc = &mut *tc;
                    self.in_netns(move || tc.attach(&name, attach_type).map_err(|e| e.to_string()))
                        .map_err(&fail)?
                        .map_err(&fail)?
                };
                let link = tc.take_link(id).map_err(|e| fail(e.to_string()))?;
                match &link_pin {
                    None => Held::Owned(link),
                    Some(path) => {
                        let fd = FdLink::try_from(link).map_err(|e| {
                            fail(format!("pinning needs a TCX link (kernel 6.6 or later): {e}"))
                        })?;
                        carry::remove_pin(path);
                        let pinned = fd.pin(path).map_err(|e| fail(format!("pin: {e}")))?;
                        Held::Pinned { link: pinned.into(), path: path.clone() }
                    }
                }
            }
        };
        state.next = state.next.wrapping_add(1).max(1);
        let handle = state.next;
        state.links.insert(handle, Link { plugin: plugin.into(), object, ifindex, hook, held });
        if adopted {
            state.stats.links_adopted += 1;
        } else {
            state.stats.links_attached += 1;
        }
        tracing::info!(
            plugin,
            program,
            endpoint,
            %interface,
            hook = hook.name(),
            adopted,
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

    /// Unloads one of `plugin`'s objects with its links and maps.
    pub fn unload_object(&self, plugin: &str, object: u32) -> Result<(), BpfError> {
        let mut state = self.lock(plugin)?;
        if let Err(e) = owned(&state, plugin, object) {
            drop(state);
            return self.refused(e);
        }
        let generation = state.objects.get(&object).and_then(|o| o.generation.clone());
        remove_object(&mut state, object);
        if let Some(g) = generation {
            pins::remove_tree(&g);
        }
        tracing::info!(plugin, handle = object, "bpf object unloaded");
        Ok(())
    }

    /// `plugin`'s full apply succeeded: what its former self left and it
    /// did not take over goes (stale entries of adopted maps, unclaimed
    /// links, retiring generations after a last copy of their connection
    /// tracking).
    pub fn applied(&self, plugin: &str) {
        let Ok(mut state) = self.lock(plugin) else { return };
        let started = Instant::now();
        let current = state.objects.iter().find(|(_, o)| o.plugin == plugin).map(|(h, _)| *h);
        let mut swept = 0;
        let mut flows = 0;
        let State { objects, carry, .. } = &mut *state;
        if let Some(obj) = current.and_then(|h| objects.get_mut(&h)) {
            match carry::sweep(obj) {
                Ok(n) => swept = n,
                Err(e) => tracing::warn!(plugin, error = %e, "sweeping adopted maps"),
            }
            if let Some(c) = carry.get(plugin) {
                for g in &c.retiring {
                    flows += carry::copy_flows(obj, g);
                }
            }
        }
        let (links, generations) = carry.get_mut(plugin).map(Carry::finish).unwrap_or_default();
        state.stats.entries_swept += swept as u64;
        state.stats.flows_copied += flows as u64;
        if swept + links + generations > 0 {
            tracing::info!(
                plugin,
                entries_swept = swept,
                links_detached = links,
                generations_retired = generations,
                flows_copied = flows,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "bpf state of the former object cleaned up"
            );
        }
    }

    /// Removes every object, link and map of `plugin` (the host's reset),
    /// its pins included, whether this process created them or not.
    pub fn release(&self, plugin: &str) {
        if let Ok(mut state) = self.state.lock() {
            let handles: Vec<u32> =
                state.objects.iter().filter(|(_, o)| o.plugin == plugin).map(|(h, _)| *h).collect();
            for h in handles {
                remove_object(&mut state, h);
            }
            if let Some(mut c) = state.carry.remove(plugin) {
                c.finish();
            }
        }
        if let Some(pp) = self.plugin_pins(plugin) {
            pins::remove_tree(&pp.dir);
            // The namespace's directory, once no plugin is left in it.
            if let Some(ns) = pp.dir.parent() {
                let _ = std::fs::remove_dir(ns);
            }
        }
    }

    /// Removes everything of every plugin (unpinned dataplanes' drop).
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
    /// Unpinned: everything goes. Pinned: only this process's descriptors;
    /// the pins keep enforcing (`release` removes them).
    fn drop(&mut self) {
        if self.pins.is_none() {
            self.release_all();
        }
    }
}

pub(crate) fn owned(state: &State, plugin: &str, object: u32) -> Result<(), BpfError> {
    match state.objects.get(&object) {
        Some(o) if o.plugin == plugin => Ok(()),
        _ => Err(BpfError::UnknownObject { plugin: plugin.into(), handle: object }),
    }
}

fn remove_link(state: &mut State, link: u32) {
    if let Some(l) = state.links.remove(&link) {
        l.held.remove();
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

/// A pinned plugin's previous object makes way for a new one: its links are
/// carried over (still attached, running its programs until swapped), its
/// generation retires unless the new object is the same.
fn retire_object(state: &mut State, object: u32, next: Option<&std::path::Path>) {
    let links: Vec<u32> =
        state.links.iter().filter(|(_, l)| l.object == object).map(|(h, _)| *h).collect();
    let Some(obj) = state.objects.remove(&object) else { return };
    let carry = state.carry.entry(obj.plugin.clone()).or_default();
    for h in links {
        let Some(l) = state.links.remove(&h) else { continue };
        match l.held {
            Held::Pinned { link, path } => {
                carry.inherited.insert((l.ifindex, l.hook), carry::Inherited { link, path });
            }
            owned @ Held::Owned(_) => owned.remove(),
        }
    }
    if let Some(g) = obj.generation {
        if Some(g.as_path()) != next && !carry.retiring.contains(&g) {
            carry.retiring.push(g);
        }
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
    fn applied(&self, plugin: &str) {
        BpfDataplane::applied(self, plugin);
    }
    fn release(&self, plugin: &str) {
        BpfDataplane::release(self, plugin);
    }
}
