//! Copies of the applied state (the SDK's `AppliedState` is not `Clone`).

use palisade_plugin_sdk::types::RuleSet;
use palisade_plugin_sdk::AppliedState;

/// A copy of `s`.
pub fn copy(s: &AppliedState) -> AppliedState {
    AppliedState {
        generation: s.generation,
        endpoints: s.endpoints.clone(),
        sets: s.sets.clone(),
        policies: s.policies.clone(),
        origins: s.origins.clone(),
        applied: s.applied,
    }
}

/// The rule set a state was built from (for `applied::apply`).
pub fn into_rule_set(s: AppliedState) -> RuleSet {
    RuleSet {
        generation: s.generation,
        endpoints: s.endpoints.into_values().collect(),
        sets: s.sets.into_values().collect(),
        policies: s.policies.into_values().collect(),
        origins: s.origins.into_values().collect(),
    }
}
