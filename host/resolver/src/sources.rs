//! Address sources: what a rule's peer stands for before it is a set id.

use std::collections::BTreeSet;

use palisade_model::{Cidr, Protocol, SetId};

use crate::selectors::{PolIdx, SelId};

/// The definition of the addresses a rule peer covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SourceKey {
    /// The addresses of every Node object.
    Nodes,
    /// The addresses of a selector's members.
    Pods(SelId),
    /// A fixed block (cidr minus excepts), normalized.
    Block(Vec<Cidr>),
    /// Members of `sel` whose port `name`/`protocol` is `port`, optionally
    /// only those whose address lies within a block.
    Named { sel: SelId, protocol: Protocol, name: String, port: u16, within: Option<Vec<Cidr>> },
}

impl SourceKey {
    pub(crate) fn selector(&self) -> Option<SelId> {
        match self {
            SourceKey::Pods(s) | SourceKey::Named { sel: s, .. } => Some(*s),
            SourceKey::Nodes | SourceKey::Block(_) => None,
        }
    }
}

/// A source in use, with the set that currently holds its addresses.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) set: SetId,
    pub(crate) content: Vec<Cidr>,
    /// Policies whose compiled rules use this source.
    pub(crate) users: BTreeSet<PolIdx>,
    /// Endpoint policies using it outside of any policy (the node exemption).
    pub(crate) pins: usize,
}

/// True if `ip` lies inside one of `block`'s prefixes.
pub(crate) fn within(block: &[Cidr], prefix: &Cidr) -> bool {
    block.iter().any(|b| b.covers(prefix))
}
