//! Rendering of one endpoint's policy per direction from the compiled
//! policies that select it.

use palisade_model::policy::{ObjectRef, Policy, TierRank};
use palisade_model::{
    Action, Direction, EndpointPolicy, NoMatch, Peer, PolicyKey, PortRange, Rule, Tier,
};

use crate::compile::{direction_index, CompiledPeer, CompiledRule, LocalCondition};
use crate::resolver::Resolver;
use crate::selectors::{named_port, PodIdx, SelId};
use crate::sources::SourceKey;
use crate::NodeTraffic;

/// Kind of the origin of rules Palisade adds on its own.
pub const PALISADE_KIND: &str = "palisade";
/// Name of the origin of the node exemption rule.
pub const NODE_EXEMPTION: &str = "node-exemption";

impl Resolver {
    /// Recomputes both directions of endpoint `idx`.
    pub(crate) fn render(&mut self, idx: PodIdx) {
        for direction in Direction::BOTH {
            self.render_direction(idx, direction);
        }
    }

    fn render_direction(&mut self, idx: PodIdx, direction: Direction) {
        let Some(entry) = self.pods.get(idx as usize).and_then(Option::as_deref) else {
            return;
        };
        let Some(endpoint) = entry.endpoint else {
            return;
        };
        let d = direction_index(direction);
        // Tiers in order; inside one, policies by order, then name.
        let mut selecting: Vec<(&TierRank, &Policy, &[CompiledRule])> = entry
            .selected_by
            .iter()
            .filter_map(|&p| self.policies.get(p as usize).and_then(Option::as_deref))
            .filter_map(|p| {
                p.compiled[d].as_deref().map(|rules| (&p.policy.tier, &p.policy, rules))
            })
            .collect();
        selecting.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.order_key().cmp(&b.1.order_key())));

        let mut tiers: Vec<Tier> = Vec::new();
        let mut current: Option<&TierRank> = None;
        for (rank, _, rules) in &selecting {
            if current != Some(*rank) {
                let no_match = if rank.denies_at_end() { NoMatch::Deny } else { NoMatch::NextTier };
                tiers.push(Tier { rules: Vec::new(), no_match });
                current = Some(*rank);
            }
            let Some(tier) = tiers.last_mut() else {
                continue;
            };
            for rule in *rules {
                if let Some(r) = self.render_rule(rule, idx, &entry.pod, direction) {
                    tier.rules.push(r);
                }
            }
        }

        let key = PolicyKey { endpoint, direction };
        if tiers.is_empty() {
            self.out.remove_policy(key);
            if direction == Direction::Ingress && self.exempt.remove(&idx) {
                self.unpin_nodes();
            }
            return;
        }
        if direction == Direction::Ingress && self.settings.node_traffic == NodeTraffic::Allow {
            if self.exempt.insert(idx) {
                self.ensure_source(&SourceKey::Nodes);
                if let Some(s) = self.sources.get_mut(&SourceKey::Nodes) {
                    s.pins += 1;
                }
            }
            let origin = self.node_exemption_origin();
            if let Some(nodes) = self.sources.get(&SourceKey::Nodes) {
                let rule = Rule {
                    action: Action::Allow,
                    peer: Peer::Set(nodes.set),
                    ports: vec![],
                    origin,
                };
                tiers.insert(0, Tier { rules: vec![rule], no_match: NoMatch::NextTier });
            }
        }
        self.out.upsert_policy(EndpointPolicy { endpoint, direction, tiers });
    }

    fn render_rule(
        &self,
        rule: &CompiledRule,
        idx: PodIdx,
        pod: &palisade_model::policy::Pod,
        direction: Direction,
    ) -> Option<Rule> {
        if let Some(local) = &rule.local {
            if !self.local_holds(local, idx, pod) {
                return None;
            }
        }
        let peer = match &rule.peer {
            CompiledPeer::Any => Peer::Any,
            CompiledPeer::Source(key) => Peer::Set(self.sources.get(key)?.set),
        };
        let mut ports = rule.ports.clone();
        if direction == Direction::Ingress {
            for (protocol, name) in &rule.named {
                if let Some(port) = named_port(pod, *protocol, name) {
                    let range = PortRange::single(*protocol, port);
                    if !ports.contains(&range) {
                        ports.push(range);
                    }
                }
            }
        }
        if rule.restricted && ports.is_empty() {
            // Every port of the rule was a name this pod lacks.
            return None;
        }
        Some(Rule { action: rule.action, peer, ports, origin: rule.origin })
    }

    /// True if the local endpoint meets a Calico rule's conditions on it.
    fn local_holds(
        &self,
        local: &LocalCondition,
        idx: PodIdx,
        pod: &palisade_model::policy::Pod,
    ) -> bool {
        let member =
            |sel: SelId| self.selectors.sels.get(&sel).is_some_and(|s| s.members.contains(&idx));
        local.sel.is_none_or(member)
            && local.not_sel.is_none_or(|s| !member(s))
            && local
                .nets
                .as_ref()
                .is_none_or(|nets| pod.ips.iter().any(|ip| nets.iter().any(|n| n.contains(ip))))
            && local.ip_version.is_none_or(|v| pod.ips.iter().any(|ip| ip.is_ipv4() == (v == 4)))
    }

    fn node_exemption_origin(&mut self) -> palisade_model::OriginId {
        let object = ObjectRef {
            kind: PALISADE_KIND.to_string(),
            namespace: String::new(),
            name: NODE_EXEMPTION.to_string(),
        };
        self.origin_id(&object, "ingress")
    }

    pub(crate) fn unpin_nodes(&mut self) {
        if let Some(s) = self.sources.get_mut(&SourceKey::Nodes) {
            s.pins = s.pins.saturating_sub(1);
            if s.pins == 0 && s.users.is_empty() {
                self.gc_sources.insert(SourceKey::Nodes);
            }
        }
    }
}
