//! The Calico dialect's object compiler on any spec: the first byte picks
//! the kind (and the API group), the rest is the object's `spec` as YAML or
//! JSON. Compiling never panics; what compiles resolves without panicking,
//! beside a small cluster.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_dialects::{Compiler, Settings};
use palisade_model::ModelEvent;
use palisade_resolver::Resolver;
use serde_json::{json, Value};

const KINDS: [&str; 8] = [
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "Tier",
    "NetworkSet",
    "GlobalNetworkSet",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
];

fn cluster() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "x"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "a", "labels": {"tier": "front"}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a", "labels": {"app": "web"}},
               "spec": {"serviceAccountName": "api", "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 80}]}]},
               "status": {"podIP": "10.0.0.1"}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"}, "spec": {"order": 1}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": "g", "labels": {"role": "x"}}, "spec": {"nets": ["192.0.2.0/24"]}}),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let Ok(spec) = serde_yaml::from_str::<Value>(text) else { return };
    let kind = KINDS[pick as usize % KINDS.len()];
    let group = if pick & 0x80 == 0 { "projectcalico.org/v3" } else { "crd.projectcalico.org/v1" };
    let object = json!({"apiVersion": group, "kind": kind, "metadata": {"name": "f", "namespace": "a"}, "spec": spec});
    static BASE: OnceLock<(Compiler, Vec<ModelEvent>)> = OnceLock::new();
    let (base, events) = BASE.get_or_init(|| {
        let mut compiler = Compiler::new(Settings::default());
        let mut events = Vec::new();
        for o in cluster() {
            events.extend(compiler.apply(&o).expect("the cluster compiles").events);
        }
        (compiler, events)
    });
    let mut compiler = base.clone();
    let mut resolver = Resolver::new(Default::default());
    resolver.handle_all(events.clone());
    if let Ok(compiled) = compiler.apply(&object) {
        resolver.handle_all(compiled.events);
        let _ = resolver.take_delta();
    }
});
