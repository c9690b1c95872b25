//! What a lab is made of: pods and external endpoints, each with one
//! address and the ports it listens on.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_model::policy::{Node, Pod};
use palisade_model::{ModelEvent, Protocol};

/// A pod of the lab: a network namespace of its own with `ip`/32 on `eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPod {
    /// `namespace/name`: the pod's identity, which its listeners answer with.
    pub key: String,
    /// Its address (IPv4: the lab routes with proxy ARP).
    pub ip: IpAddr,
    /// The declared container ports; a listener answers on each. Other
    /// ports are closed (a probe to them is refused by the pod).
    pub ports: Vec<(Protocol, u16)>,
}

impl LabPod {
    /// The lab pod of a model pod: its first IPv4 address and its
    /// container ports. `Err` says why the pod has no place in a lab
    /// (finished, host network, no IPv4 address).
    pub fn from_model(pod: &Pod) -> Result<LabPod, String> {
        let key = pod.key();
        if !pod.active {
            return Err(format!("{key}: finished pod (no endpoint)"));
        }
        if pod.host_network {
            return Err(format!("{key}: hostNetwork pod (uses the node's address)"));
        }
        let ip = pod
            .ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .copied()
            .ok_or_else(|| format!("{key}: no IPv4 address"))?;
        let mut ports: Vec<(Protocol, u16)> =
            pod.ports.iter().map(|p| (p.protocol, p.port)).collect();
        ports.sort();
        ports.dedup();
        Ok(LabPod { key, ip, ports })
    }
}

/// An endpoint outside the cluster: a network namespace of its own, routed
/// through the node namespace exactly like a pod, so that its traffic is
/// forwarded by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabExternal {
    /// As the scenario writes it: `ip:A.B.C.D` or `node:NAME`. Its
    /// listeners answer with this string.
    pub key: String,
    pub ip: IpAddr,
    /// Ports to listen on (often none: a probe to a closed port is refused,
    /// which still shows that it got through).
    pub ports: Vec<(Protocol, u16)>,
}

impl LabExternal {
    /// The external `ip:ADDRESS`.
    pub fn ip(ip: IpAddr) -> LabExternal {
        LabExternal { key: format!("ip:{ip}"), ip, ports: Vec::new() }
    }

    /// The external `node:NAME`: the node's first IPv4 address (the model
    /// keeps `InternalIP` and `ExternalIP` addresses in the object's order).
    pub fn node(node: &Node) -> Result<LabExternal, String> {
        let ip = node
            .addresses
            .iter()
            .find(|ip| ip.is_ipv4())
            .copied()
            .ok_or_else(|| format!("node:{}: no IPv4 address", node.name))?;
        Ok(LabExternal { key: format!("node:{}", node.name), ip, ports: Vec::new() })
    }

    /// An external from a scenario endpoint name (`ip:ADDRESS`; `node:NAME`
    /// needs its address, so give it as `ip`).
    pub fn named(key: &str, ip: IpAddr) -> LabExternal {
        LabExternal { key: key.to_string(), ip, ports: Vec::new() }
    }
}

/// Everything a lab is built from. Keys and addresses must be unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabSpec {
    pub pods: Vec<LabPod>,
    pub externals: Vec<LabExternal>,
    /// What a `from_*` constructor left out, and why (one line each).
    pub notes: Vec<String>,
}

impl LabSpec {
    /// A lab of model pods (see [`LabPod::from_model`]) and of one external
    /// `node:NAME` per node that has an IPv4 address. Pods and nodes left
    /// out are listed in `notes`.
    pub fn from_model(pods: &[Pod], nodes: &[Node]) -> LabSpec {
        let mut spec = LabSpec::default();
        for pod in pods {
            match LabPod::from_model(pod) {
                Ok(p) => spec.pods.push(p),
                Err(why) => spec.notes.push(why),
            }
        }
        for node in nodes {
            match LabExternal::node(node) {
                Ok(e) => spec.externals.push(e),
                Err(why) => spec.notes.push(why),
            }
        }
        spec.drop_conflicts();
        spec
    }

    /// The pods and nodes the events leave in place (the last upsert wins, a
    /// delete removes), as [`LabSpec::from_model`].
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ModelEvent>) -> LabSpec {
        let mut pods: BTreeMap<(String, String), Pod> = BTreeMap::new();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for event in events {
            match event {
                ModelEvent::PodUpserted(p) => {
                    pods.insert((p.namespace.clone(), p.name.clone()), p.clone());
                }
                ModelEvent::PodDeleted { namespace, name } => {
                    pods.remove(&(namespace.clone(), name.clone()));
                }
                ModelEvent::NodeUpserted(n) => {
                    nodes.insert(n.name.clone(), n.clone());
                }
                ModelEvent::NodeDeleted { name } => {
                    nodes.remove(name);
                }
                _ => {}
            }
        }
        let pods: Vec<Pod> = pods.into_values().collect();
        let nodes: Vec<Node> = nodes.into_values().collect();
        LabSpec::from_model(&pods, &nodes)
    }

    /// Adds an external, or merges its ports into the external of the same
    /// key. An address already used by another endpoint is noted and left
    /// out.
    pub fn add_external(&mut self, external: LabExternal) {
        if let Some(e) = self.externals.iter_mut().find(|e| e.key == external.key) {
            e.ports.extend(external.ports);
            e.ports.sort();
            e.ports.dedup();
            return;
        }
        if let Some(owner) = self.owner_of(external.ip) {
            self.notes.push(format!(
                "{}: address {} already belongs to {owner} (left out)",
                external.key, external.ip
            ));
            return;
        }
        self.externals.push(external);
    }

    /// The key of the endpoint with address `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&str> {
        self.pods
            .iter()
            .map(|p| (&p.key, p.ip))
            .chain(self.externals.iter().map(|e| (&e.key, e.ip)))
            .find(|(_, a)| *a == ip)
            .map(|(k, _)| k.as_str())
    }

    /// Every endpoint as `(key, ip, ports)`, pods first.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, IpAddr, &[(Protocol, u16)])> {
        self.pods
            .iter()
            .map(|p| (p.key.as_str(), p.ip, p.ports.as_slice()))
            .chain(self.externals.iter().map(|e| (e.key.as_str(), e.ip, e.ports.as_slice())))
    }

    /// Leaves out endpoints whose address an earlier one already has.
    fn drop_conflicts(&mut self) {
        let mut seen: BTreeMap<IpAddr, String> = BTreeMap::new();
        let mut notes = Vec::new();
        self.pods.retain(|p| match seen.get(&p.ip) {
            Some(owner) => {
                notes.push(format!("{}: address {} already belongs to {owner}", p.key, p.ip));
                false
            }
            None => {
                seen.insert(p.ip, p.key.clone());
                true
            }
        });
        self.externals.retain(|e| match seen.get(&e.ip) {
            Some(owner) => {
                notes.push(format!("{}: address {} already belongs to {owner}", e.key, e.ip));
                false
            }
            None => {
                seen.insert(e.ip, e.key.clone());
                true
            }
        });
        self.notes.extend(notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_model::policy::ContainerPort;

    fn pod(ns: &str, name: &str, ip: &str, ports: &[(Protocol, u16)]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: Default::default(),
            node: None,
            ips: vec![ip.parse().unwrap()],
            ports: ports
                .iter()
                .map(|(protocol, port)| ContainerPort {
                    name: None,
                    port: *port,
                    protocol: *protocol,
                })
                .collect(),
            host_network: false,
            active: true,
            service_account: "default".into(),
        }
    }

    #[test]
    fn model_pods_and_nodes_become_lab_endpoints() {
        let pods = vec![
            pod(
                "x",
                "a",
                "10.0.0.1",
                &[(Protocol::Udp, 53), (Protocol::Tcp, 80), (Protocol::Tcp, 80)],
            ),
            pod("x", "v6", "fd00::1", &[]),
            pod("y", "dup", "10.0.0.1", &[]),
        ];
        let nodes =
            vec![Node { name: "n1".into(), addresses: vec!["172.18.0.2".parse().unwrap()] }];
        let spec = LabSpec::from_model(&pods, &nodes);
        assert_eq!(spec.pods.len(), 1);
        assert_eq!(spec.pods[0].key, "x/a");
        assert_eq!(spec.pods[0].ports, vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)]);
        assert_eq!(spec.externals[0].key, "node:n1");
        assert_eq!(spec.notes.len(), 2, "{:?}", spec.notes);
    }

    #[test]
    fn externals_merge_ports_and_refuse_taken_addresses() {
        let mut spec = LabSpec::from_model(&[pod("x", "a", "10.0.0.1", &[])], &[]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        spec.add_external(LabExternal { ports: vec![(Protocol::Tcp, 80)], ..LabExternal::ip(ip) });
        spec.add_external(LabExternal { ports: vec![(Protocol::Udp, 53)], ..LabExternal::ip(ip) });
        assert_eq!(spec.externals.len(), 1);
        assert_eq!(spec.externals[0].ports.len(), 2);
        spec.add_external(LabExternal::ip("10.0.0.1".parse().unwrap()));
        assert_eq!(spec.externals.len(), 1);
        assert_eq!(spec.owner_of("10.0.0.1".parse().unwrap()), Some("x/a"));
    }
}
