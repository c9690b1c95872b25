//! Map writes and deletions of a plugin's own object, checked against the
//! map's definition before the kernel sees them.

use std::os::fd::AsFd;

use aya::maps::MapData;

use crate::object::{writable_kind, OwnMap};
use crate::{owned, syscall, BpfDataplane, BpfError, State};

impl BpfDataplane {
    /// Checks a batch against the map's definition; the map's data.
    pub(crate) fn checked_map<'s>(
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
            claim(&mut state, object, map, entries.iter().map(|(k, _)| k), true);
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
            claim(&mut state, object, map, keys.iter(), false);
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
}

/// Records keys written (`true`) or deleted by the plugin into an adopting
/// object's claims.
fn claim<'k>(
    state: &mut State,
    object: u32,
    map: &str,
    keys: impl Iterator<Item = &'k Vec<u8>>,
    written: bool,
) {
    let Some(claims) = state.objects.get_mut(&object).and_then(|o| o.claims.as_mut()) else {
        return;
    };
    let set = claims.entry(map.to_string()).or_default();
    for k in keys {
        if written {
            set.insert(k.clone());
        } else {
            set.remove(k);
        }
    }
}
