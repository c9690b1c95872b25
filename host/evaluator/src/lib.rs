//! The reference evaluator: what a rule set decides for one flow.
//!
//! A connection from A to B is allowed iff A's egress policy (when A is a
//! local endpoint) and B's ingress policy (when B is a local endpoint) both
//! allow it. Per direction the tiers are walked in order; inside a tier the
//! rules in order: `log` records and goes on, `allow`/`deny` decide, `pass`
//! skips to the next tier; no match falls to the tier's no-match outcome;
//! after the last tier the flow is allowed.
//!
//! Every verdict carries a [`Trace`] naming what decided, and
//! [`explain`] puts it into words.

mod explain;

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_model::{
    Action, Direction, Endpoint, EndpointId, NoMatch, Origin, Peer, Protocol, RuleSet,
};
use serde::Serialize;

pub use explain::{describe_origin, explain, explain_with};

/// One new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

/// Where in a rule set a rule sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulePosition {
    /// Index of the tier in the endpoint policy.
    pub tier: usize,
    /// Index of the rule in its tier.
    pub rule: usize,
    /// The policy object and rule the rule came from, if known.
    pub origin: Option<Origin>,
}

/// What decided one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decision {
    /// The address is no local endpoint: this direction is not judged here.
    NotAnEndpoint,
    /// The endpoint has no policy for this direction: allowed.
    NoPolicy,
    /// A rule decided (allow or deny).
    Rule { position: RulePosition, action: Action },
    /// No rule of an isolating tier matched: denied.
    TierDefault { tier: usize },
    /// Every tier was left without a decision: allowed.
    AfterLastTier,
}

/// The judgement of one direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectionTrace {
    pub direction: Direction,
    /// The local endpoint judged (the source for egress, the destination
    /// for ingress).
    pub endpoint: Option<Endpoint>,
    pub allowed: bool,
    pub decision: Decision,
    /// `log` rules that matched on the way.
    pub logged: Vec<RulePosition>,
    /// `pass` rules that sent evaluation on to the next tier.
    pub passed: Vec<RulePosition>,
}

/// The judgement of a flow, both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub flow: Flow,
    pub allowed: bool,
    pub egress: DirectionTrace,
    pub ingress: DirectionTrace,
}

/// A rule set with its endpoints indexed by address.
#[derive(Debug)]
pub struct Evaluator<'a> {
    rules: &'a RuleSet,
    by_address: HashMap<IpAddr, EndpointId>,
}

impl<'a> Evaluator<'a> {
    pub fn new(rules: &'a RuleSet) -> Evaluator<'a> {
        let mut by_address = HashMap::new();
        for e in &rules.endpoints {
            for a in &e.addresses {
                by_address.entry(*a).or_insert(e.id);
            }
        }
        Evaluator { rules, by_address }
    }

    /// The rule set being evaluated.
    pub fn rule_set(&self) -> &'a RuleSet {
        self.rules
    }

    /// The local endpoint holding `address`, if any.
    pub fn endpoint_at(&self, address: &IpAddr) -> Option<&'a Endpoint> {
        let id = self.by_address.get(address)?;
        self.rules.endpoint(*id)
    }

    /// The verdict for a flow, with its trace.
    pub fn evaluate(&self, flow: Flow) -> Trace {
        let egress = self.judge(Direction::Egress, flow.source, flow.destination, &flow);
        let ingress = self.judge(Direction::Ingress, flow.destination, flow.source, &flow);
        Trace { flow, allowed: egress.allowed && ingress.allowed, egress, ingress }
    }

    fn position(&self, tier: usize, rule: usize, origin: u32) -> RulePosition {
        RulePosition { tier, rule, origin: self.rules.origin(origin).cloned() }
    }

    fn judge(
        &self,
        direction: Direction,
        local: IpAddr,
        remote: IpAddr,
        flow: &Flow,
    ) -> DirectionTrace {
        let mut trace = DirectionTrace {
            direction,
            endpoint: None,
            allowed: true,
            decision: Decision::NotAnEndpoint,
            logged: Vec::new(),
            passed: Vec::new(),
        };
        let Some(endpoint) = self.endpoint_at(&local) else {
            return trace;
        };
        trace.endpoint = Some(endpoint.clone());
        let Some(policy) = self.rules.policy(endpoint.id, direction) else {
            trace.decision = Decision::NoPolicy;
            return trace;
        };
        for (t, tier) in policy.tiers.iter().enumerate() {
            let mut passed = false;
            for (r, rule) in tier.rules.iter().enumerate() {
                let peer_matches = match rule.peer {
                    Peer::Any => true,
                    Peer::Set(id) => self.rules.set(id).is_some_and(|s| s.contains(&remote)),
                };
                if !peer_matches || !rule.matches_port(flow.protocol, flow.port) {
                    continue;
                }
                match rule.action {
                    Action::Log => trace.logged.push(self.position(t, r, rule.origin)),
                    Action::Pass => {
                        trace.passed.push(self.position(t, r, rule.origin));
                        passed = true;
                        break;
                    }
                    Action::Allow | Action::Deny => {
                        trace.allowed = rule.action == Action::Allow;
                        trace.decision = Decision::Rule {
                            position: self.position(t, r, rule.origin),
                            action: rule.action,
                        };
                        return trace;
                    }
                }
            }
            if !passed && tier.no_match == NoMatch::Deny {
                trace.allowed = false;
                trace.decision = Decision::TierDefault { tier: t };
                return trace;
            }
        }
        trace.decision = Decision::AfterLastTier;
        trace
    }
}

#[cfg(test)]
mod tests;
