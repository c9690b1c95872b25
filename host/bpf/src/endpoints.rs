//! Which interface stands for an endpoint: the host's table of endpoint ids
//! and addresses, and the node namespace's routes.
//!
//! A plugin names endpoints by id only. The host keeps [`EndpointTable`]
//! (recorded from every rule set and delta before the plugin sees it); the
//! dataplane resolves an id to its IPv4 addresses, and an address to the
//! device of its host route (`/32`, no gateway) in the node namespace: the
//! node-side veth of a pod, in the lab as on a real node. An address without
//! such a route has no interface to attach to, so nothing else (an uplink,
//! a default route's device) can ever be named through an endpoint.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use palisade_model::Endpoint;

/// The host's endpoint ids and their IPv4 addresses, recorded by the plugin
/// host before it hands a rule set or delta to a plugin.
#[derive(Debug, Clone, Default)]
pub struct EndpointTable(Arc<RwLock<HashMap<u32, Vec<Ipv4Addr>>>>);

impl EndpointTable {
    pub fn new() -> EndpointTable {
        EndpointTable::default()
    }

    /// Replaces the table with `endpoints` (`full`), or upserts them and
    /// removes `removed` (a delta).
    pub fn record(&self, endpoints: &[Endpoint], removed: &[u32], full: bool) {
        let v4 = |e: &Endpoint| -> Vec<Ipv4Addr> {
            e.addresses
                .iter()
                .filter_map(|a| match a {
                    std::net::IpAddr::V4(v4) => Some(*v4),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        };
        if let Ok(mut table) = self.0.write() {
            if full {
                table.clear();
            }
            for id in removed {
                table.remove(id);
            }
            for e in endpoints {
                table.insert(e.id, v4(e));
            }
        }
    }

    /// Sets one endpoint's addresses (tests, and hosts without a rule set).
    pub fn set(&self, id: u32, addresses: Vec<Ipv4Addr>) {
        if let Ok(mut guard) = self.0.write() {
            guard.insert(id, addresses);
        }
    }

    /// The IPv4 addresses of endpoint `id`, if the host knows it.
    pub fn addresses(&self, id: u32) -> Option<Vec<Ipv4Addr>> {
        self.0.read().ok()?.get(&id).cloned()
    }
}

/// One line of the kernel's IPv4 routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub device: String,
    pub destination: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub up: bool,
}

/// Parses `/proc/net/route` text (addresses as the kernel's hex of the
/// network-order word, read on a little-endian machine).
pub fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.to_le_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(Route {
                device: f[0].to_string(),
                destination: hex(f[1])?,
                gateway: hex(f[2])?,
                up: u32::from_str_radix(f[3], 16).ok()? & 1 == 1,
                mask: hex(f[7])?,
            })
        })
        .collect()
}

/// The device of the host route (`/32`, up, no gateway) of `address`.
pub fn host_route_device(routes: &[Route], address: Ipv4Addr) -> Option<&str> {
    routes
        .iter()
        .find(|r| {
            r.up && r.destination == address
                && r.mask == Ipv4Addr::BROADCAST
                && r.gateway == Ipv4Addr::UNSPECIFIED
        })
        .map(|r| r.device.as_str())
}

/// The routes of the calling thread's network namespace.
pub fn routes_here() -> std::io::Result<Vec<Route>> {
    Ok(parse_routes(&std::fs::read_to_string("/proc/thread-self/net/route")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
vp3\t0300000A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn only_a_host_route_without_gateway_names_a_device() {
        let routes = parse_routes(TABLE);
        assert_eq!(routes.len(), 3);
        assert_eq!(host_route_device(&routes, Ipv4Addr::new(10, 0, 0, 3)), Some("vp3"));
        // Covered by the /24 and the default route, but no host route.
        assert_eq!(host_route_device(&routes, Ipv4Addr::new(10, 0, 0, 4)), None);
        assert_eq!(host_route_device(&routes, Ipv4Addr::new(10, 0, 0, 1)), None);
    }
}
