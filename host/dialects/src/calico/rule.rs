//! One Calico rule: its action, protocol, ports and the two sides
//! (`source`, `destination`), as a model rule whose peer is the remote
//! side and whose local conditions are the endpoint's own side.

use palisade_model::calico_selector::Selector;
use palisade_model::policy::{
    CalicoPeer, NamespaceScope, PeerSelector, PodSet, PolicyRule, PortSelector,
};
use palisade_model::{Action, Protocol};
use serde_json::{Map, Value};

use super::{known_fields, namespace_condition, net, opt_selector, Scope};
use crate::error::{DialectError, Problem};
use crate::field::{get, index, join, opt_list, opt_map, opt_str, Ctx};
use crate::validate;

const RULE_FIELDS: &[&str] = &[
    "action",
    "protocol",
    "notProtocol",
    "icmp",
    "notICMP",
    "ipVersion",
    "source",
    "destination",
    "http",
    "metadata",
];
const RULE_EXPECTED: &str =
    "action, protocol, notProtocol, icmp, notICMP, ipVersion, source, destination, http, metadata";
const SIDE_FIELDS: &[&str] = &[
    "nets",
    "notNets",
    "selector",
    "notSelector",
    "namespaceSelector",
    "ports",
    "notPorts",
    "serviceAccounts",
    "services",
];
const SIDE_EXPECTED: &str = "nets, notNets, selector, notSelector, namespaceSelector, ports, notPorts, serviceAccounts, services";

/// Compiles the rule at `path`; none if it can never match (its ports
/// minus its notPorts are empty).
pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    value: &Value,
    path: &str,
    ingress: bool,
    scope: Scope<'_>,
) -> Result<Option<PolicyRule>, DialectError> {
    let rule = ctx.map(value, path)?;
    known_fields(ctx, rule, path, RULE_FIELDS, RULE_EXPECTED)?;
    let action = action(ctx, rule, path)?;
    if get(rule, "http").is_some() {
        return Err(ctx.invalid(
            &join(path, "http"),
            Problem::Unsupported(
                "http matches need an application-layer proxy; Palisade enforces no application layer".into(),
            ),
        ));
    }
    let needs_next = |what: &str| {
        Problem::Unsupported(format!(
            "{what} needs the intermediate form of palisade:backend@0.2.0, which this version does not carry yet"
        ))
    };
    for key in ["notProtocol", "icmp", "notICMP"] {
        if get(rule, key).is_some() {
            return Err(ctx.invalid(&join(path, key), needs_next(key)));
        }
    }
    let protocol = match get(rule, "protocol") {
        None => None,
        Some(v) => Some(protocol(ctx, v, &join(path, "protocol"), &needs_next)?),
    };
    let ip_version = match get(rule, "ipVersion") {
        None => None,
        Some(v) => match ctx.int(v, &join(path, "ipVersion"))? {
            4 => Some(4),
            6 => Some(6),
            n => {
                return Err(ctx.invalid(
                    &join(path, "ipVersion"),
                    Problem::UnknownValue { value: n.to_string(), expected: "4 or 6" },
                ))
            }
        },
    };
    let empty = Map::new();
    let source = opt_map(ctx, rule, "source", path)?.unwrap_or(&empty);
    let destination = opt_map(ctx, rule, "destination", path)?.unwrap_or(&empty);
    let source_path = join(path, "source");
    let destination_path = join(path, "destination");
    for key in ["ports", "notPorts"] {
        if get(source, key).is_some() {
            return Err(ctx.invalid(&join(&source_path, key), needs_next("a source port")));
        }
    }
    let Some(ports) = ports(ctx, destination, &destination_path, protocol)? else {
        return Ok(None);
    };
    let (remote, remote_path, local, local_path) = if ingress {
        (source, &source_path, destination, &destination_path)
    } else {
        (destination, &destination_path, source, &source_path)
    };
    let mut remote = side(ctx, remote, remote_path, scope)?;
    remote.ip_version = ip_version;
    let named = ports.iter().any(|p| matches!(p, PortSelector::Named { .. }));
    if !ingress && named && remote.not_selector.is_some() {
        return Err(ctx.invalid(
            &join(remote_path, "notSelector"),
            Problem::Unsupported(
                "a notSelector beside named destination ports of an egress rule is not resolved yet".into(),
            ),
        ));
    }
    let local = side(ctx, local, local_path, scope)?;
    let peer = if remote == CalicoPeer::default() {
        PeerSelector::Any
    } else {
        PeerSelector::Calico(Box::new(remote))
    };
    let label = path.strip_prefix("spec.").unwrap_or(path).to_string();
    Ok(Some(PolicyRule {
        action,
        peers: vec![peer],
        ports,
        label,
        local: (local != CalicoPeer::default()).then(|| Box::new(local)),
    }))
}

fn action(ctx: &Ctx<'_>, rule: &Map<String, Value>, path: &str) -> Result<Action, DialectError> {
    let path = join(path, "action");
    let Some(text) = opt_str(ctx, rule, "action", "")? else {
        return Err(ctx.invalid(&path, Problem::Missing));
    };
    match text {
        "Allow" => Ok(Action::Allow),
        "Deny" => Ok(Action::Deny),
        "Pass" => Ok(Action::Pass),
        "Log" => Ok(Action::Log),
        other => Err(ctx.invalid(
            &path,
            Problem::UnknownValue {
                value: other.to_string(),
                expected: "Allow, Deny, Pass or Log",
            },
        )),
    }
}

/// `protocol`: a name (any case) or a number. TCP, UDP and SCTP are
/// carried; the others need the next intermediate form.
fn protocol(
    ctx: &Ctx<'_>,
    value: &Value,
    path: &str,
    needs_next: &dyn Fn(&str) -> Problem,
) -> Result<Protocol, DialectError> {
    let number = match value {
        Value::Number(_) => {
            let n = ctx.int(value, path)?;
            match u8::try_from(n) {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ctx.invalid(
                        path,
                        Problem::UnknownValue {
                            value: n.to_string(),
                            expected: "a protocol number 1-255",
                        },
                    ))
                }
            }
        }
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            "sctp" => 132,
            "icmp" => 1,
            "icmpv6" => 58,
            "udplite" => 136,
            other => match other.parse::<u8>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ctx.invalid(
                        path,
                        Problem::UnknownValue {
                            value: s.clone(),
                            expected: "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255",
                        },
                    ))
                }
            },
        },
        _ => {
            return Err(ctx.invalid(
                path,
                Problem::WrongType {
                    expected: "a string or a number",
                    found: crate::field::type_name(value),
                },
            ))
        }
    };
    match number {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        132 => Ok(Protocol::Sctp),
        n => Err(ctx.invalid(path, needs_next(&format!("protocol {n}")))),
    }
}

/// One port entry: a number, `lo:hi` (inclusive), or a name.
enum PortEntry {
    Range(u16, u16),
    Named(String),
}

fn port_entry(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<PortEntry, DialectError> {
    if value.is_number() {
        let p = validate::port_number(ctx, value, path)?;
        return Ok(PortEntry::Range(p, p));
    }
    let text = ctx.str(value, path)?;
    let bad = |reason: &str| {
        ctx.invalid(path, Problem::PortSpec { value: text.to_string(), reason: reason.to_string() })
    };
    let number = |s: &str| -> Result<u16, DialectError> {
        match s.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(bad("port numbers are 1-65535")),
        }
    };
    if let Some((lo, hi)) = text.split_once(':') {
        let (lo, hi) = (number(lo)?, number(hi)?);
        if lo > hi {
            return Err(bad("the start of a range is above its end"));
        }
        return Ok(PortEntry::Range(lo, hi));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        let p = number(text)?;
        return Ok(PortEntry::Range(p, p));
    }
    if let Some(reason) = validate::port_name_problem(text) {
        return Err(bad(reason));
    }
    Ok(PortEntry::Named(text.to_string()))
}

/// Inclusive port ranges.
type Ranges = Vec<(u16, u16)>;

/// The numbers and the names of a port list.
fn port_list(
    ctx: &Ctx<'_>,
    side: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<(Ranges, Vec<String>), DialectError> {
    let (mut ranges, mut names) = (Vec::new(), Vec::new());
    for (i, v) in opt_list(ctx, side, key, path)?.unwrap_or_default().iter().enumerate() {
        match port_entry(ctx, v, &index(&join(path, key), i))? {
            PortEntry::Range(a, b) => ranges.push((a, b)),
            PortEntry::Named(n) => names.push(n),
        }
    }
    Ok((ranges, names))
}

/// `ranges` minus `holes`, inclusive, sorted.
fn subtract_ranges(ranges: &[(u16, u16)], holes: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut rest: Vec<(u16, u16)> = ranges.to_vec();
    for &(hl, hh) in holes {
        let mut next = Vec::new();
        for (l, h) in rest {
            if hh < l || hl > h {
                next.push((l, h));
                continue;
            }
            if l < hl {
                next.push((l, hl - 1));
            }
            if h > hh {
                next.push((hh + 1, h));
            }
        }
        rest = next;
    }
    rest.sort_unstable();
    rest.dedup();
    rest
}

/// The destination ports of a rule (`ports` minus `notPorts`); `None` if
/// nothing is left, so that the rule can never match.
fn ports(
    ctx: &Ctx<'_>,
    destination: &Map<String, Value>,
    path: &str,
    protocol: Option<Protocol>,
) -> Result<Option<Vec<PortSelector>>, DialectError> {
    let (ranges, names) = port_list(ctx, destination, "ports", path)?;
    let (not_ranges, not_names) = port_list(ctx, destination, "notPorts", path)?;
    if !not_names.is_empty() {
        return Err(ctx.invalid(
            &join(path, "notPorts"),
            Problem::Unsupported("named ports in notPorts are not resolved yet".into()),
        ));
    }
    if !names.is_empty() && !not_ranges.is_empty() {
        return Err(ctx.invalid(
            &join(path, "notPorts"),
            Problem::Unsupported("notPorts beside named ports are not resolved yet".into()),
        ));
    }
    let Some(protocol) = protocol else {
        if !ranges.is_empty() || !not_ranges.is_empty() {
            let key = if ranges.is_empty() { "notPorts" } else { "ports" };
            return Err(ctx.invalid(
                &join(path, key),
                Problem::Conflict(
                    "port numbers need the rule's protocol (TCP, UDP or SCTP)".into(),
                ),
            ));
        }
        // Only names: each matches with the protocol its pod declares.
        let mut out = Vec::new();
        for name in &names {
            for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                out.push(PortSelector::Named { protocol, name: name.clone() });
            }
        }
        return Ok(Some(out));
    };
    let base = if ranges.is_empty() && names.is_empty() { vec![(1, u16::MAX)] } else { ranges };
    let mut out: Vec<PortSelector> = subtract_ranges(&base, &not_ranges)
        .into_iter()
        .map(|(first, last)| PortSelector::Range { protocol, first, last })
        .collect();
    out.extend(names.into_iter().map(|name| PortSelector::Named { protocol, name }));
    Ok((!out.is_empty()).then_some(out))
}

/// One side of a rule, as address conditions.
fn side(
    ctx: &Ctx<'_>,
    side: &Map<String, Value>,
    path: &str,
    scope: Scope<'_>,
) -> Result<CalicoPeer, DialectError> {
    known_fields(ctx, side, path, SIDE_FIELDS, SIDE_EXPECTED)?;
    if get(side, "services").is_some() {
        return Err(ctx.invalid(
            &join(path, "services"),
            Problem::Unsupported("Service matches are not resolved yet".into()),
        ));
    }
    let nets = |key: &str| -> Result<Option<Vec<_>>, DialectError> {
        let Some(list) = opt_list(ctx, side, key, path)? else { return Ok(None) };
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            out.push(net(ctx, v, &index(&join(path, key), i))?);
        }
        Ok(Some(out))
    };
    let positive_nets = nets("nets")?;
    let not_nets = nets("notNets")?.unwrap_or_default();
    let selector = opt_selector(ctx, side, "selector", path)?;
    let not_selector = opt_selector(ctx, side, "notSelector", path)?;
    let namespace_selector = opt_selector(ctx, side, "namespaceSelector", path)?;
    let accounts = service_accounts(ctx, side, path)?;

    let scoped = match scope {
        Scope::Namespace(_) => {
            selector.is_some()
                || not_selector.is_some()
                || accounts.is_some()
                || namespace_selector.is_some()
        }
        Scope::Global => selector.is_some() || accounts.is_some() || namespace_selector.is_some(),
    };
    let positive = scoped.then(|| {
        let mut expr = selector.clone().unwrap_or(Selector::All);
        if let Some(a) = &accounts {
            expr = expr.and(a.clone());
        }
        let namespaces = match (&namespace_selector, scope) {
            (Some(ns), _) => {
                expr = expr.and(namespace_condition(ns));
                NamespaceScope::default()
            }
            (None, Scope::Namespace(ns)) => NamespaceScope::Named(ns.to_string()),
            (None, Scope::Global) => NamespaceScope::default(),
        };
        PodSet { namespaces, calico: Some(expr), network_sets: true, ..PodSet::default() }
    });
    let negative = not_selector.map(|expr| PodSet {
        calico: Some(expr),
        network_sets: true,
        ..PodSet::default()
    });
    Ok(CalicoPeer {
        nets: positive_nets,
        not_nets,
        selector: positive,
        not_selector: negative,
        ip_version: None,
    })
}

/// `serviceAccounts`: `names` (the pod's account name among them) and
/// `selector` (the account object's labels), both required when given.
fn service_accounts(
    ctx: &Ctx<'_>,
    side: &Map<String, Value>,
    path: &str,
) -> Result<Option<Selector>, DialectError> {
    let Some(sa) = opt_map(ctx, side, "serviceAccounts", path)? else { return Ok(None) };
    let path = join(path, "serviceAccounts");
    known_fields(ctx, sa, &path, &["names", "selector"], "names, selector")?;
    let mut expr = Selector::All;
    if let Some(list) = opt_list(ctx, sa, "names", &path)? {
        let mut names = Vec::new();
        for (i, v) in list.iter().enumerate() {
            names.push(ctx.str(v, &index(&join(&path, "names"), i))?.to_string());
        }
        if !names.is_empty() {
            expr = expr.and(Selector::In(
                palisade_model::calico_selector::SERVICE_ACCOUNT_LABEL.to_string(),
                names,
            ));
        }
    }
    if let Some(sel) = opt_selector(ctx, sa, "selector", &path)? {
        expr = expr.and(sel.prefixed("pcsa."));
    }
    Ok(Some(expr))
}

#[cfg(test)]
mod tests {
    use super::subtract_ranges;

    #[test]
    fn port_ranges_minus_holes() {
        assert_eq!(subtract_ranges(&[(1, 100)], &[(50, 60)]), vec![(1, 49), (61, 100)]);
        assert_eq!(subtract_ranges(&[(80, 80)], &[(80, 80)]), vec![]);
        assert_eq!(subtract_ranges(&[(1, 65535)], &[(1, 1), (65535, 65535)]), vec![(2, 65534)]);
        assert_eq!(subtract_ranges(&[(10, 20), (30, 40)], &[(15, 35)]), vec![(10, 14), (36, 40)]);
    }
}
