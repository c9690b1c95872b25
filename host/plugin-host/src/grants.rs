//! Capabilities, the operator's grants, and the check of a component's
//! imports against them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PluginError;

/// A capability interface of `palisade:backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Structured logs through the host.
    Log,
    /// nftables batches, restricted to the plugin's own tables.
    Nft,
    /// eBPF objects, maps and attachments, restricted to the plugin's own.
    Bpf,
}

impl Capability {
    pub const ALL: [Capability; 3] = [Capability::Log, Capability::Nft, Capability::Bpf];

    /// The WIT interface name.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Nft => "nft",
            Capability::Bpf => "bpf",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.interface() == s)
            .ok_or_else(|| format!("unknown capability `{s}` (known: log, nft, bpf)"))
    }
}

/// What the operator grants one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub capabilities: BTreeSet<Capability>,
}

impl Grants {
    /// No capability at all (WASI is always linked, with nothing behind it).
    pub fn none() -> Grants {
        Grants::default()
    }

    pub fn of(caps: &[Capability]) -> Grants {
        Grants { capabilities: caps.iter().copied().collect() }
    }

    pub fn all() -> Grants {
        Grants::of(&Capability::ALL)
    }

    pub fn allows(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }
}

/// What a component imports and exports, as far as the host cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// `palisade:backend` version of the exported `backend` interface.
    pub wit_version: Option<String>,
    /// Capability interfaces imported, with the full import name.
    pub capabilities: Vec<(Capability, String)>,
    /// WASI interfaces imported (served by an empty context: no files,
    /// sockets, environment or arguments).
    pub wasi: Vec<String>,
    /// Anything else imported.
    pub other: Vec<String>,
}

/// Splits `ns:pkg/iface@1.2.3` into (`ns:pkg`, `iface`, `Some("1.2.3")`).
fn split_name(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (pkg, rest) = name.split_once('/')?;
    let (iface, version) = match rest.split_once('@') {
        Some((i, v)) => (i, Some(v)),
        None => (rest, None),
    };
    Some((pkg, iface, version))
}

/// True if `found` is semver-compatible with `supported` (same major, or for
/// 0.x the same minor).
fn compatible(found: &str, supported: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    let (f, s) = (parts(found), parts(supported));
    match (f.as_slice(), s.as_slice()) {
        ([0, fm, ..], [0, sm, ..]) => fm == sm,
        ([fmaj, ..], [smaj, ..]) => fmaj == smaj,
        _ => false,
    }
}

impl ImportSummary {
    /// Reads a compiled component's imports and exports.
    pub fn of(engine: &Engine, component: &Component) -> ImportSummary {
        let ty = component.component_type();
        let mut s = ImportSummary::default();
        for (name, _) in ty.imports(engine) {
            match split_name(name) {
                Some((crate::WIT_PACKAGE, "types", _)) => {}
                Some((crate::WIT_PACKAGE, iface, _)) => match iface.parse::<Capability>() {
                    Ok(c) => s.capabilities.push((c, name.to_string())),
                    Err(_) => s.other.push(name.to_string()),
                },
                Some((pkg, _, _)) if pkg.starts_with("wasi:") => s.wasi.push(name.to_string()),
                _ => s.other.push(name.to_string()),
            }
        }
        for (name, _) in ty.exports(engine) {
            if let Some((crate::WIT_PACKAGE, "backend", version)) = split_name(name) {
                s.wit_version = version.map(String::from);
            }
        }
        s
    }

    /// Refuses the component unless it is a backend of a supported WIT
    /// version that imports only granted capabilities and nothing unknown.
    pub fn check(&self, plugin: &str, grants: &Grants) -> Result<(), PluginError> {
        let supported = crate::SUPPORTED_WIT_VERSIONS.join(", ");
        let Some(version) = &self.wit_version else {
            return Err(PluginError::NotABackend { plugin: plugin.to_string() });
        };
        if !crate::SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(version, s)) {
            return Err(PluginError::WitVersion {
                plugin: plugin.to_string(),
                found: format!("{}@{version}", crate::WIT_PACKAGE),
                supported,
            });
        }
        for (c, import) in &self.capabilities {
            if let Some((_, _, Some(v))) = split_name(import) {
                if !crate::SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(v, s)) {
                    return Err(PluginError::WitVersion {
                        plugin: plugin.to_string(),
                        found: import.clone(),
                        supported,
                    });
                }
            }
            if !grants.allows(*c) {
                return Err(PluginError::UngrantedCapability {
                    plugin: plugin.to_string(),
                    capability: *c,
                    import: import.clone(),
                });
            }
        }
        if let Some(import) = self.other.first() {
            return Err(PluginError::UnknownImport {
                plugin: plugin.to_string(),
                import: import.clone(),
            });
        }
        Ok(())
    }

    /// The capabilities imported, deduplicated, in order.
    pub fn capability_set(&self) -> BTreeSet<Capability> {
        self.capabilities.iter().map(|(c, _)| *c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(
            split_name("palisade:backend/log@0.1.0"),
            Some(("palisade:backend", "log", Some("0.1.0")))
        );
        assert_eq!(split_name("wasi:io/streams"), Some(("wasi:io", "streams", None)));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
    }

    #[test]
    fn check_refuses_ungranted_capabilities_by_name() {
        let s = ImportSummary {
            wit_version: Some("0.1.0".into()),
            capabilities: vec![
                (Capability::Log, "palisade:backend/log@0.1.0".into()),
                (Capability::Nft, "palisade:backend/nft@0.1.0".into()),
            ],
            ..Default::default()
        };
        assert!(s.check("p", &Grants::of(&[Capability::Log, Capability::Nft])).is_ok());
        let err = s.check("p", &Grants::of(&[Capability::Log])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`p`") && msg.contains("`nft`"), "{msg}");
        let old = ImportSummary { wit_version: Some("0.2.0".into()), ..s };
        assert!(matches!(old.check("p", &Grants::all()), Err(PluginError::WitVersion { .. })));
    }
}
