//! `networking.k8s.io/v1` NetworkPolicy, and the shared shape of
//! `extensions/v1beta1` NetworkPolicy (which differs only in how protocols
//! may be spelled and in when it is in force, see [`crate::v1beta1`]).

use palisade_model::policy::{
    NamespaceScope, ObjectRef, Order, PeerSelector, PodSet, Policy, PolicyRule, PortSelector,
    TierRank,
};
use palisade_model::{Action, Protocol};
use serde_json::{Map, Value};

use crate::error::{DialectError, Problem};
use crate::field::{get, index, join, opt_list, opt_map, Ctx};
use crate::selector::label_selector;
use crate::validate::{self, ProtocolSpelling};

/// The object kind string of policies compiled from this dialect.
pub const KIND: &str = "networking.k8s.io/v1 NetworkPolicy";

/// The two groups that serve the NetworkPolicy shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `networking.k8s.io/v1`.
    V1,
    /// `extensions/v1beta1`.
    V1Beta1,
}

impl Flavor {
    fn kind(self) -> &'static str {
        match self {
            Flavor::V1 => KIND,
            Flavor::V1Beta1 => crate::v1beta1::KIND,
        }
    }

    fn spelling(self) -> ProtocolSpelling {
        match self {
            Flavor::V1 => ProtocolSpelling::Exact,
            Flavor::V1Beta1 => ProtocolSpelling::AnyCase,
        }
    }
}

/// Which way a rule list points.
#[derive(Clone, Copy)]
enum Way {
    Ingress,
    Egress,
}

impl Way {
    fn field(self) -> &'static str {
        match self {
            Way::Ingress => "ingress",
            Way::Egress => "egress",
        }
    }

    fn peers(self) -> &'static str {
        match self {
            Way::Ingress => "from",
            Way::Egress => "to",
        }
    }
}

/// Compiles a (defaulted) NetworkPolicy object of namespace `namespace`.
/// Every rule is validated, also those of a direction not listed in
/// `policyTypes` (the API server validates them too).
pub(crate) fn compile(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    namespace: &str,
    name: &str,
    flavor: Flavor,
) -> Result<Policy, DialectError> {
    let empty = Map::new();
    let spec = opt_map(ctx, object, "spec", "")?.unwrap_or(&empty);
    let pods = match get(spec, "podSelector") {
        Some(v) => label_selector(ctx, v, "spec.podSelector")?,
        None => Default::default(),
    };
    let ingress = rules(ctx, spec, Way::Ingress, namespace, flavor)?;
    let egress = rules(ctx, spec, Way::Egress, namespace, flavor)?;
    let (has_ingress, has_egress) = policy_types(ctx, spec, !egress.is_empty())?;
    Ok(Policy {
        object: ObjectRef {
            kind: flavor.kind().to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        tier: TierRank::NetworkPolicy,
        order: Some(Order::NETWORK_POLICY),
        order_name: format!("knp.default.{name}"),
        subject: PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods,
            ..PodSet::default()
        },
        ingress: has_ingress.then_some(ingress),
        egress: has_egress.then_some(egress),
    })
}

/// Which directions `spec.policyTypes` lists. Absent (only possible for
/// an object that skipped the store's defaulting): the API server's default.
fn policy_types(
    ctx: &Ctx<'_>,
    spec: &Map<String, Value>,
    has_egress_rules: bool,
) -> Result<(bool, bool), DialectError> {
    let Some(types) = opt_list(ctx, spec, "policyTypes", "spec")? else {
        return Ok((true, has_egress_rules));
    };
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        let path = index("spec.policyTypes", i);
        match ctx.str(t, &path)? {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => return Err(ctx.invalid(&path, Problem::PolicyType(other.to_string()))),
        }
    }
    Ok((ingress, egress))
}

fn rules(
    ctx: &mut Ctx<'_>,
    spec: &Map<String, Value>,
    way: Way,
    namespace: &str,
    flavor: Flavor,
) -> Result<Vec<PolicyRule>, DialectError> {
    let list_path = join("spec", way.field());
    let mut out = Vec::new();
    for (i, rule) in
        opt_list(ctx, spec, way.field(), "spec")?.unwrap_or_default().iter().enumerate()
    {
        let label = index(way.field(), i);
        let path = index(&list_path, i);
        let rule = ctx.map(rule, &path)?;
        let peers_path = join(&path, way.peers());
        let mut peers = Vec::new();
        for (j, peer_value) in
            opt_list(ctx, rule, way.peers(), &path)?.unwrap_or_default().iter().enumerate()
        {
            peers.push(peer(ctx, peer_value, &index(&peers_path, j), namespace)?);
        }
        if peers.is_empty() {
            peers.push(PeerSelector::Any);
        }
        let ports_path = join(&path, "ports");
        let mut ports = Vec::new();
        for (j, p) in opt_list(ctx, rule, "ports", &path)?.unwrap_or_default().iter().enumerate() {
            ports.push(port(ctx, p, &index(&ports_path, j), Protocol::Tcp, flavor.spelling())?);
        }
        out.push(PolicyRule { action: Action::Allow, peers, ports, label, local: None });
    }
    Ok(out)
}

fn peer(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
    namespace: &str,
) -> Result<PeerSelector, DialectError> {
    let map = ctx.map(value, path)?;
    let pods = get(map, "podSelector")
        .map(|v| label_selector(ctx, v, &join(path, "podSelector")))
        .transpose()?;
    let namespaces = get(map, "namespaceSelector")
        .map(|v| label_selector(ctx, v, &join(path, "namespaceSelector")))
        .transpose()?;
    let block = get(map, "ipBlock");
    match (pods, namespaces, block) {
        (None, None, None) => Err(ctx.invalid(path, Problem::EmptyPeer)),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err(ctx.invalid(&join(path, "ipBlock"), Problem::PeerConflict))
        }
        (None, None, Some(block)) => ip_block(ctx, block, &join(path, "ipBlock")),
        (Some(pods), None, None) => Ok(PeerSelector::Pods(PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods,
            ..PodSet::default()
        })),
        (pods, Some(namespaces), None) => Ok(PeerSelector::Pods(PodSet {
            namespaces: NamespaceScope::Selector(namespaces),
            pods: pods.unwrap_or_default(),
            ..PodSet::default()
        })),
    }
}

fn ip_block(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<PeerSelector, DialectError> {
    let map = ctx.map(value, path)?;
    let cidr_path = join(path, "cidr");
    let Some(cidr_value) = get(map, "cidr") else {
        return Err(ctx.invalid(&cidr_path, Problem::Missing));
    };
    let cidr = validate::cidr(ctx, cidr_value, &cidr_path)?;
    let cidr_text = cidr_value.as_str().unwrap_or_default();
    let except_path = join(path, "except");
    let mut except = Vec::new();
    for (i, e) in opt_list(ctx, map, "except", path)?.unwrap_or_default().iter().enumerate() {
        except.push(validate::except(ctx, e, &index(&except_path, i), cidr, cidr_text)?);
    }
    Ok(PeerSelector::IpBlock { cidr, except })
}

/// A NetworkPolicy port entry `{protocol, port, endPort}`; a missing
/// protocol is `default_protocol`, a missing port every port of the protocol.
pub(crate) fn port(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
    default_protocol: Protocol,
    spelling: ProtocolSpelling,
) -> Result<PortSelector, DialectError> {
    let map = ctx.map(value, path)?;
    let protocol = match get(map, "protocol") {
        Some(p) => validate::protocol(ctx, p, &join(path, "protocol"), spelling)?,
        None => default_protocol,
    };
    let end_path = join(path, "endPort");
    let end = get(map, "endPort");
    match get(map, "port") {
        None => match end {
            Some(_) => Err(ctx.invalid(&end_path, Problem::EndPortWithoutPort)),
            None => Ok(PortSelector::Range { protocol, first: 1, last: u16::MAX }),
        },
        Some(v @ Value::String(_)) => {
            let name = validate::port_name(ctx, v, &join(path, "port"))?;
            match end {
                Some(_) => Err(ctx.invalid(&end_path, Problem::EndPortWithNamedPort(name.into()))),
                None => Ok(PortSelector::Named { protocol, name: name.to_string() }),
            }
        }
        Some(v) => {
            let first = validate::port_number(ctx, v, &join(path, "port"))?;
            let last = match end {
                Some(e) => validate::port_number(ctx, e, &end_path)?,
                None => first,
            };
            if last < first {
                return Err(
                    ctx.invalid(&end_path, Problem::EndPortBelowPort { port: first, end: last })
                );
            }
            Ok(PortSelector::Range { protocol, first, last })
        }
    }
}
