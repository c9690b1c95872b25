//! Userspace evaluation of one flow against the applied rule set.

use palisade_plugin_sdk::types::{
    Action, Direction, Endpoint, Error, Flow, NoMatch, Peer, StepOutcome, TraceStep, V6Prefix,
    Verdict,
};
use palisade_plugin_sdk::AppliedState;

/// An address of either family, as the flow carries it.
#[derive(Clone, Copy)]
enum Addr {
    V4(u32),
    V6(u128),
}

fn v6(p: &V6Prefix) -> u128 {
    (u128::from(p.hi) << 64) | u128::from(p.lo)
}

fn mask(bits: u32, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (bits - u32::from(len).min(bits))
    }
}

fn endpoint_has(e: &Endpoint, a: Addr) -> bool {
    match a {
        Addr::V4(ip) => e.v4.contains(&ip),
        Addr::V6(ip) => e.v6.iter().any(|p| v6(p) == ip),
    }
}

fn set_has(state: &AppliedState, set: u32, a: Addr) -> bool {
    let Some(s) = state.sets.get(&set) else {
        return false;
    };
    match a {
        Addr::V4(ip) => s.v4.iter().any(|p| {
            let m = (mask(32, p.len) & u128::from(u32::MAX)) as u32;
            ip & m == p.addr & m
        }),
        Addr::V6(ip) => s.v6.iter().any(|p| ip & mask(128, p.len) == v6(p) & mask(128, p.len)),
    }
}

fn flow_addrs(flow: &Flow) -> Result<(Addr, Addr), Error> {
    let src = match (flow.src_v4, flow.src_v6) {
        (Some(a), None) => Addr::V4(a),
        (None, Some(p)) => Addr::V6(v6(&p)),
        _ => {
            return Err(palisade_plugin_sdk::invalid_input("flow needs exactly one source address"))
        }
    };
    let dst = match (flow.dst_v4, flow.dst_v6) {
        (Some(a), None) => Addr::V4(a),
        (None, Some(p)) => Addr::V6(v6(&p)),
        _ => {
            return Err(palisade_plugin_sdk::invalid_input(
                "flow needs exactly one destination address",
            ))
        }
    };
    Ok((src, dst))
}

/// Judges one direction at one end of the flow.
fn judge(
    state: &AppliedState,
    flow: &Flow,
    direction: Direction,
    local: Addr,
    peer: Addr,
) -> TraceStep {
    let dkey = match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    };
    let endpoint = state.endpoints.values().find(|e| endpoint_has(e, local)).map(|e| e.id);
    let mut step = TraceStep {
        direction,
        endpoint,
        tier: None,
        rule: None,
        origin: None,
        outcome: StepOutcome::NoPolicy,
    };
    let Some(policy) = endpoint.and_then(|id| state.policies.get(&(id, dkey))) else {
        return step;
    };
    step.outcome = StepOutcome::Allowed;
    'tiers: for (ti, tier) in policy.tiers.iter().enumerate() {
        for (ri, rule) in tier.rules.iter().enumerate() {
            let peer_ok = match rule.peer {
                Peer::Any => true,
                Peer::Set(id) => set_has(state, id, peer),
            };
            let port_ok = rule.ports.count == 0
                || palisade_plugin_sdk::rule_ports(policy, rule).iter().any(|p| {
                    p.protocol == flow.protocol && p.first <= flow.port && flow.port <= p.last
                });
            if !(peer_ok && port_ok) {
                continue;
            }
            let (tier_ix, rule_ix) = (u32::try_from(ti).ok(), u32::try_from(ri).ok());
            match rule.action {
                Action::Log => continue,
                Action::Pass => {
                    (step.tier, step.rule, step.origin) = (tier_ix, rule_ix, Some(rule.origin));
                    step.outcome = StepOutcome::Passed;
                    continue 'tiers;
                }
                Action::Allow | Action::Deny => {
                    (step.tier, step.rule, step.origin) = (tier_ix, rule_ix, Some(rule.origin));
                    step.outcome = if rule.action == Action::Allow {
                        StepOutcome::Allowed
                    } else {
                        StepOutcome::Denied
                    };
                    return step;
                }
            }
        }
        if tier.no_match == NoMatch::Deny {
            (step.tier, step.rule, step.origin) = (u32::try_from(ti).ok(), None, None);
            step.outcome = StepOutcome::TierNoMatch;
            return step;
        }
    }
    step
}

/// The verdict for `flow`: egress of the source, then ingress of the
/// destination.
pub fn verdict(state: &AppliedState, flow: &Flow) -> Result<Verdict, Error> {
    let (src, dst) = flow_addrs(flow)?;
    let egress = judge(state, flow, Direction::Egress, src, dst);
    let ingress = judge(state, flow, Direction::Ingress, dst, src);
    let ok = |s: &TraceStep| !matches!(s.outcome, StepOutcome::Denied | StepOutcome::TierNoMatch);
    Ok(Verdict { allowed: ok(&egress) && ok(&ingress), trace: vec![egress, ingress] })
}
