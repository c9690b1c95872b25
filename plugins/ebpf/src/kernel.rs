//! What this plugin has programmed through the host's `bpf` capability: its
//! object, the links of every endpoint, and the contents of its maps; and
//! the diff that brings them to a new applied state.

use std::collections::{BTreeMap, BTreeSet};

use palisade_plugin_sdk::bpf;
use palisade_plugin_sdk::types::{Direction, Error, ErrorCode, Peer};
use palisade_plugin_sdk::AppliedState;

use crate::encode::{self, Encoded};

/// The TC classifier, compiled from bpf/palisade_tc.c by build.rs.
pub const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/palisade_tc.o"));

/// Entries per capability call (the host refuses larger batches).
pub const CHUNK: usize = 16_384;

const MAP_ENDPOINTS: &str = "pl_endpoints";
const MAP_PEERS: &str = "pl_peers";
const MAP_PORTS: &str = "pl_ports";
/// The programs (functions) of the object.
pub const PROGRAM_INGRESS: &str = "pl_ingress";
pub const PROGRAM_EGRESS: &str = "pl_egress";

fn capability(op: &str, message: String) -> Error {
    Error { code: ErrorCode::Capability, message: format!("bpf {op}: {message}") }
}

/// What one sync wrote, for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub updated: usize,
    pub deleted: usize,
    pub attached: usize,
    pub detached: usize,
    /// Endpoints left without programs (no interface yet).
    pub unattached: usize,
}

#[derive(Default)]
pub struct Kernel {
    object: Option<u32>,
    /// Per endpoint: its IPv4 addresses when attached, and the links of its
    /// ingress and egress programs.
    links: BTreeMap<u32, (Vec<u32>, [u32; 2])>,
    endpoints: BTreeMap<[u8; 4], [u8; 4]>,
    /// Endpoints the host found no interface for (with the addresses of
    /// that attempt): tried again on a full apply or an address change.
    pending: BTreeMap<u32, Vec<u32>>,
    policies: BTreeMap<(u32, u8), Encoded>,
    /// A sync failed half-way: what is programmed is not known exactly.
    pub dirty: bool,
}

fn write<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    obj: u32,
    map: &str,
    entries: &[(K, V)],
) -> Result<(), Error> {
    for chunk in entries.chunks(CHUNK) {
        let batch: Vec<(Vec<u8>, Vec<u8>)> =
            chunk.iter().map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec())).collect();
        bpf::map_update(obj, map, &batch).map_err(|m| capability("map-update", m))?;
    }
    Ok(())
}

fn delete<K: AsRef<[u8]>>(obj: u32, map: &str, keys: &[K]) -> Result<(), Error> {
    for chunk in keys.chunks(CHUNK) {
        let batch: Vec<Vec<u8>> = chunk.iter().map(|k| k.as_ref().to_vec()).collect();
        bpf::map_delete(obj, map, &batch).map_err(|m| capability("map-delete", m))?;
    }
    Ok(())
}

/// The entries of `new` that `old` lacks or holds with another value, and
/// the keys of `old` that `new` lacks.
fn diff<K: Ord + Copy, V: PartialEq + Copy>(
    old: Option<&BTreeMap<K, V>>,
    new: Option<&BTreeMap<K, V>>,
    updates: &mut Vec<(K, V)>,
    deletes: &mut Vec<K>,
) {
    let empty = BTreeMap::new();
    let old = old.unwrap_or(&empty);
    let new = new.unwrap_or(&empty);
    updates.extend(new.iter().filter(|(k, v)| old.get(k) != Some(v)).map(|(k, v)| (*k, *v)));
    deletes.extend(old.keys().filter(|k| !new.contains_key(k)).copied());
}

/// The endpoint policies (keys) that read one of `sets`.
pub fn policies_reading(st: &AppliedState, sets: &BTreeSet<u32>) -> BTreeSet<(u32, u8)> {
    st.policies
        .iter()
        .filter(|(_, p)| {
            p.tiers
                .iter()
                .flat_map(|t| &t.rules)
                .any(|r| matches!(r.peer, Peer::Set(id) if sets.contains(&id)))
        })
        .map(|(k, _)| *k)
        .collect()
}

impl Kernel {
    pub fn object(&self) -> Option<u32> {
        self.object
    }

    /// Brings the kernel to `st`: every policy when `touched` is `None`,
    /// else only the policies in `touched` (endpoints always).
    pub fn sync(
        &mut self,
        st: &AppliedState,
        touched: Option<&BTreeSet<(u32, u8)>>,
    ) -> Result<Written, Error> {
        self.dirty = true;
        let obj = match self.object {
            Some(h) => h,
            None => {
                let h = bpf::load(OBJECT).map_err(|m| capability("load", m))?;
                self.object = Some(h);
                h
            }
        };
        let mut w = Written::default();
        // Endpoints: address → id; an address shared by several endpoints
        // is the lowest id's (as in the reference evaluator).
        let mut wanted_endpoints: BTreeMap<[u8; 4], [u8; 4]> = BTreeMap::new();
        for e in st.endpoints.values() {
            for a in &e.v4 {
                wanted_endpoints.entry(a.to_be_bytes()).or_insert(e.id.to_le_bytes());
            }
        }
        let (mut ep_upd, mut ep_del) = (Vec::new(), Vec::new());
        diff(Some(&self.endpoints), Some(&wanted_endpoints), &mut ep_upd, &mut ep_del);
        // Policies.
        let keys: BTreeSet<(u32, u8)> = match touched {
            Some(t) => t.clone(),
            None => st.policies.keys().chain(self.policies.keys()).copied().collect(),
        };
        let mut encoded = BTreeMap::new();
        let (mut peer_upd, mut peer_del, mut port_upd, mut port_del) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in &keys {
            let old = self.policies.get(k);
            let new =
                st.policies.get(k).map(|p| encode::encode(p, &st.sets, old.map(|o| &o.classes)));
            diff(
                old.map(|o| &o.peers),
                new.as_ref().map(|n| &n.peers),
                &mut peer_upd,
                &mut peer_del,
            );
            diff(
                old.map(|o| &o.ports),
                new.as_ref().map(|n| &n.ports),
                &mut port_upd,
                &mut port_del,
            );
            encoded.insert(*k, new);
        }
        // New contents first (a packet meets either the old or the new
        // verdict of a key, never none), then links, then removals.
        write(obj, MAP_ENDPOINTS, &ep_upd)?;
        write(obj, MAP_PORTS, &port_upd)?;
        write(obj, MAP_PEERS, &peer_upd)?;
        w.updated = ep_upd.len() + port_upd.len() + peer_upd.len();
        self.endpoints.extend(ep_upd);
        for (k, e) in encoded {
            match e {
                Some(e) => self.policies.insert(k, e),
                None => self.policies.remove(&k),
            };
        }
        // Links: both programs on every endpoint (a reply is recognised by
        // the stage that allowed its connection, on either side).
        let gone: Vec<u32> = self
            .links
            .iter()
            .filter(|(id, (addrs, _))| st.endpoints.get(id).is_none_or(|e| &e.v4 != addrs))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some((_, links)) = self.links.remove(&id) {
                for l in links {
                    bpf::detach(l).map_err(|m| capability("detach", m))?;
                    w.detached += 1;
                }
            }
        }
        self.pending.retain(|id, _| st.endpoints.contains_key(id));
        for e in st.endpoints.values() {
            if self.links.contains_key(&e.id) || e.v4.is_empty() {
                continue;
            }
            if touched.is_some() && self.pending.get(&e.id) == Some(&e.v4) {
                w.unattached += 1;
                continue;
            }
            // An endpoint without an interface (its veth is not there, or
            // it lives elsewhere) has no traffic to judge here: it stays
            // pending, and its policy is in the maps when it is attached.
            let ingress = match bpf::attach(obj, PROGRAM_INGRESS, e.id, Direction::Ingress) {
                Ok(l) => l,
                Err(m) => {
                    palisade_plugin_sdk::warn(&format!(
                        "endpoint {} ({}) not attached: {m}",
                        e.id, e.name
                    ));
                    self.pending.insert(e.id, e.v4.clone());
                    w.unattached += 1;
                    continue;
                }
            };
            let egress = match bpf::attach(obj, PROGRAM_EGRESS, e.id, Direction::Egress) {
                Ok(l) => l,
                Err(m) => {
                    let _ = bpf::detach(ingress);
                    return Err(capability(
                        "attach",
                        format!("endpoint {} ({}): {m}", e.id, e.name),
                    ));
                }
            };
            self.pending.remove(&e.id);
            self.links.insert(e.id, (e.v4.clone(), [ingress, egress]));
            w.attached += 2;
        }
        delete(obj, MAP_PEERS, &peer_del)?;
        delete(obj, MAP_PORTS, &port_del)?;
        delete(obj, MAP_ENDPOINTS, &ep_del)?;
        for k in &ep_del {
            self.endpoints.remove(k);
        }
        w.deleted = peer_del.len() + port_del.len() + ep_del.len();
        self.dirty = false;
        Ok(w)
    }

    /// Forgets what it programmed without touching the kernel: the next
    /// sync loads the object again and writes everything.
    pub fn forget(&mut self) {
        *self = Kernel::default();
    }

    /// Unloads the object (the host removes its links and maps).
    pub fn reset(&mut self) -> Result<(), Error> {
        let object = self.object.take();
        *self = Kernel::default();
        if let Some(h) = object {
            bpf::unload(h).map_err(|m| capability("unload", m))?;
        }
        Ok(())
    }
}
