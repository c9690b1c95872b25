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
    /// A Calico rule side: inside `nets` (`notNets` already taken out;
    /// `None`: every address), an address of `sel`'s members, none of
    /// `not_sel`'s, of IP version `ip_version`.
    Calico {
        nets: Option<Vec<Cidr>>,
        sel: Option<SelId>,
        not_sel: Option<SelId>,
        ip_version: Option<u8>,
    },
}

impl SourceKey {
    /// The selectors whose members this source's content follows.
    pub(crate) fn selectors(&self) -> Vec<SelId> {
        match self {
            SourceKey::Pods(s) | SourceKey::Named { sel: s, .. } => vec![*s],
            SourceKey::Calico { sel, not_sel, .. } => sel.iter().chain(not_sel).copied().collect(),
            SourceKey::Nodes | SourceKey::Block(_) => Vec::new(),
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
