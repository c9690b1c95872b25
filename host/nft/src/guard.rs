//! The endpoint guard: new endpoints fail closed.
//!
//! A small table of the host's own (`inet palisade_guard`, not a plugin's)
//! in the node namespace drops every packet that arrives from or leaves to
//! an interface matching the operator's endpoint patterns (`veth*`,
//! `cali*`, the lab's node-side veths) unless its pod address is in the
//! set of endpoints whose policy the backend has programmed. A pod whose
//! interface appears before the host knows its object, or while the host
//! is down, is isolated in both directions. Allowing it is a set element
//! added after its policy is programmed: a delta, not a race. It works the
//! same whichever backend programs the policy.
//!
//! ```text
//! table inet palisade_guard {
//!   set programmed4 { type ipv4_addr; }   set programmed6 { type ipv6_addr; }
//!   chain forward { type filter hook forward priority -10; policy accept;
//!     iifname "veth*" ip saddr != @programmed4 drop
//!     oifname "veth*" ip daddr != @programmed4 drop      (and ip6 with programmed6)
//!   }
//!   chain input  { ... hook input ...;  ICMPv6 neighbour discovery accepted; iifname rules }
//!   chain output { ... hook output ...; ICMPv6 neighbour discovery accepted; oifname rules }
//! }
//! ```
//!
//! Installing keeps the sets' elements (a restarted host must not isolate
//! every pod until its first programming): the chains are flushed and
//! refilled in the same transaction that creates what is missing. The first
//! [`EndpointGuard::sync`] replaces the sets' contents in one transaction;
//! later ones add and delete the differences. Only
//! [`EndpointGuard::remove`] (reset) deletes the table.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::grant::{TableGrants, TableRef};
use crate::{NftDataplane, NftError};

/// The guard's name in grants and logs.
pub const GUARD: &str = "endpoint-guard";
/// The default table name.
pub const DEFAULT_TABLE: &str = "palisade_guard";

/// What the operator configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Table name (family inet).
    pub table: String,
    /// Interface name patterns (`veth*`: a prefix; `eth1`: exactly).
    pub interfaces: Vec<String>,
}

/// A pattern `nft` takes as an interface name: at most 15 characters of
/// `[A-Za-z0-9_.:@-]`, optionally ending in `*`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if stem.is_empty() {
        return Err(format!(
            "interface pattern `{pattern}` is empty or matches every interface (lo included)"
        ));
    }
    if stem.len() > 15 {
        return Err(format!(
            "interface pattern `{pattern}`: longer than an interface name (15 characters)"
        ));
    }
    if let Some(c) = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')))
    {
        return Err(format!(
            "interface pattern `{pattern}`: `{c}` cannot be in an interface name (a `*` only at the end)"
        ));
    }
    Ok(())
}

/// The guard of one node namespace.
#[derive(Debug)]
pub struct EndpointGuard {
    nft: NftDataplane,
    config: GuardConfig,
    /// What the kernel's sets hold, once synced.
    programmed: Option<BTreeSet<IpAddr>>,
}

impl EndpointGuard {
    /// Installs (or takes over) the guard table in `netns`.
    pub fn install(netns: Option<PathBuf>, config: GuardConfig) -> Result<EndpointGuard, NftError> {
        let bad = |reason: String| NftError::BadTable { plugin: GUARD.into(), reason };
        let table: TableRef = format!("inet {}", config.table).parse().map_err(bad)?;
        for p in &config.interfaces {
            check_pattern(p).map_err(bad)?;
        }
        if config.interfaces.is_empty() {
            return Err(bad("no endpoint interface pattern".into()));
        }
        let nft = NftDataplane::new(netns, TableGrants::new().grant(GUARD, table));
        let guard = EndpointGuard { nft, config, programmed: None };
        guard.nft.apply(GUARD, &guard.install_batch().to_string())?;
        tracing::info!(table = %guard.config.table, interfaces = ?guard.config.interfaces, "endpoint guard installed");
        Ok(guard)
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// How many addresses are let through (after the first sync).
    pub fn programmed(&self) -> Option<usize> {
        self.programmed.as_ref().map(BTreeSet::len)
    }

    fn obj(&self, extra: Value) -> Value {
        let mut o = json!({"family": "inet", "table": self.config.table});
        if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(extra.clone());
        }
        o
    }

    fn install_batch(&self) -> Value {
        let t = &self.config.table;
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}),
            json!({"add": {"set": self.obj(json!({"name": "programmed4", "type": "ipv4_addr"}))}}),
            json!({"add": {"set": self.obj(json!({"name": "programmed6", "type": "ipv6_addr"}))}}),
        ];
        for (chain, hook) in [("forward", "forward"), ("input", "input"), ("output", "output")] {
            cmds.push(json!({"add": {"chain": self.obj(json!({
                "name": chain, "type": "filter", "hook": hook, "prio": -10, "policy": "accept"
            }))}}));
            cmds.push(json!({"flush": {"chain": self.obj(json!({"name": chain}))}}));
        }
        let nd = json!({"match": {"op": "==",
            "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
            "right": {"set": ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit", "nd-router-advert", "nd-redirect"]}}});
        for chain in ["input", "output"] {
            cmds.push(json!({"add": {"rule": self.obj(json!({
                "chain": chain, "expr": [nd, {"accept": null}]
            }))}}));
        }
        let rule = |chain: &str, side: &str, pattern: &str, proto: &str, set: &str| {
            let (meta, field) =
                if side == "in" { ("iifname", "saddr") } else { ("oifname", "daddr") };
            json!({"add": {"rule": self.obj(json!({"chain": chain, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": meta}}, "right": pattern}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": field}}, "right": format!("@{set}")}},
                {"drop": null}
            ]}))}})
        };
        for pattern in &self.config.interfaces {
            for (proto, set) in [("ip", "programmed4"), ("ip6", "programmed6")] {
                cmds.push(rule("forward", "in", pattern, proto, set));
                cmds.push(rule("forward", "out", pattern, proto, set));
                cmds.push(rule("input", "in", pattern, proto, set));
                cmds.push(rule("output", "out", pattern, proto, set));
            }
        }
        json!({"nftables": cmds})
    }

    fn elements(&self, set: &str, addrs: &[IpAddr]) -> Value {
        let elem: Vec<Value> = addrs.iter().map(|a| json!(a.to_string())).collect();
        self.obj(json!({"name": set, "elem": elem}))
    }

    /// Lets exactly the addresses of `endpoints` through: the endpoints
    /// whose policy the backend has just programmed.
    pub fn sync<'a>(
        &mut self,
        endpoints: impl IntoIterator<Item = &'a IpAddr>,
    ) -> Result<(usize, usize), NftError> {
        let wanted: BTreeSet<IpAddr> = endpoints.into_iter().copied().collect();
        let split = |v: Vec<IpAddr>| -> (Vec<IpAddr>, Vec<IpAddr>) {
            v.into_iter().partition(IpAddr::is_ipv4)
        };
        let mut cmds = Vec::new();
        let (added, removed) = match &self.programmed {
            None => {
                // The first sync after install: the whole contents, replaced
                // in one transaction (what a former host left is not known).
                for set in ["programmed4", "programmed6"] {
                    cmds.push(json!({"flush": {"set": self.obj(json!({"name": set}))}}));
                }
                let (v4, v6) = split(wanted.iter().copied().collect());
                for (set, addrs) in [("programmed4", v4), ("programmed6", v6)] {
                    if !addrs.is_empty() {
                        cmds.push(json!({"add": {"element": self.elements(set, &addrs)}}));
                    }
                }
                (wanted.len(), 0)
            }
            Some(have) => {
                let add: Vec<IpAddr> = wanted.difference(have).copied().collect();
                let del: Vec<IpAddr> = have.difference(&wanted).copied().collect();
                let counts = (add.len(), del.len());
                let (a4, a6) = split(add);
                let (d4, d6) = split(del);
                for (set, addrs) in [("programmed4", a4), ("programmed6", a6)] {
                    if !addrs.is_empty() {
                        cmds.push(json!({"add": {"element": self.elements(set, &addrs)}}));
                    }
                }
                for (set, addrs) in [("programmed4", d4), ("programmed6", d6)] {
                    if !addrs.is_empty() {
                        cmds.push(json!({"delete": {"element": self.elements(set, &addrs)}}));
                    }
                }
                counts
            }
        };
        if !cmds.is_empty() {
            if let Err(e) = self.nft.apply(GUARD, &json!({"nftables": cmds}).to_string()) {
                // What the kernel holds is not known: the next sync
                // replaces the whole contents.
                self.programmed = None;
                return Err(e);
            }
        }
        self.programmed = Some(wanted);
        Ok((added, removed))
    }

    /// Deletes guard table `table` of `netns` if there is one (a reset by a
    /// process that did not install it).
    pub fn remove_table(netns: Option<PathBuf>, table: &str) -> Result<(), NftError> {
        let bad = |reason: String| NftError::BadTable { plugin: GUARD.into(), reason };
        let t: TableRef = format!("inet {table}").parse().map_err(bad)?;
        NftDataplane::new(netns, TableGrants::new().grant(GUARD, t)).delete(GUARD, "inet", table)
    }

    /// Deletes the guard table (reset): every endpoint interface is open
    /// again to whatever the backend enforces.
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.programmed = None;
        self.nft.delete(GUARD, "inet", &self.config.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_interface_names_with_an_optional_trailing_star() {
        for ok in ["veth*", "cali*", "eth0", "pl1a2bp*", "lxc_health"] {
            assert_eq!(check_pattern(ok), Ok(()), "{ok}");
        }
        assert!(check_pattern("ve*th").unwrap_err().contains("`*` cannot be"));
        assert!(check_pattern("a b").unwrap_err().contains("` ` cannot be"));
        assert!(check_pattern("abcdefghijklmnopq*").unwrap_err().contains("15 characters"));
        assert!(check_pattern("").unwrap_err().contains("empty"));
        assert!(check_pattern("*").unwrap_err().contains("every interface"));
    }
}
