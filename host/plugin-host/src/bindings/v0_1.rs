//! Bindings of `palisade:backend@0.1.0` and conversions from the model.

use std::net::IpAddr;

use palisade_model as m;

wasmtime::component::bindgen!({
    world: "any-backend",
    path: "../../wit/0.1.0",
    imports: { default: trappable },
});

pub use palisade::backend::types;

fn v6_parts(a: std::net::Ipv6Addr, len: u8) -> types::V6Prefix {
    let v = u128::from(a);
    types::V6Prefix { hi: (v >> 64) as u64, lo: v as u64, len }
}

fn protocol(p: m::Protocol) -> types::Protocol {
    match p {
        m::Protocol::Tcp => types::Protocol::Tcp,
        m::Protocol::Udp => types::Protocol::Udp,
        m::Protocol::Sctp => types::Protocol::Sctp,
    }
}

pub fn direction(d: m::Direction) -> types::Direction {
    match d {
        m::Direction::Ingress => types::Direction::Ingress,
        m::Direction::Egress => types::Direction::Egress,
    }
}

fn prefixes(ps: &[m::Cidr]) -> (Vec<types::V4Prefix>, Vec<types::V6Prefix>) {
    let mut v4 = Vec::with_capacity(ps.len());
    let mut v6 = Vec::new();
    for p in ps {
        match p.addr() {
            IpAddr::V4(a) => v4.push(types::V4Prefix { addr: u32::from(a), len: p.prefix_len() }),
            IpAddr::V6(a) => v6.push(v6_parts(a, p.prefix_len())),
        }
    }
    (v4, v6)
}

fn set(s: &m::AddressSet) -> types::AddressSet {
    let (v4, v6) = prefixes(&s.prefixes);
    types::AddressSet { id: s.id, v4, v6 }
}

fn endpoint(e: &m::Endpoint) -> types::Endpoint {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in &e.addresses {
        match a {
            IpAddr::V4(a) => v4.push(u32::from(*a)),
            IpAddr::V6(a) => v6.push(v6_parts(*a, 128)),
        }
    }
    types::Endpoint { id: e.id, name: e.name.clone(), v4, v6 }
}

fn rule(r: &m::Rule, ports: &mut Vec<types::PortRange>) -> types::Rule {
    let first = ports.len() as u32;
    ports.extend(r.ports.iter().map(|p| types::PortRange {
        protocol: protocol(p.protocol),
        first: p.first,
        last: p.last,
    }));
    types::Rule {
        action: match r.action {
            m::Action::Allow => types::Action::Allow,
            m::Action::Deny => types::Action::Deny,
            m::Action::Pass => types::Action::Pass,
            m::Action::Log => types::Action::Log,
        },
        peer: match r.peer {
            m::Peer::Any => types::Peer::Any,
            m::Peer::Set(id) => types::Peer::Set(id),
        },
        ports: types::PortSpan { first, count: r.ports.len() as u32 },
        origin: r.origin,
    }
}

fn policy(p: &m::EndpointPolicy) -> types::EndpointPolicy {
    let mut ports = Vec::new();
    let tiers = p
        .tiers
        .iter()
        .map(|t| types::Tier {
            rules: t.rules.iter().map(|r| rule(r, &mut ports)).collect(),
            no_match: match t.no_match {
                m::NoMatch::NextTier => types::NoMatch::NextTier,
                m::NoMatch::Deny => types::NoMatch::Deny,
            },
        })
        .collect();
    types::EndpointPolicy { endpoint: p.endpoint, direction: direction(p.direction), tiers, ports }
}

fn origin(o: &m::Origin) -> types::Origin {
    types::Origin {
        id: o.id,
        kind: o.kind.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        rule: o.rule.clone(),
    }
}

/// The model's rule set as WIT values.
pub fn rule_set(rs: &m::RuleSet) -> types::RuleSet {
    types::RuleSet {
        generation: rs.generation,
        endpoints: rs.endpoints.iter().map(endpoint).collect(),
        sets: rs.sets.iter().map(set).collect(),
        policies: rs.policies.iter().map(policy).collect(),
        origins: rs.origins.iter().map(origin).collect(),
    }
}

/// The model's delta as WIT values.
pub fn delta(d: &m::Delta) -> types::Delta {
    types::Delta {
        base: d.base,
        generation: d.generation,
        origins_added: d.origins_added.iter().map(origin).collect(),
        sets_added: d.sets_added.iter().map(set).collect(),
        sets_changed: d
            .sets_changed
            .iter()
            .map(|c| {
                let (add_v4, add_v6) = prefixes(&c.added);
                let (remove_v4, remove_v6) = prefixes(&c.removed);
                types::SetChange { id: c.id, add_v4, remove_v4, add_v6, remove_v6 }
            })
            .collect(),
        sets_removed: d.sets_removed.clone(),
        endpoints_upserted: d.endpoints_upserted.iter().map(endpoint).collect(),
        endpoints_removed: d.endpoints_removed.clone(),
        policies_upserted: d.policies_upserted.iter().map(policy).collect(),
        policies_removed: d
            .policies_removed
            .iter()
            .map(|k| types::PolicyKey { endpoint: k.endpoint, direction: direction(k.direction) })
            .collect(),
    }
}

/// One flow as WIT values.
pub fn flow(src: IpAddr, dst: IpAddr, proto: m::Protocol, port: u16) -> types::Flow {
    let (src_v4, src_v6) = match src {
        IpAddr::V4(a) => (Some(u32::from(a)), None),
        IpAddr::V6(a) => (None, Some(v6_parts(a, 128))),
    };
    let (dst_v4, dst_v6) = match dst {
        IpAddr::V4(a) => (Some(u32::from(a)), None),
        IpAddr::V6(a) => (None, Some(v6_parts(a, 128))),
    };
    types::Flow { src_v4, src_v6, dst_v4, dst_v6, protocol: protocol(proto), port }
}

/// The WIT error code's name.
pub fn error_code(c: types::ErrorCode) -> &'static str {
    match c {
        types::ErrorCode::InvalidInput => "invalid-input",
        types::ErrorCode::Capability => "capability",
        types::ErrorCode::Unsupported => "unsupported",
        types::ErrorCode::Internal => "internal",
    }
}
