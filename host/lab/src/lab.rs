//! The lab itself: building, changing, probing and tearing down.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use palisade_model::Protocol;

use crate::listener::Listener;
use crate::naming::{self, netns_path};
use crate::probe::{self, ProbeOutcome, ProbeRequest, Resolved};
use crate::spec::{LabExternal, LabPod, LabSpec};
use crate::{ip, LabError};

/// At most this many probe threads run at once.
const MAX_PARALLEL_PROBES: usize = 512;

/// A pod or an external endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Pod,
    External,
}

/// One endpoint of a running lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEndpoint {
    /// `ns/name` for a pod, `ip:...` or `node:...` for an external.
    pub key: String,
    pub kind: EndpointKind,
    pub ip: IpAddr,
    /// The name of its network namespace (`ip netns` name).
    pub netns: String,
    /// The node-side end of its veth pair, in the node namespace (where
    /// an eBPF backend attaches: TC ingress there is the endpoint's egress).
    pub host_interface: String,
    /// Ports a listener answers on.
    pub ports: Vec<(Protocol, u16)>,
    /// Declared ports without a listener (SCTP on a kernel without SCTP:
    /// probes to them are answered by the kernel's ICMP protocol
    /// unreachable).
    pub unbound: Vec<(Protocol, u16)>,
}

impl LabEndpoint {
    /// The path of its namespace, for `palisade_netns::run_in`.
    pub fn netns_path(&self) -> PathBuf {
        netns_path(&self.netns)
    }
}

/// A running lab: a node namespace that routes between one namespace per
/// pod and per external endpoint, with listeners answering on every
/// declared port.
///
/// Dropping the lab tears it down (listeners stopped, every namespace it
/// made deleted), on every exit path: also when [`Lab::up`] fails or
/// panics half way, and when a test panics while holding it. A lab killed
/// before its teardown runs is found by [`crate::leftovers`].
///
/// ```no_run
/// use palisade_lab::{Lab, LabPod, LabSpec, ProbeRequest, DEFAULT_PROBE_TIMEOUT};
/// use palisade_model::Protocol;
///
/// let spec = LabSpec {
///     pods: vec![
///         LabPod { key: "x/a".into(), ip: "10.0.0.1".parse()?, ports: vec![(Protocol::Tcp, 80)] },
///         LabPod { key: "x/b".into(), ip: "10.0.0.2".parse()?, ports: vec![(Protocol::Tcp, 80)] },
///     ],
///     ..LabSpec::default()
/// };
/// let lab = Lab::up(&spec)?;
/// // An enforcer programs rules inside lab.node_netns(); then:
/// let outcomes = lab.probe_many(&[ProbeRequest::new("x/a", "x/b", Protocol::Tcp, 80)], DEFAULT_PROBE_TIMEOUT);
/// assert!(outcomes[0].allowed, "{}", outcomes[0].detail);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Lab {
    prefix: String,
    marker: Option<PathBuf>,
    node: String,
    /// Every namespace this lab asked for, node first; teardown deletes them.
    namespaces: Vec<String>,
    endpoints: BTreeMap<String, LabEndpoint>,
    listeners: BTreeMap<String, Listener>,
    next_pod: u32,
    next_external: u32,
    sctp: Result<(), String>,
    down: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.prefix)
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Lab {
    /// Builds the lab of `spec`: the node namespace, then every endpoint
    /// with its veth, address, routes and listeners. Errors (and panics)
    /// leave nothing behind; errors name the lab prefix.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        validate(spec)?;
        let reservation = naming::reserve()?;
        let prefix = reservation.prefix.clone();
        let mut lab = Lab {
            node: format!("{prefix}-node"),
            prefix: reservation.prefix,
            marker: Some(reservation.marker),
            namespaces: Vec::new(),
            endpoints: BTreeMap::new(),
            listeners: BTreeMap::new(),
            next_pod: 0,
            next_external: 0,
            sctp: probe::sctp_supported(),
            down: false,
        };
        let wrap = |e: LabError| LabError::Up { prefix: prefix.clone(), source: Box::new(e) };
        lab.build_node().map_err(wrap)?;
        let mut new = Vec::new();
        for p in &spec.pods {
            new.push(lab.plan(EndpointKind::Pod, &p.key, p.ip, &p.ports));
        }
        for e in &spec.externals {
            new.push(lab.plan(EndpointKind::External, &e.key, e.ip, &e.ports));
        }
        lab.build_endpoints(&new).map_err(wrap)?;
        tracing::debug!(prefix = %lab.prefix, endpoints = lab.endpoints.len(), "lab up");
        Ok(lab)
    }

    /// The lab's name prefix (`pl` + 4 hex digits).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The node namespace: where an enforcer applies its rules (every
    /// packet between endpoints is forwarded there).
    pub fn node_netns(&self) -> PathBuf {
        netns_path(&self.node)
    }

    /// The `ip netns` name of the node namespace.
    pub fn node_netns_name(&self) -> &str {
        &self.node
    }

    /// The node-side veth of an endpoint (pod or external).
    pub fn host_interface(&self, key: &str) -> Option<String> {
        self.endpoints.get(key).map(|e| e.host_interface.clone())
    }

    /// One endpoint by key.
    pub fn endpoint(&self, key: &str) -> Option<&LabEndpoint> {
        self.endpoints.get(key)
    }

    /// Every endpoint, in key order.
    pub fn endpoints(&self) -> impl Iterator<Item = &LabEndpoint> {
        self.endpoints.values()
    }

    /// Whether SCTP sockets work here; `Err` says why not. SCTP ports then
    /// have no listener, and SCTP probes are made at the packet level: a
    /// raw INIT, which the destination kernel answers with ICMP protocol
    /// unreachable when it reaches the host (allowed: `Refused`, its
    /// detail says "protocol unreachable: reached the host, no SCTP
    /// stack"); silence until the timeout is denied.
    pub fn sctp_support(&self) -> Result<(), &str> {
        self.sctp.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Adds a pod to the running lab (a scenario step creating a pod).
    pub fn add_pod(&mut self, pod: &LabPod) -> Result<(), LabError> {
        self.add(EndpointKind::Pod, &pod.key, pod.ip, &pod.ports)
    }

    /// Adds an external endpoint to the running lab.
    pub fn add_external(&mut self, external: &LabExternal) -> Result<(), LabError> {
        self.add(EndpointKind::External, &external.key, external.ip, &external.ports)
    }

    /// Removes a pod (a scenario step deleting a pod): its listeners stop,
    /// its namespace and veth go. `Ok(false)` if there was no such pod.
    pub fn remove_pod(&mut self, key: &str) -> Result<bool, LabError> {
        match self.endpoints.get(key) {
            Some(e) if e.kind == EndpointKind::Pod => self.remove(key),
            _ => Ok(false),
        }
    }

    /// Removes any endpoint (pod or external). `Ok(false)` if unknown.
    pub fn remove(&mut self, key: &str) -> Result<bool, LabError> {
        let Some(endpoint) = self.endpoints.remove(key) else {
            return Ok(false);
        };
        self.listeners.remove(key);
        // A deleted namespace is destroyed asynchronously (its veth and the
        // node's route to it linger for a while): delete the veth first,
        // which takes both ends and the route at once.
        if let Err(e) =
            ip::run(Some(&self.node), &[format!("link del {}", endpoint.host_interface)])
        {
            tracing::warn!("{e}");
        }
        ip::delete_namespaces(std::slice::from_ref(&endpoint.netns))?;
        self.namespaces.retain(|n| *n != endpoint.netns);
        Ok(true)
    }

    /// Runs one probe (see [`Lab::probe_many`]).
    pub fn probe(&self, request: &ProbeRequest, timeout: Duration) -> ProbeOutcome {
        self.probe_many(std::slice::from_ref(request), timeout).remove(0)
    }

    /// Runs every probe at once, each on a thread inside its source
    /// namespace with a fresh source port, and returns the outcomes in the
    /// order of `requests`. Semantics of the scenario format: answered or
    /// refused (RST, ICMP port unreachable, SCTP ABORT; for SCTP on a kernel
    /// without SCTP, ICMP protocol unreachable) is allowed; silence until
    /// `timeout`, or another ICMP unreachable, is denied. A probe that
    /// cannot be made (unknown endpoint, socket error) gives an outcome
    /// with [`crate::Observed::Failed`].
    pub fn probe_many(&self, requests: &[ProbeRequest], timeout: Duration) -> Vec<ProbeOutcome> {
        let mut out: Vec<Option<ProbeOutcome>> = vec![None; requests.len()];
        let mut jobs = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.resolve(r) {
                Ok(job) => jobs.push((i, job)),
                Err(message) => out[i] = Some(ProbeOutcome::failed(message)),
            }
        }
        for wave in jobs.chunks(MAX_PARALLEL_PROBES) {
            let mut handles = Vec::with_capacity(wave.len());
            for (i, (netns, resolved)) in wave.iter().cloned() {
                let h = palisade_netns::spawn_in(&netns, move || probe::run(&resolved, timeout));
                handles.push((i, h));
            }
            for (i, h) in handles {
                let outcome = match h {
                    Ok(h) => match h.join() {
                        Ok(Ok(o)) => o,
                        Ok(Err(e)) => ProbeOutcome::failed(e.to_string()),
                        Err(_) => ProbeOutcome::failed("the probe thread panicked".into()),
                    },
                    Err(e) => ProbeOutcome::failed(e.to_string()),
                };
                out[i] = Some(outcome);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| ProbeOutcome::failed("probe not run".into())))
            .collect()
    }

    /// A few lines saying what the lab is made of.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lab {}: node namespace {}", self.prefix, self.node);
        for e in self.endpoints.values() {
            let ports: Vec<String> =
                e.ports.iter().map(|(p, n)| format!("{n}/{}", p.as_str())).collect();
            let kind = match e.kind {
                EndpointKind::Pod => "pod",
                EndpointKind::External => "external",
            };
            let _ = write!(
                s,
                "  {kind:<8} {:<24} {:<15} netns {:<12} veth {:<12} listens on: {}",
                e.key,
                e.ip,
                e.netns,
                e.host_interface,
                if ports.is_empty() { "-".to_string() } else { ports.join(" ") }
            );
            if !e.unbound.is_empty() {
                let unbound: Vec<String> =
                    e.unbound.iter().map(|(p, n)| format!("{n}/{}", p.as_str())).collect();
                let _ = write!(s, " (no listener: {})", unbound.join(" "));
            }
            s.push('\n');
        }
        if let Err(why) = &self.sctp {
            let _ = writeln!(s, "  note: {why}");
            let _ = writeln!(
                s,
                "  note: SCTP ports have no listener; SCTP probes send a raw INIT: ICMP protocol \
                 unreachable from the destination = reached the host (allowed), silence = denied"
            );
        }
        s
    }

    /// Tears the lab down now and reports whether every namespace went
    /// (dropping does the same, silently).
    pub fn down(mut self) -> Result<(), LabError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        // Stop the listeners first: their threads and sockets hold the
        // namespaces.
        self.listeners.clear();
        // Endpoints first, the node last.
        let mut names: Vec<String> = self.namespaces.iter().rev().cloned().collect();
        names.retain(|n| netns_path(n).exists());
        let result = ip::delete_namespaces(&names);
        if let Some(marker) = self.marker.take() {
            let _ = std::fs::remove_file(marker);
        }
        self.namespaces.clear();
        self.endpoints.clear();
        result
    }

    fn build_node(&mut self) -> Result<(), LabError> {
        self.namespaces.push(self.node.clone());
        ip::run(None, &[format!("netns add {}", self.node)])?;
        ip::run(Some(&self.node), &["link set lo up".to_string()])?;
        ip::sysctls(
            &self.node_netns(),
            vec![
                ("net/ipv4/ip_forward".into(), "1".into()),
                ("net/ipv4/icmp_ratemask".into(), "0".into()),
                ("net/ipv4/icmp_ratelimit".into(), "0".into()),
            ],
        )
    }

    /// Names an endpoint (no system change yet).
    fn plan(
        &mut self,
        kind: EndpointKind,
        key: &str,
        ip: IpAddr,
        ports: &[(Protocol, u16)],
    ) -> LabEndpoint {
        let (letter, n) = match kind {
            EndpointKind::Pod => ('p', &mut self.next_pod),
            EndpointKind::External => ('x', &mut self.next_external),
        };
        let index = *n;
        *n += 1;
        let (ports, unbound): (Vec<_>, Vec<_>) =
            ports.iter().partition(|(p, _)| *p != Protocol::Sctp || self.sctp.is_ok());
        LabEndpoint {
            key: key.to_string(),
            kind,
            ip,
            netns: format!("{}-{letter}{index}", self.prefix),
            host_interface: format!("{}{letter}{index}", self.prefix),
            ports,
            unbound,
        }
    }

    fn add(
        &mut self,
        kind: EndpointKind,
        key: &str,
        ip: IpAddr,
        ports: &[(Protocol, u16)],
    ) -> Result<(), LabError> {
        if self.down {
            return Err(LabError::Spec("the lab is down".into()));
        }
        check_endpoint(key, ip)?;
        if self.endpoints.contains_key(key) {
            return Err(LabError::Spec(format!("{key}: already in the lab")));
        }
        if let Some(other) = self.endpoints.values().find(|e| e.ip == ip) {
            return Err(LabError::Spec(format!(
                "{key}: address {ip} already belongs to {}",
                other.key
            )));
        }
        let planned = self.plan(kind, key, ip, ports);
        self.build_endpoints(&[planned])
    }

    /// Creates namespaces, veths, addresses, routes, sysctls and listeners
    /// of planned endpoints. Everything is recorded before it is made, so
    /// that a failure half way is torn down with the lab.
    fn build_endpoints(&mut self, planned: &[LabEndpoint]) -> Result<(), LabError> {
        if planned.is_empty() {
            return Ok(());
        }
        let mut root = Vec::new();
        for e in planned {
            self.namespaces.push(e.netns.clone());
            self.endpoints.insert(e.key.clone(), e.clone());
            root.push(format!("netns add {}", e.netns));
        }
        for e in planned {
            root.push(format!(
                "link add {} netns {} type veth peer name eth0 netns {}",
                e.host_interface, self.node, e.netns
            ));
        }
        ip::run(None, &root)?;

        let mut batches = Vec::new();
        let mut node = Vec::new();
        let mut node_sysctls = Vec::new();
        for e in planned {
            node.push(format!("link set {} up", e.host_interface));
            node.push(format!("route add {}/32 dev {}", e.ip, e.host_interface));
            node_sysctls
                .push((format!("net/ipv4/conf/{}/proxy_arp", e.host_interface), "1".into()));
            node_sysctls
                .push((format!("net/ipv4/neigh/{}/proxy_delay", e.host_interface), "0".into()));
            batches.push((
                Some(e.netns.clone()),
                vec![
                    "link set lo up".to_string(),
                    "link set eth0 up".to_string(),
                    format!("addr add {}/32 dev eth0", e.ip),
                    "route add default dev eth0".to_string(),
                ],
            ));
        }
        batches.push((Some(self.node.clone()), node));
        ip::run_parallel(batches)?;
        ip::sysctls(&self.node_netns(), node_sysctls)?;

        for e in planned {
            let listener = Listener::start(&e.key, &e.netns_path(), &e.ports, self.sctp.is_ok())?;
            self.listeners.insert(e.key.clone(), listener);
        }
        Ok(())
    }

    fn resolve(&self, r: &ProbeRequest) -> Result<(PathBuf, Resolved), String> {
        let from = self
            .endpoints
            .get(&r.from)
            .ok_or_else(|| format!("`{}` is no endpoint of lab {}", r.from, self.prefix))?;
        let (ip, expect) = match self.endpoints.get(&r.to) {
            Some(to) => (to.ip, Some(to.key.clone())),
            None => {
                let ip: IpAddr =
                    r.to.strip_prefix("ip:").and_then(|a| a.parse().ok()).ok_or_else(|| {
                        format!(
                            "`{}` is no endpoint of lab {} (nor `ip:ADDRESS`)",
                            r.to, self.prefix
                        )
                    })?;
                let owner = self.endpoints.values().find(|e| e.ip == ip).map(|e| e.key.clone());
                (ip, owner)
            }
        };
        let IpAddr::V4(v4) = ip else {
            return Err(format!("`{}`: the lab routes IPv4 only", r.to));
        };
        if r.port == 0 {
            return Err("port 0 cannot be probed".into());
        }
        Ok((
            from.netns_path(),
            Resolved {
                dst: SocketAddrV4::new(v4, r.port),
                protocol: r.protocol,
                expect,
                to: r.to.clone(),
                sctp_raw: r.protocol == Protocol::Sctp && self.sctp.is_err(),
            },
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(prefix = %self.prefix, "lab teardown incomplete: {e}");
            eprintln!("palisade-lab: teardown of lab {} incomplete: {e}", self.prefix);
        }
    }
}

fn check_endpoint(key: &str, ip: IpAddr) -> Result<(), LabError> {
    if key.is_empty() || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(LabError::Spec(format!(
            "`{key}`: an endpoint key is one word of printable characters"
        )));
    }
    match ip {
        IpAddr::V4(v4) if usable(v4) => Ok(()),
        IpAddr::V4(v4) => Err(LabError::Spec(format!("{key}: {v4} cannot be an endpoint address"))),
        IpAddr::V6(v6) => Err(LabError::Spec(format!(
            "{key}: {v6}: the lab routes IPv4 only (proxy ARP through the node namespace)"
        ))),
    }
}

fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
}

fn validate(spec: &LabSpec) -> Result<(), LabError> {
    let mut keys = BTreeMap::new();
    let mut ips = BTreeMap::new();
    let all = spec
        .pods
        .iter()
        .map(|p| (&p.key, p.ip))
        .chain(spec.externals.iter().map(|e| (&e.key, e.ip)));
    for (key, ip) in all {
        check_endpoint(key, ip)?;
        if keys.insert(key.clone(), ()).is_some() {
            return Err(LabError::Spec(format!("{key}: twice in the lab spec")));
        }
        if let Some(other) = ips.insert(ip, key.clone()) {
            return Err(LabError::Spec(format!("{key}: address {ip} already belongs to {other}")));
        }
    }
    Ok(())
}
