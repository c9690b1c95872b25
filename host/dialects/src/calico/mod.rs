//! Calico's own policy API, `projectcalico.org/v3` as `calicoctl apply`
//! takes it, and the same specs as `crd.projectcalico.org/v1` custom
//! resources: NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet,
//! GlobalNetworkSet; the staged kinds are validated and not enforced.
//!
//! Semantics follow Calico's code (docs/semantics.md, "Calico"): policy
//! selectors read an endpoint's labels with Calico's implicit ones,
//! namespace selectors its `pcns.` labels, service account selectors its
//! `pcsa.` labels; `types` default from the rules present; tiers and
//! orders sort as Calico sorts them.

mod rule;

use palisade_model::calico_selector::{Selector, NAMESPACE_LABEL};
use palisade_model::policy::{
    NamespaceScope, NetworkSet, ObjectRef, Order, PodSet, Policy, TierRank,
};
use serde_json::{Map, Value};

use crate::error::{DialectError, Problem};
use crate::field::{get, index, join, opt_list, opt_map, opt_str, Ctx};
use crate::selector::object_labels;
use crate::validate;

/// The API groups Calico's objects come in.
pub const GROUPS: [&str; 2] = ["projectcalico.org", "crd.projectcalico.org"];

/// True for an API group of Calico's objects.
pub fn is_calico_group(group: &str) -> bool {
    GROUPS.contains(&group)
}

/// The kind of origins of a Calico NetworkPolicy.
pub const NETWORK_POLICY_KIND: &str = "projectcalico.org/v3 NetworkPolicy";
/// The kind of origins of a Calico GlobalNetworkPolicy.
pub const GLOBAL_NETWORK_POLICY_KIND: &str = "projectcalico.org/v3 GlobalNetworkPolicy";

/// A Tier object: where its policies sort, and what its end does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TierObject {
    pub(crate) order: Option<Order>,
    /// defaultAction Pass (else Deny).
    pub(crate) pass: bool,
}

/// Namespaced (`NetworkPolicy`) or cluster-wide (`GlobalNetworkPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Namespace(&'a str),
    Global,
}

/// A compiled Calico policy and the tier it names.
pub(crate) struct CalicoPolicy {
    pub(crate) policy: Policy,
    pub(crate) tier: String,
}

fn selector(ctx: &Ctx<'_>, text: &str, path: &str) -> Result<Selector, DialectError> {
    Selector::parse(text)
        .map_err(|error| ctx.invalid(path, Problem::Selector { text: text.to_string(), error }))
}

/// The selector at `map.key`, `None` if absent.
pub(crate) fn opt_selector(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Selector>, DialectError> {
    opt_str(ctx, map, key, path)?.map(|t| selector(ctx, t, &join(path, key))).transpose()
}

/// A namespace selector as read on an endpoint's labels: `pcns.`-prefixed,
/// `all()` meaning every namespaced endpoint (not the global network sets),
/// `global()` the global network sets only.
pub(crate) fn namespace_condition(sel: &Selector) -> Selector {
    match sel {
        Selector::All => Selector::Has(NAMESPACE_LABEL.to_string()),
        other => other.prefixed("pcns."),
    }
}

/// `order`, if present: a finite number.
pub(crate) fn order(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<Option<Order>, DialectError> {
    let Some(v) = get(map, "order") else { return Ok(None) };
    let path = join(path, "order");
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(Some(Order(n))),
        _ => Err(ctx.invalid(&path, Problem::Order(v.to_string()))),
    }
}

/// Refuses fields of `map` outside `known` (a misspelt field would change
/// what the object means).
pub(crate) fn known_fields(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
    known: &'static [&'static str],
    expected: &'static str,
) -> Result<(), DialectError> {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            return Err(ctx.invalid(&join(path, key), Problem::UnknownField { expected }));
        }
    }
    Ok(())
}

const SPEC_FIELDS: &[&str] = &[
    "tier",
    "order",
    "selector",
    "serviceAccountSelector",
    "namespaceSelector",
    "types",
    "ingress",
    "egress",
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
    "performanceHints",
];
const SPEC_EXPECTED: &str = "tier, order, selector, serviceAccountSelector, namespaceSelector (global only), types, ingress, egress, doNotTrack, preDNAT, applyOnForward, performanceHints";

/// A NetworkPolicy (`Scope::Namespace`) or GlobalNetworkPolicy.
pub(crate) fn compile_policy(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    scope: Scope<'_>,
    name: &str,
) -> Result<CalicoPolicy, DialectError> {
    let empty = Map::new();
    let spec = opt_map(ctx, object, "spec", "")?.unwrap_or(&empty);
    known_fields(ctx, spec, "spec", SPEC_FIELDS, SPEC_EXPECTED)?;
    for flag in ["doNotTrack", "preDNAT"] {
        if let Some(v) = get(spec, flag) {
            if ctx.bool(v, &join("spec", flag))? {
                return Err(ctx.invalid(
                    &join("spec", flag),
                    Problem::Unsupported(format!(
                        "{flag} policies apply to host endpoints, which Palisade does not enforce"
                    )),
                ));
            }
        }
    }
    let tier = opt_str(ctx, spec, "tier", "spec")?
        .filter(|t| !t.is_empty())
        .unwrap_or(TierRank::DEFAULT_TIER)
        .to_string();
    let order = order(ctx, spec, "spec")?;
    let mut subject = opt_selector(ctx, spec, "selector", "spec")?.unwrap_or(Selector::All);
    if let Some(sa) = opt_selector(ctx, spec, "serviceAccountSelector", "spec")? {
        subject = subject.and(sa.prefixed("pcsa."));
    }
    let namespaces = match scope {
        Scope::Namespace(ns) => {
            if get(spec, "namespaceSelector").is_some() {
                return Err(ctx.invalid(
                    "spec.namespaceSelector",
                    Problem::Conflict(
                        "a namespaced NetworkPolicy has no namespaceSelector (it applies to its own namespace); use a GlobalNetworkPolicy".into(),
                    ),
                ));
            }
            NamespaceScope::Named(ns.to_string())
        }
        Scope::Global => {
            if let Some(ns) = opt_selector(ctx, spec, "namespaceSelector", "spec")? {
                subject = subject.and(namespace_condition(&ns));
            }
            NamespaceScope::default()
        }
    };
    let rules = |ctx: &mut Ctx<'_>, key: &str| -> Result<Option<Vec<_>>, DialectError> {
        let Some(list) = opt_list(ctx, spec, key, "spec")? else { return Ok(None) };
        let mut out = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let path = index(&join("spec", key), i);
            out.extend(rule::compile(ctx, r, &path, key == "ingress", scope)?);
        }
        Ok(Some(out))
    };
    let ingress_rules = rules(ctx, "ingress")?;
    let egress_rules = rules(ctx, "egress")?;
    let (ingress, egress) = types(ctx, spec, ingress_rules.is_some(), egress_rules.is_some())?;
    let (kind, namespace) = match scope {
        Scope::Namespace(ns) => (NETWORK_POLICY_KIND, ns.to_string()),
        Scope::Global => (GLOBAL_NETWORK_POLICY_KIND, String::new()),
    };
    let policy = Policy {
        object: ObjectRef { kind: kind.to_string(), namespace, name: name.to_string() },
        // Set from the tier when the policy is put in force.
        tier: TierRank::NetworkPolicy,
        order,
        order_name: name.to_string(),
        subject: PodSet { namespaces, calico: Some(subject), ..PodSet::default() },
        ingress: ingress.then(|| ingress_rules.unwrap_or_default()),
        egress: egress.then(|| egress_rules.unwrap_or_default()),
    };
    Ok(CalicoPolicy { policy, tier })
}

/// Which directions the policy governs: `types` as written, or Calico's
/// default (egress rules only: Egress; both: both; otherwise Ingress).
fn types(
    ctx: &Ctx<'_>,
    spec: &Map<String, Value>,
    has_ingress: bool,
    has_egress: bool,
) -> Result<(bool, bool), DialectError> {
    let Some(list) = opt_list(ctx, spec, "types", "spec")? else {
        return Ok(match (has_ingress, has_egress) {
            (false, true) => (false, true),
            (true, true) => (true, true),
            _ => (true, false),
        });
    };
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in list.iter().enumerate() {
        let path = index("spec.types", i);
        match ctx.str(t, &path)? {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => {
                return Err(ctx.invalid(
                    &path,
                    Problem::UnknownValue {
                        value: other.to_string(),
                        expected: "Ingress or Egress",
                    },
                ))
            }
        }
    }
    if has_ingress && !ingress {
        return Err(ctx.invalid(
            "spec.ingress",
            Problem::Conflict("ingress rules need Ingress in spec.types".into()),
        ));
    }
    if has_egress && !egress {
        return Err(ctx.invalid(
            "spec.egress",
            Problem::Conflict("egress rules need Egress in spec.types".into()),
        ));
    }
    Ok((ingress, egress))
}

/// A Tier: `order` (the `default` tier's is fixed at 1,000,000) and
/// `defaultAction` Deny (the default) or Pass.
pub(crate) fn tier(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    name: &str,
) -> Result<TierObject, DialectError> {
    let empty = Map::new();
    let spec = opt_map(ctx, object, "spec", "")?.unwrap_or(&empty);
    known_fields(ctx, spec, "spec", &["order", "defaultAction"], "order, defaultAction")?;
    let order = order(ctx, spec, "spec")?;
    let pass = match opt_str(ctx, spec, "defaultAction", "spec")? {
        None | Some("Deny") => false,
        Some("Pass") => true,
        Some(other) => {
            return Err(ctx.invalid(
                "spec.defaultAction",
                Problem::UnknownValue { value: other.to_string(), expected: "Deny or Pass" },
            ))
        }
    };
    if name == TierRank::DEFAULT_TIER {
        if order.is_some_and(|o| o != Order::DEFAULT_TIER) {
            return Err(ctx.invalid(
                "spec.order",
                Problem::Conflict("the default tier's order is 1000000".into()),
            ));
        }
        if pass {
            return Err(ctx.invalid(
                "spec.defaultAction",
                Problem::Unsupported(
                    "the default tier ends in Deny here (a Pass would open every endpoint that a Kubernetes NetworkPolicy isolates)".into(),
                ),
            ));
        }
    }
    Ok(TierObject { order, pass })
}

/// A NetworkSet (`namespace` given) or GlobalNetworkSet: its labels and
/// `spec.nets` (CIDRs; a bare address is one host).
pub(crate) fn network_set(
    ctx: &mut Ctx<'_>,
    object: &Map<String, Value>,
    namespace: Option<&str>,
    name: &str,
) -> Result<NetworkSet, DialectError> {
    let labels = object_labels(ctx, object)?;
    let empty = Map::new();
    let spec = opt_map(ctx, object, "spec", "")?.unwrap_or(&empty);
    known_fields(ctx, spec, "spec", &["nets", "allowedEgressDomains"], "nets")?;
    if get(spec, "allowedEgressDomains").is_some() {
        return Err(ctx.invalid(
            "spec.allowedEgressDomains",
            Problem::Unsupported("domain names need DNS inspection".into()),
        ));
    }
    let mut nets = Vec::new();
    for (i, v) in opt_list(ctx, spec, "nets", "spec")?.unwrap_or_default().iter().enumerate() {
        nets.push(net(ctx, v, &index("spec.nets", i))?);
    }
    Ok(NetworkSet {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        labels,
        nets: palisade_model::net::normalize(nets),
    })
}

/// A Calico net: a CIDR, or a bare address (one host).
pub(crate) fn net(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
) -> Result<palisade_model::Cidr, DialectError> {
    let text = ctx.str(value, path)?;
    if !text.contains('/') {
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(palisade_model::Cidr::host(ip));
        }
    }
    validate::cidr(ctx, value, path)
}
