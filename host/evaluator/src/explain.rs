//! Verdicts in words.

use std::fmt::Write;

use palisade_model::{Action, Direction, Endpoint, Origin};

use crate::{Decision, DirectionTrace, RulePosition, Trace};

/// Writes a verdict and its reasons for a person.
///
/// `selecting` names the policy objects that select an endpoint for a
/// direction (e.g. from the resolver); the rule set alone cannot name a
/// policy that isolates without any rule. Pass `|_, _| Vec::new()` when
/// unknown.
pub fn explain(trace: &Trace, selecting: &dyn Fn(&Endpoint, Direction) -> Vec<String>) -> String {
    explain_with(trace, selecting, &|_, _| Vec::new())
}

/// [`explain`], naming tiers too: `tiers` gives the names of an endpoint's
/// tiers for a direction, in order (e.g. the resolver's `tier_names`).
pub fn explain_with(
    trace: &Trace,
    selecting: &dyn Fn(&Endpoint, Direction) -> Vec<String>,
    tiers: &dyn Fn(&Endpoint, Direction) -> Vec<String>,
) -> String {
    let mut s = String::new();
    let flow = &trace.flow;
    let _ = writeln!(
        s,
        "{}: {} -> {} {}/{}",
        if trace.allowed { "ALLOWED" } else { "DENIED" },
        describe_address(flow.source, trace.egress.endpoint.as_ref()),
        describe_address(flow.destination, trace.ingress.endpoint.as_ref()),
        flow.protocol,
        flow.port
    );
    for d in [&trace.egress, &trace.ingress] {
        let names = d.endpoint.as_ref().map(|e| tiers(e, d.direction)).unwrap_or_default();
        let _ = writeln!(s, "  {}", direction_sentence(d, selecting, &names));
    }
    if !trace.allowed {
        let which = match (trace.egress.allowed, trace.ingress.allowed) {
            (false, false) => "both the source's egress and the destination's ingress deny it",
            (false, true) => "the source's egress denies it",
            _ => "the destination's ingress denies it",
        };
        let _ = writeln!(s, "  => denied: {which}.");
    } else {
        let _ = writeln!(s, "  => allowed in both directions.");
    }
    s
}

fn describe_address(ip: std::net::IpAddr, endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        Some(e) => format!("{} ({ip})", e.name),
        None => ip.to_string(),
    }
}

/// `kind namespace/name`, or `kind name` for cluster-scoped objects.
pub fn describe_origin(o: &Origin) -> String {
    if o.namespace.is_empty() {
        format!("{} {}", o.kind, o.name)
    } else {
        format!("{} {}/{}", o.kind, o.namespace, o.name)
    }
}

/// `tier N`, or its name when known.
fn tier_name(tiers: &[String], tier: usize) -> String {
    tiers.get(tier).cloned().unwrap_or_else(|| format!("tier {tier}"))
}

fn describe_position(p: &RulePosition, action: Action, tiers: &[String]) -> String {
    let action = match action {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::Pass => "Pass",
        Action::Log => "Log",
    };
    let tier = tier_name(tiers, p.tier);
    match &p.origin {
        Some(o) => format!(
            "rule {} ({action}) of {}, in {tier} (tier {}, rule {})",
            o.rule,
            describe_origin(o),
            p.tier,
            p.rule
        ),
        None => format!("{tier} (tier {}), rule {} ({action})", p.tier, p.rule),
    }
}

fn direction_sentence(
    d: &DirectionTrace,
    selecting: &dyn Fn(&Endpoint, Direction) -> Vec<String>,
    tiers: &[String],
) -> String {
    let dir = d.direction.as_str();
    let Some(endpoint) = &d.endpoint else {
        return format!("{dir}: not judged here (the address is no local pod).");
    };
    let who = format!("{dir} of {}", endpoint.name);
    let policies = selecting(endpoint, d.direction);
    let by = if policies.is_empty() {
        String::new()
    } else {
        format!(" (selected by {})", policies.join(", "))
    };
    let mut out = match &d.decision {
        Decision::NotAnEndpoint => format!("{who}: not judged here."),
        Decision::NoPolicy => {
            format!("{who}: no policy selects it for {dir}, so all {dir} traffic is allowed.")
        }
        Decision::Rule { position, action } => {
            let verb = match action {
                Action::Allow => "allowed",
                _ => "denied",
            };
            format!("{who}{by}: {verb} by {}.", describe_position(position, *action, tiers))
        }
        Decision::TierDefault { tier } => format!(
            "{who}{by}: no rule of {} matches this peer and port, and its end denies.",
            tier_name(tiers, *tier)
        ),
        Decision::AfterLastTier => {
            format!("{who}{by}: no tier decided, so it is allowed after the last tier.")
        }
    };
    for p in &d.passed {
        let _ = write!(out, " Passed on by {}.", describe_position(p, Action::Pass, tiers));
    }
    for p in &d.logged {
        let _ = write!(out, " Logged by {}.", describe_position(p, Action::Log, tiers));
    }
    out
}
