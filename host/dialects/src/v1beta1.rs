//! `extensions/v1beta1` NetworkPolicy and the beta `DefaultDeny` namespace
//! annotation.
//!
//! The object has the shape of `networking.k8s.io/v1` (compiled by
//! [`crate::v1`]) except that protocol names are accepted in any letter
//! case, with a warning. The annotation
//! `net.beta.kubernetes.io/network-policy: {"ingress": {"isolation": "DefaultDeny"}}`
//! on a Namespace becomes an implicit policy of that namespace: it selects
//! every pod of the namespace and governs ingress with no rule, i.e. it
//! isolates them (see [`annotation_policy`]). Under [`crate::BetaRule::Beta`]
//! the v1beta1 policies of a namespace are in force only while it carries
//! the annotation.

use palisade_model::policy::{LabelSelector, NamespaceScope, ObjectRef, PodSet, Policy, TierRank};
use serde_json::{Map, Value};

use crate::field::{get, join, Ctx};

/// The object kind string of policies compiled from this dialect.
pub const KIND: &str = "extensions/v1beta1 NetworkPolicy";

/// The object kind string of the implicit policies derived from a
/// Namespace (the DefaultDeny annotation and 2016 isolation).
pub const NAMESPACE_KIND: &str = "v1 Namespace";

/// The annotation of the beta API.
pub const ANNOTATION: &str = "net.beta.kubernetes.io/network-policy";

/// The key Romana read instead (no hyphen); honoured only with
/// [`crate::Settings::romana_annotation`].
pub const ROMANA_ANNOTATION: &str = "net.beta.kubernetes.io/networkpolicy";

/// True if the namespace's annotations ask for ingress DefaultDeny.
/// A value that is not the expected JSON is reported as a warning and
/// treated as absent.
pub(crate) fn default_deny(
    ctx: &mut Ctx<'_>,
    annotations: &Map<String, Value>,
    romana: bool,
) -> bool {
    let mut keys = vec![ANNOTATION];
    if romana {
        keys.push(ROMANA_ANNOTATION);
    }
    let mut deny = false;
    for key in keys {
        let Some(value) = get(annotations, key) else { continue };
        let path = join("metadata.annotations", key);
        let Some(text) = value.as_str() else {
            ctx.warn(&path, "annotation value is not a string; ignored");
            continue;
        };
        match serde_json::from_str::<Value>(text) {
            Err(e) => ctx.warn(&path, format!("annotation is not valid JSON ({e}); ignored")),
            Ok(json) => match json.pointer("/ingress/isolation") {
                Some(Value::String(s)) if s == "DefaultDeny" => deny = true,
                None | Some(Value::Null) => {}
                Some(other) => ctx.warn(
                    &path,
                    format!("ingress isolation `{other}` is not `DefaultDeny`; no isolation"),
                ),
            },
        }
    }
    deny
}

/// The implicit policy of a namespace carrying DefaultDeny: all its pods,
/// ingress governed with no rule. Identity: kind [`NAMESPACE_KIND`],
/// namespace and name both the namespace's name.
pub fn annotation_policy(namespace: &str) -> Policy {
    Policy {
        order: None,
        order_name: String::new(),
        object: annotation_ref(namespace),
        tier: TierRank::NetworkPolicy,
        subject: PodSet {
            namespaces: NamespaceScope::Named(namespace.to_string()),
            pods: LabelSelector::everything(),
            ..PodSet::default()
        },
        ingress: Some(Vec::new()),
        egress: None,
    }
}

/// The identity of [`annotation_policy`].
pub fn annotation_ref(namespace: &str) -> ObjectRef {
    ObjectRef {
        kind: NAMESPACE_KIND.to_string(),
        namespace: namespace.to_string(),
        name: namespace.to_string(),
    }
}
