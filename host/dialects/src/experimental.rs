//! The 2016 proposal: `experimental.kubernetes.io/v1` NetworkPolicy and
//! namespace isolation (`spec.isolation` on the Namespace).
//!
//! Two forms of the policy object are read:
//! * the proposal form: `spec.selector` (a label map) and `spec.allowFrom`,
//!   a list of entries `{namespaces: labels, pods: labels, protocol, ports}`,
//!   each entry one allow rule;
//! * the demo form: top-level `selector` and `allowIncoming: {pods: [labels],
//!   namespaces: [labels], ports: [{protocol, port}]}`, one allow rule from
//!   any listed source on any listed port.
//!
//! Rules only allow ingress; a policy is in force only while its namespace
//! is isolated. Isolation itself is an implicit policy of the namespace
//! ([`isolation_policy`]) selecting all its pods for ingress, with a single
//! rule allowing the nodes.

use palisade_model::policy::{
    LabelSelector, NamespaceScope, ObjectRef, PeerSelector, PodSet, Policy, PolicyRule,
    PortSelector, TierRank,
};
use palisade_model::{Action, Protocol};
use serde_json::{Map, Value};

use crate::error::DialectError;
use crate::field::{get, index, join, Ctx};
use crate::selector::label_map_selector;
use crate::v1beta1::NAMESPACE_KIND;
use crate::validate::{self, ProtocolSpelling};

/// The object kind string of policies compiled from this dialect.
pub const KIND: &str = "experimental.kubernetes.io/v1 NetworkPolicy";

/// The label of the rule by which an isolated namespace admits its nodes.
pub const NODE_EXEMPTION: &str = "node-exemption";

/// Reads `spec.isolation` of a Namespace: `yes`/`no` (also `true`/`false`,
/// `on`/`off`, any case, or a boolean). Anything else is a warning and
/// means off.
pub(crate) fn isolation(ctx: &mut Ctx<'_>, namespace: &Map<String, Value>) -> bool {
    let Some(spec) = get(namespace, "spec") else { return false };
    let Some(value) = spec.as_object().and_then(|s| get(s, "isolation")) else { return false };
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => true,
            "no" | "false" | "off" | "" => false,
            _ => {
                ctx.warn("spec.isolation", format!("`{s}` is not yes or no; isolation off"));
                false
            }
        },
        other => {
            ctx.warn("spec.isolation", format!("`{other}` is not yes or no; isolation off"));
            false
        }
    }
}

/// The implicit policy of an isolated namespace: every pod of it, ingress
/// governed, one rule allowing the nodes (label [`NODE_EXEMPTION`]).
/// Identity: kind [`NAMESPACE_KIND`], the namespace, and the name
/// `<namespace>:spec.isolation` (a `:` cannot occur in a Kubernetes name,
/// so it never collides with the DefaultDeny policy named after the
/// namespace).
pub fn isolation_policy(namespace: &str) -> Policy {
    Policy {
        order: None,
        order_name: String::new(),
        object: isolation_ref(namespace),
        tier: TierRank::NetworkPolicy,
        subject: PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods: LabelSelector::everything(),
            ..PodSet::default()
        },
        ingress: Some(vec![PolicyRule {
            action: Action::Allow,
            peers: vec![PeerSelector::Nodes],
            ports: Vec::new(),
            label: NODE_EXEMPTION.to_string(),
            local: None,
        }]),
        egress: None,
    }
}

/// The identity of [`isolation_policy`].
pub fn isolation_ref(namespace: &str) -> ObjectRef {
    ObjectRef {
        kind: NAMESPACE_KIND.to_string(),
        namespace: namespace.to_string(),
        name: format!("{namespace}:spec.isolation"),
    }
}

/// Compiles a 2016 policy object of namespace `namespace`.
pub(crate) fn compile(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    namespace: &str,
    name: &str,
) -> Result<Policy, DialectError> {
    // A field is looked up under `spec` first (proposal form), then at the
    // top level (demo form).
    let spec = match get(object, "spec") {
        Some(v) => Some(ctx.map(v, "spec")?),
        None => None,
    };
    let lookup = |key: &str| -> Option<(&Value, String)> {
        spec.and_then(|s| get(s, key))
            .map(|v| (v, join("spec", key)))
            .or_else(|| get(object, key).map(|v| (v, key.to_string())))
    };
    let pods = match lookup("selector") {
        Some((v, path)) => label_map_selector(ctx, v, &path)?,
        None => LabelSelector::everything(),
    };
    let mut rules = Vec::new();
    if let Some((v, path)) = lookup("allowFrom") {
        for (i, entry) in ctx.list(v, &path)?.iter().enumerate() {
            rules.push(allow_from(ctx, entry, &index(&path, i), namespace, index("allowFrom", i))?);
        }
    }
    if let Some((v, path)) = lookup("allowIncoming") {
        match v {
            Value::Array(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let label = index("allowIncoming", i);
                    rules.push(allow_incoming(ctx, entry, &index(&path, i), namespace, label)?);
                }
            }
            entry => {
                let label = "allowIncoming".to_string();
                rules.push(allow_incoming(ctx, entry, &path, namespace, label)?);
            }
        }
    }
    Ok(Policy {
        order: None,
        order_name: String::new(),
        object: ObjectRef {
            kind: KIND.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        tier: TierRank::NetworkPolicy,
        subject: PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods,
            ..PodSet::default()
        },
        ingress: Some(rules),
        egress: None,
    })
}

/// One proposal-form entry. `pods` alone: pods of the policy's namespace;
/// `namespaces` alone: all pods of matching namespaces; both: pods matching
/// `pods` in namespaces matching `namespaces`; neither: every source.
fn allow_from(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
    namespace: &str,
    label: String,
) -> Result<PolicyRule, DialectError> {
    let entry = ctx.map(value, path)?;
    let pods =
        get(entry, "pods").map(|v| label_map_selector(ctx, v, &join(path, "pods"))).transpose()?;
    let namespaces = get(entry, "namespaces")
        .map(|v| label_map_selector(ctx, v, &join(path, "namespaces")))
        .transpose()?;
    let peer = match (pods, namespaces) {
        (None, None) => PeerSelector::Any,
        (Some(pods), None) => PeerSelector::Pods(PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods,
            ..PodSet::default()
        }),
        (pods, Some(namespaces)) => PeerSelector::Pods(PodSet {
            namespaces: NamespaceScope::Selector(namespaces),
            pods: pods.unwrap_or_default(),
            ..PodSet::default()
        }),
    };
    let ports = ports(ctx, entry, path)?;
    Ok(PolicyRule { action: Action::Allow, peers: vec![peer], ports, label, local: None })
}

/// One demo-form `allowIncoming`: any listed source (pod label maps of the
/// policy's namespace, namespace label maps) on any listed port; no source
/// listed means every source.
fn allow_incoming(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
    namespace: &str,
    label: String,
) -> Result<PolicyRule, DialectError> {
    let entry = ctx.map(value, path)?;
    let mut peers = Vec::new();
    for (key, by_namespace) in [("pods", false), ("namespaces", true)] {
        let list_path = join(path, key);
        let selectors: Vec<(&Value, String)> = match get(entry, key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().enumerate().map(|(i, v)| (v, index(&list_path, i))).collect()
            }
            // A single label map stands for a list of one.
            Some(v) => vec![(v, list_path.clone())],
        };
        for (v, p) in selectors {
            let selector = label_map_selector(ctx, v, &p)?;
            peers.push(PeerSelector::Pods(if by_namespace {
                PodSet {
                    namespaces: NamespaceScope::Selector(selector),
                    pods: LabelSelector::everything(),
                    ..PodSet::default()
                }
            } else {
                PodSet {
                    namespaces: NamespaceScope::Named(namespace.to_string()),
                    pods: selector,
                    ..PodSet::default()
                }
            }));
        }
    }
    if peers.is_empty() {
        peers.push(PeerSelector::Any);
    }
    let ports = ports(ctx, entry, path)?;
    Ok(PolicyRule { action: Action::Allow, peers, ports, label, local: None })
}

/// `protocol` (default TCP, any case) and `ports` of an entry: each port a
/// number, a port name, or a map `{protocol, port}`. A protocol without
/// ports means every port of it; neither means every port.
fn ports(
    ctx: &mut Ctx<'_>,
    entry: &Map<String, Value>,
    path: &str,
) -> Result<Vec<PortSelector>, DialectError> {
    let protocol = match get(entry, "protocol") {
        Some(p) => {
            Some(validate::protocol(ctx, p, &join(path, "protocol"), ProtocolSpelling::AnyCase)?)
        }
        None => None,
    };
    let list_path = join(path, "ports");
    let Some(list) = get(entry, "ports") else {
        return Ok(protocol
            .map(|protocol| vec![PortSelector::Range { protocol, first: 1, last: u16::MAX }])
            .unwrap_or_default());
    };
    let default = protocol.unwrap_or(Protocol::Tcp);
    let mut out = Vec::new();
    for (i, item) in ctx.list(list, &list_path)?.iter().enumerate() {
        let item_path = index(&list_path, i);
        out.push(match item {
            Value::Object(_) => {
                crate::v1::port(ctx, item, &item_path, default, ProtocolSpelling::AnyCase)?
            }
            Value::String(_) => PortSelector::Named {
                protocol: default,
                name: validate::port_name(ctx, item, &item_path)?.to_string(),
            },
            _ => {
                let port = validate::port_number(ctx, item, &item_path)?;
                PortSelector::Range { protocol: default, first: port, last: port }
            }
        });
    }
    Ok(out)
}
