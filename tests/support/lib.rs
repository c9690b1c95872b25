//! Helpers shared by the integration tests: where the built plugins are, a
//! shared engine, and small rule sets.

// Test support: a panic is how a helper fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use palisade_model::{
    Action, AddressSet, Cidr, Direction, Endpoint, EndpointPolicy, NoMatch, Origin, Peer,
    PortRange, Protocol, Rule, RuleSet, Tier,
};
use palisade_plugin_host::{EngineOptions, PluginEngine};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `scripts/build-plugins` puts the components.
pub fn wasm_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => workspace_root().join("target"),
    }
    .join("wasm32-wasip2")
    .join("release")
}

/// The bytes of a built component, e.g. `plugin_bytes("palisade_nftables")`.
/// Fails the test (never skips it) when the component has not been built.
pub fn plugin_bytes(file_stem: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{file_stem}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the plugins and fixtures first: scripts/build-plugins \
             (scripts/test does it for you)",
            path.display()
        )
    })
}

/// An engine shared by the tests of one binary, with its precompile cache
/// under the target directory (so a test run compiles each component once).
pub fn engine() -> PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let cache = wasm_dir().join("..").join("..").join("palisade-test-cache");
            PluginEngine::new(EngineOptions { cache_dir: Some(cache), ..EngineOptions::default() })
                .expect("engine")
        })
        .clone()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A rule set with one endpoint per name (addresses 10.0.0.1, .2, ...); the
/// first endpoint is ingress-isolated and allows TCP 80 from the second.
pub fn rule_set(generation: u64, names: &[&str]) -> RuleSet {
    let endpoints: Vec<Endpoint> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Endpoint {
            id: i as u32 + 1,
            name: (*n).to_string(),
            addresses: vec![ip(&format!("10.0.0.{}", i + 1))],
        })
        .collect();
    let mut rs = RuleSet {
        generation,
        endpoints,
        sets: vec![AddressSet { id: 1, prefixes: vec![Cidr::host(ip("10.0.0.2"))] }],
        policies: vec![],
        origins: vec![Origin {
            id: 0,
            kind: "networking.k8s.io/v1 NetworkPolicy".into(),
            namespace: "test".into(),
            name: "allow-web".into(),
            rule: "ingress[0]".into(),
        }],
    };
    if !names.is_empty() {
        rs.policies.push(EndpointPolicy {
            endpoint: 1,
            direction: Direction::Ingress,
            tiers: vec![Tier {
                rules: vec![Rule {
                    action: Action::Allow,
                    peer: Peer::Set(1),
                    ports: vec![PortRange::single(Protocol::Tcp, 80)],
                    origin: 0,
                }],
                no_match: NoMatch::Deny,
            }],
        });
    }
    rs
}
