//! What a plugin's new object takes over from its former self (an earlier
//! object of this process, or the pins of a process that is gone): links to
//! swap the program in, maps whose stale entries are swept once the
//! plugin's full apply ends, and retiring generations whose connection
//! tracking is copied before they go.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::MapData;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;

use crate::object::{map_pin, writable_kind, Object};
use crate::pins::{Hook, PluginPins};
use crate::syscall;

/// A link the host holds for the current object.
pub(crate) enum Held {
    /// Owned by this process: detached when dropped (unpinned dataplanes).
    Owned(#[allow(dead_code, reason = "held for its drop, which detaches")] SchedClassifierLink),
    /// Pinned: stays attached after the process, until its pin is removed.
    Pinned { link: FdLink, path: PathBuf },
}

impl Held {
    /// Detaches: the pin goes, then the last descriptor.
    pub fn remove(self) {
        if let Held::Pinned { path, .. } = &self {
            remove_pin(path);
        }
    }
}

pub(crate) fn remove_pin(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(pin = %path.display(), error = %e, "removing a bpf link pin");
        }
    }
}

pub(crate) struct Link {
    pub plugin: String,
    pub object: u32,
    pub ifindex: u32,
    pub hook: Hook,
    pub held: Held,
}

/// A pinned link not (yet) claimed by the current object.
pub(crate) struct Inherited {
    pub link: FdLink,
    pub path: PathBuf,
}

/// Per plugin: what its current object may take over, until its full
/// apply ends.
#[derive(Default)]
pub(crate) struct Carry {
    pub inherited: HashMap<(u32, Hook), Inherited>,
    /// Generation directories of former objects: removed once every link
    /// runs the current object's programs.
    pub retiring: Vec<PathBuf>,
}

impl Carry {
    /// Takes the pinned links found under `pins` that are not inherited
    /// already (from this process's former object); a pin that no longer
    /// opens is removed.
    pub fn take_pinned_links(&mut self, pins: &PluginPins) -> usize {
        let mut taken = 0;
        for (ifindex, hook, path) in pins.links() {
            if self.inherited.contains_key(&(ifindex, hook)) {
                continue;
            }
            match PinnedLink::from_pin(&path) {
                Ok(p) => {
                    self.inherited.insert((ifindex, hook), Inherited { link: p.into(), path });
                    taken += 1;
                }
                Err(e) => {
                    tracing::warn!(pin = %path.display(), error = %e, "stale bpf link pin removed");
                    remove_pin(&path);
                }
            }
        }
        taken
    }

    /// Detaches every unclaimed link and removes every retiring generation.
    pub fn finish(&mut self) -> (usize, usize) {
        let links = self.inherited.len();
        for (_, i) in self.inherited.drain() {
            remove_pin(&i.path);
        }
        let generations = self.retiring.len();
        for g in self.retiring.drain(..) {
            crate::pins::remove_tree(&g);
        }
        (links, generations)
    }
}

/// Deletes the entries of the object's adopted maps that the plugin did not
/// write since the load (LRU caches and arrays excepted); ends adoption.
pub(crate) fn sweep(obj: &mut Object) -> Result<usize, String> {
    let Some(claims) = obj.claims.take() else { return Ok(0) };
    let mut swept = 0;
    let empty = HashSet::new();
    for (name, shape) in &obj.maps {
        if shape.is_lru() || !shape.deletable() {
            continue;
        }
        let Some((_, data)) = obj.ebpf.map(name).and_then(writable_kind) else { continue };
        let fd = data.fd().as_fd();
        let claimed = claims.get(name).unwrap_or(&empty);
        let keys = syscall::keys(fd, shape.key_size).map_err(|e| format!("map `{name}`: {e}"))?;
        for k in keys.iter().filter(|k| !claimed.contains(*k)) {
            syscall::delete(fd, k).map_err(|e| format!("map `{name}`: {e}"))?;
            swept += 1;
        }
    }
    Ok(swept)
}

/// Copies the entries of every LRU map of a retiring generation into the
/// object's map of the same name and shape (connection tracking survives
/// an upgrade); entries already present are kept.
pub(crate) fn copy_flows(obj: &Object, generation: &Path) -> usize {
    let mut copied = 0;
    for (name, shape) in obj.maps.iter().filter(|(_, s)| s.is_lru()) {
        let pin = map_pin(generation, name);
        if !pin.exists() {
            continue;
        }
        let Ok(old) = MapData::from_pin(&pin) else { continue };
        let Ok(info) = old.info() else { continue };
        if info.key_size() as usize != shape.key_size
            || info.value_size() as usize != shape.value_size
        {
            continue;
        }
        let Some((_, new)) = obj.ebpf.map(name).and_then(writable_kind) else { continue };
        let (from, to) = (old.fd().as_fd(), new.fd().as_fd());
        let Ok(keys) = syscall::keys(from, shape.key_size) else { continue };
        let mut value = vec![0u8; shape.value_size];
        let mut present = vec![0u8; shape.value_size];
        for k in &keys {
            if matches!(syscall::lookup(to, k, &mut present), Ok(true)) {
                continue;
            }
            if matches!(syscall::lookup(from, k, &mut value), Ok(true))
                && syscall::update(to, k, &value).is_ok()
            {
                copied += 1;
            }
        }
    }
    copied
}
