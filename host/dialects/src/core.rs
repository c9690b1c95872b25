//! Core objects: Namespace, Pod, Node.

use std::net::IpAddr;

use palisade_model::policy::{ContainerPort, Namespace, Node, Pod};
use palisade_model::Protocol;
use serde_json::{Map, Value};

use crate::error::{DialectError, Problem};
use crate::field::{get, index, join, opt_list, opt_map, opt_str, Ctx};
use crate::selector::object_labels;
use crate::validate::{self, ProtocolSpelling};
use crate::Settings;

/// A compiled Namespace: the model object plus the isolation switches the
/// dialects read from it.
pub(crate) struct NamespaceObject {
    pub(crate) model: Namespace,
    /// The beta DefaultDeny annotation is present.
    pub(crate) default_deny: bool,
    /// 2016 `spec.isolation` is on.
    pub(crate) isolated: bool,
}

/// Compiles a (defaulted) Namespace.
pub(crate) fn namespace(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    name: &str,
    settings: &Settings,
) -> Result<NamespaceObject, DialectError> {
    let labels = object_labels(ctx, object)?;
    let annotations = match opt_map(ctx, object, "metadata", "")? {
        Some(meta) => opt_map(ctx, meta, "annotations", "metadata")?,
        None => None,
    };
    // Annotation values must be strings, as the API server requires.
    if let Some(annotations) = annotations {
        for (key, v) in annotations {
            if !v.is_null() {
                ctx.str(v, &join("metadata.annotations", key))?;
            }
        }
    }
    let default_deny = annotations
        .map(|a| crate::v1beta1::default_deny(ctx, a, settings.romana_annotation))
        .unwrap_or(false);
    let isolated = crate::experimental::isolation(ctx, object);
    Ok(NamespaceObject {
        model: Namespace { name: name.to_string(), labels },
        default_deny,
        isolated,
    })
}

/// Compiles a (defaulted) Pod. A pod without an address is still a pod; it
/// just has no addresses yet.
pub(crate) fn pod(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    namespace: &str,
    name: &str,
) -> Result<Pod, DialectError> {
    let labels = object_labels(ctx, object)?;
    let empty = Map::new();
    let spec = opt_map(ctx, object, "spec", "")?.unwrap_or(&empty);
    let node =
        opt_str(ctx, spec, "nodeName", "spec")?.filter(|n| !n.is_empty()).map(str::to_string);
    let service_account = opt_str(ctx, spec, "serviceAccountName", "spec")?
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    let host_network = match get(spec, "hostNetwork") {
        Some(v) => ctx.bool(v, "spec.hostNetwork")?,
        None => false,
    };
    let mut ports = Vec::new();
    for list in ["initContainers", "containers"] {
        let list_path = join("spec", list);
        for (i, c) in opt_list(ctx, spec, list, "spec")?.unwrap_or_default().iter().enumerate() {
            let path = index(&list_path, i);
            let container = ctx.map(c, &path)?;
            // Only init containers that keep running (sidecars) serve ports.
            let serves = list == "containers"
                || opt_str(ctx, container, "restartPolicy", &path)? == Some("Always");
            let ports_path = join(&path, "ports");
            for (j, p) in
                opt_list(ctx, container, "ports", &path)?.unwrap_or_default().iter().enumerate()
            {
                let port = container_port(ctx, p, &index(&ports_path, j))?;
                if serves {
                    ports.push(port);
                }
            }
        }
    }
    let status = opt_map(ctx, object, "status", "")?.unwrap_or(&empty);
    let mut ips = Vec::new();
    for (i, entry) in
        opt_list(ctx, status, "podIPs", "status")?.unwrap_or_default().iter().enumerate()
    {
        let path = index("status.podIPs", i);
        let entry = ctx.map(entry, &path)?;
        if let Some(ip) = opt_str(ctx, entry, "ip", &path)? {
            push_unique(&mut ips, ip_addr(ctx, ip, &join(&path, "ip"))?);
        }
    }
    if let Some(ip) = opt_str(ctx, status, "podIP", "status")?.filter(|ip| !ip.is_empty()) {
        let ip = ip_addr(ctx, ip, "status.podIP")?;
        if ips.is_empty() {
            ips.push(ip);
        }
    }
    let phase = opt_str(ctx, status, "phase", "status")?;
    let active = !matches!(phase, Some("Succeeded" | "Failed"));
    Ok(Pod {
        namespace: namespace.to_string(),
        name: name.to_string(),
        labels,
        node,
        ips,
        ports,
        host_network,
        active,
        service_account,
    })
}

fn container_port(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
) -> Result<ContainerPort, DialectError> {
    let map = ctx.map(value, path)?;
    let port_path = join(path, "containerPort");
    let port = match get(map, "containerPort") {
        Some(v) => validate::port_number(ctx, v, &port_path)?,
        None => return Err(ctx.invalid(&port_path, Problem::Missing)),
    };
    let name = match get(map, "name") {
        Some(v) => Some(validate::port_name(ctx, v, &join(path, "name"))?.to_string()),
        None => None,
    };
    let protocol = match get(map, "protocol") {
        Some(v) => validate::protocol(ctx, v, &join(path, "protocol"), ProtocolSpelling::Exact)?,
        None => Protocol::Tcp,
    };
    Ok(ContainerPort { name, port, protocol })
}

/// Compiles a Node: its InternalIP and ExternalIP addresses.
pub(crate) fn node(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    name: &str,
) -> Result<Node, DialectError> {
    let mut addresses = Vec::new();
    if let Some(status) = opt_map(ctx, object, "status", "")? {
        let list = opt_list(ctx, status, "addresses", "status")?.unwrap_or_default();
        for (i, entry) in list.iter().enumerate() {
            let path = index("status.addresses", i);
            let entry = ctx.map(entry, &path)?;
            if !matches!(opt_str(ctx, entry, "type", &path)?, Some("InternalIP" | "ExternalIP")) {
                continue;
            }
            if let Some(address) = opt_str(ctx, entry, "address", &path)? {
                push_unique(&mut addresses, ip_addr(ctx, address, &join(&path, "address"))?);
            }
        }
    }
    Ok(Node { name: name.to_string(), addresses })
}

fn ip_addr(ctx: &Ctx<'_>, text: &str, path: &str) -> Result<IpAddr, DialectError> {
    text.parse().map_err(|_| ctx.invalid(path, Problem::BadIp(text.to_string())))
}

fn push_unique(list: &mut Vec<IpAddr>, ip: IpAddr) {
    if !list.contains(&ip) {
        list.push(ip);
    }
}
