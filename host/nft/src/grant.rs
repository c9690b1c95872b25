//! Which nftables tables each plugin owns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    pub const ALL: [Family; 6] =
        [Family::Ip, Family::Ip6, Family::Inet, Family::Arp, Family::Bridge, Family::Netdev];

    /// The name `nft` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            format!("unknown nftables family `{s}` (known: ip, ip6, inet, arp, bridge, netdev)")
        })
    }
}

/// One nftables table: family and name, e.g. `inet palisade`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub family: Family,
    pub name: String,
}

/// True if `name` is an identifier as `nft` writes them (a letter, `_` or
/// `.`, then letters, digits, `/`, `-`, `_`, `.`), at most 255 bytes. Grants
/// are limited to such names so that a table name can never be taken for an
/// option or a keyword on `nft`'s command line.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    name.len() <= 255
        && (first.is_ascii_alphabetic() || first == '_' || first == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
}

impl TableRef {
    /// A table; refuses names that are not nftables identifiers.
    pub fn new(family: Family, name: &str) -> Result<TableRef, String> {
        if !is_identifier(name) {
            return Err(format!(
                "`{name}` is not an nftables table name (a letter, `_` or `.`, then letters, \
                 digits, `/`, `-`, `_`, `.`)"
            ));
        }
        Ok(TableRef { family, name: name.to_string() })
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// Parses `FAMILY NAME`, e.g. `inet palisade`.
impl FromStr for TableRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(family), Some(name), None) => TableRef::new(family.parse()?, name),
            _ => Err(format!("`{s}`: expected `FAMILY NAME`, e.g. `inet palisade`")),
        }
    }
}

/// The operator's grant: for each plugin name, the tables it owns. A plugin
/// without an entry owns nothing and every call it makes is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableGrants {
    plugins: BTreeMap<String, BTreeSet<TableRef>>,
}

impl TableGrants {
    /// No table for anyone.
    pub fn new() -> TableGrants {
        TableGrants::default()
    }

    /// Grants `table` to `plugin` (builder style).
    pub fn grant(mut self, plugin: impl Into<String>, table: TableRef) -> TableGrants {
        self.add(plugin, table);
        self
    }

    /// Grants `table` to `plugin`.
    pub fn add(&mut self, plugin: impl Into<String>, table: TableRef) {
        self.plugins.entry(plugin.into()).or_default().insert(table);
    }

    /// Parses grants written `PLUGIN=FAMILY NAME[,FAMILY NAME...]`, e.g.
    /// `palisade_nftables=inet palisade,ip6 palisade6`.
    pub fn parse_entry(&mut self, entry: &str) -> Result<(), String> {
        let (plugin, tables) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}`: expected `PLUGIN=FAMILY NAME[,FAMILY NAME...]`"))?;
        let plugin = plugin.trim();
        if plugin.is_empty() {
            return Err(format!("`{entry}`: no plugin name"));
        }
        for t in tables.split(',') {
            self.add(plugin, t.parse()?);
        }
        Ok(())
    }

    /// The tables of `plugin` (empty if it has none).
    pub fn tables(&self, plugin: &str) -> impl Iterator<Item = &TableRef> {
        self.plugins.get(plugin).into_iter().flatten()
    }

    pub fn allows(&self, plugin: &str, table: &TableRef) -> bool {
        self.plugins.get(plugin).is_some_and(|t| t.contains(table))
    }

    pub fn has_any(&self, plugin: &str) -> bool {
        self.plugins.get(plugin).is_some_and(|t| !t.is_empty())
    }

    /// `inet a, ip6 b` (or `none`), for error messages.
    pub fn describe(&self, plugin: &str) -> String {
        let list: Vec<String> = self.tables(plugin).map(ToString::to_string).collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tables_parse_and_names_are_identifiers() {
        let t: TableRef = "inet palisade".parse().unwrap();
        assert_eq!(t, TableRef { family: Family::Inet, name: "palisade".into() });
        assert_eq!(t.to_string(), "inet palisade");
        assert!("inet".parse::<TableRef>().is_err());
        assert!("inet a b".parse::<TableRef>().is_err());
        assert!("inetx a".parse::<TableRef>().is_err());
        assert!("inet -f".parse::<TableRef>().is_err());
        assert!("inet a;b".parse::<TableRef>().is_err());
        assert!("ip6 not-mine.v2/x_y".parse::<TableRef>().is_ok());
    }

    #[test]
    fn grants_are_per_plugin() {
        let mut g = TableGrants::new().grant("a", "inet a".parse().unwrap());
        g.parse_entry("b=inet b, ip6 b").unwrap();
        assert!(g.allows("a", &"inet a".parse().unwrap()));
        assert!(!g.allows("a", &"inet b".parse().unwrap()));
        assert!(!g.allows("a", &"ip a".parse().unwrap()));
        assert_eq!(g.describe("b"), "ip6 b, inet b");
        assert_eq!(g.describe("c"), "none");
        assert!(!g.has_any("c"));
        assert!(g.parse_entry("=inet x").is_err());
        assert!(g.parse_entry("inet x").is_err());
    }
}
