//! Interning of address sets by content.
//!
//! Two sources with the same addresses share one set id. A set whose only
//! source changes is updated in place (its id stays); a shared set is split
//! off instead, so that the other sources keep their addresses.

use std::collections::{BTreeMap, HashMap};

use palisade_model::{Cidr, SetId};

use crate::output::Output;

#[derive(Debug, Default)]
pub(crate) struct SetTable {
    next_id: SetId,
    /// Ordered: growing it does not rehash every set's content.
    by_content: BTreeMap<Vec<Cidr>, SetId>,
    /// Number of sources mapped to each set.
    refs: HashMap<SetId, u32>,
}

impl SetTable {
    /// The set holding exactly `content`, created if needed; takes a
    /// reference.
    pub(crate) fn intern(&mut self, content: Vec<Cidr>, out: &mut Output) -> SetId {
        if let Some(&id) = self.by_content.get(&content) {
            *self.refs.entry(id).or_insert(0) += 1;
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        out.upsert_set(id, content.clone());
        self.by_content.insert(content, id);
        self.refs.insert(id, 1);
        id
    }

    /// Drops one reference; the set disappears with its last one.
    pub(crate) fn release(&mut self, id: SetId, out: &mut Output) {
        let Some(count) = self.refs.get_mut(&id) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.refs.remove(&id);
        if let Some(content) = out.set_prefixes(id) {
            let content = content.to_vec();
            self.by_content.remove(&content);
        }
        out.remove_set(id);
    }

    /// Moves one reference from set `id` to the set of `content`; returns
    /// the set that now holds it (`id` itself when updated in place).
    pub(crate) fn update(&mut self, id: SetId, content: Vec<Cidr>, out: &mut Output) -> SetId {
        if let Some(&existing) = self.by_content.get(&content) {
            if existing == id {
                return id;
            }
            *self.refs.entry(existing).or_insert(0) += 1;
            self.release(id, out);
            return existing;
        }
        if self.refs.get(&id) == Some(&1) {
            if let Some(old) = out.set_prefixes(id) {
                let old = old.to_vec();
                self.by_content.remove(&old);
            }
            self.by_content.insert(content.clone(), id);
            out.upsert_set(id, content);
            return id;
        }
        self.release(id, out);
        self.intern(content, out)
    }
}
