//! The WIT boundary: instantiating a plugin, and `apply` of a 10,000-rule
//! set. Run with `cargo bench -p palisade-plugin-host --bench boundary`
//! after `scripts/build-plugins`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use palisade_model::{
    Action, AddressSet, Cidr, Direction, Endpoint, EndpointPolicy, NoMatch, Origin, Peer,
    PortRange, Protocol, Rule, RuleSet, Tier,
};
use palisade_plugin_host::bindings::v0_1 as wit;
use palisade_plugin_host::{Capabilities, EngineOptions, Grants, Limits, PluginEngine};

fn wasm(stem: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/release")
        .join(format!("{stem}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins", path.display()))
}

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// 100 endpoints × 100 rules: each rule a peer set (shared among 50 sets of
/// 20 pod addresses, plus CIDRs), one or two port ranges, an origin per
/// policy rule; realistic shape for a busy node.
pub fn synthetic(rules: usize) -> RuleSet {
    let endpoints_n = 100;
    let per = rules / endpoints_n;
    let endpoints = (0..endpoints_n as u32)
        .map(|i| Endpoint {
            id: i + 1,
            name: format!("ns{}/pod{i}", i % 10),
            addresses: vec![v4(0x0a00_0000 + i + 1)],
        })
        .collect();
    let sets = (0..50u32)
        .map(|s| AddressSet {
            id: s + 1,
            prefixes: (0..20u32)
                .map(|k| Cidr::host(v4(0x0a01_0000 + s * 64 + k)))
                .chain(std::iter::once(Cidr::new(v4(0xc000_0200 + s * 4), 30)))
                .collect(),
        })
        .collect();
    let origins = (0..1000u32)
        .map(|o| Origin {
            id: o,
            kind: "networking.k8s.io/v1 NetworkPolicy".into(),
            namespace: format!("ns{}", o % 10),
            name: format!("policy-{o}"),
            rule: format!("ingress[{}]", o % 3),
        })
        .collect();
    let policies = (0..endpoints_n as u32)
        .map(|e| EndpointPolicy {
            endpoint: e + 1,
            direction: if e % 2 == 0 { Direction::Ingress } else { Direction::Egress },
            tiers: vec![Tier {
                rules: (0..per as u32)
                    .map(|r| Rule {
                        action: Action::Allow,
                        peer: if r % 10 == 0 { Peer::Any } else { Peer::Set(1 + (e * 7 + r) % 50) },
                        ports: if r % 3 == 0 {
                            vec![PortRange::single(Protocol::Tcp, 80 + (r % 100) as u16)]
                        } else {
                            vec![
                                PortRange::single(Protocol::Tcp, 8000 + r as u16),
                                PortRange { protocol: Protocol::Udp, first: 5000, last: 5100 },
                            ]
                        },
                        origin: (e * per as u32 + r) % 1000,
                    })
                    .collect(),
                no_match: NoMatch::Deny,
            }],
        })
        .collect();
    RuleSet { generation: 1, endpoints, sets, policies, origins }
}

fn boundary(c: &mut Criterion) {
    let dir = tempfile_dir();
    let engine =
        PluginEngine::new(EngineOptions { cache_dir: Some(dir), ..Default::default() }).unwrap();
    let nft = engine
        .load(
            "palisade_nftables",
            &wasm("palisade_nftables"),
            &Grants::all(),
            Limits::default(),
            Capabilities::default(),
        )
        .unwrap();
    let calico = engine
        .load(
            "palisade_calico_compat",
            &wasm("palisade_calico_compat"),
            &Grants::all(),
            Limits::default(),
            Capabilities::default(),
        )
        .unwrap();

    c.bench_function("instantiate/nftables", |b| b.iter(|| nft.instantiate().unwrap()));
    c.bench_function("instantiate/calico-compat", |b| b.iter(|| calico.instantiate().unwrap()));

    let rules = synthetic(10_000);
    assert_eq!(rules.rule_count(), 10_000);
    let converted = wit::rule_set(&rules);
    let mut inst = calico.instantiate().unwrap();
    inst.configure(&[]).unwrap();
    c.bench_function("apply-10k/convert+call", |b| b.iter(|| inst.apply(&rules).unwrap()));
    c.bench_function("apply-10k/call", |b| b.iter(|| inst.apply_wit(&converted).unwrap()));
    c.bench_function("apply-10k/convert-only", |b| {
        b.iter_batched(|| (), |_| wit::rule_set(&rules), BatchSize::SmallInput)
    });
    c.bench_function("evaluate/one-flow", |b| {
        b.iter(|| inst.evaluate(v4(0x0a01_0005), v4(0x0a00_0001), Protocol::Tcp, 80).unwrap())
    });
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-bench-cache-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

criterion_group!(benches, boundary);
criterion_main!(benches);
