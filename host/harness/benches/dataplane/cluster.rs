//! The synthetic cluster of the latency bench, as Kubernetes objects.

use super::*;

pub(crate) fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1 + (i / 65_536) as u8, (i / 256 % 256) as u8, (i % 256) as u8)
}

pub(crate) fn namespace(n: usize) -> Value {
    let name = format!("ns-{n}");
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/metadata.name": name, "team": format!("t{}", n % 10)}},
    })
}

/// Pod `i`; `relabel` moves it to another `app`.
pub(crate) fn pod(i: usize, relabel: usize) -> Value {
    let http = if i.is_multiple_of(3) { 80 } else { 8080 };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
            "labels": {
                "app": format!("app-{}", (i / NAMESPACES + relabel) % APPS),
                "tier": TIERS[i % 3],
                "version": format!("v{}", i % 2)}},
        "spec": {"nodeName": format!("node-{}", i % nodes()), "containers": [{"name": "main", "ports": [
            {"name": "http", "containerPort": http, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": pod_ip(i).to_string()},
    })
}

pub(crate) fn port(p: u16) -> Value {
    json!({"protocol": "TCP", "port": p})
}

pub(crate) fn named(name: &str) -> Value {
    json!({"protocol": "TCP", "port": name})
}

/// Policy `k` of five shapes; `shift` moves its numeric ports.
pub(crate) fn policy(k: usize, shift: u16) -> Value {
    let ns = format!("ns-{}", k % NAMESPACES);
    let app = format!("app-{}", (k / NAMESPACES) % APPS);
    let s = shift;
    let (types, ingress, egress) = match (k + k / NAMESPACES) % 5 {
        // podSelector peer on a port.
        0 => (
            vec!["Ingress"],
            json!([{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
                    "ports": [port(8080 + s)]}]),
            json!([]),
        ),
        // namespaceSelector AND podSelector on a named and a numeric port.
        1 => (
            vec!["Ingress"],
            json!([{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", k % 10)}},
                              "podSelector": {"matchLabels": {"tier": "api"}}}],
                    "ports": [named("http"), port(8443 + s)]}]),
            json!([]),
        ),
        // Deny all ingress; egress to an ipBlock with except, and to the
        // databases of every namespace.
        2 => (
            vec!["Ingress", "Egress"],
            json!([]),
            json!([
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                     "except": [format!("10.1.{}.0/24", k % 8)]}}],
                 "ports": [port(443 + s)]},
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}],
                 "ports": [port(5432 + s)]},
            ]),
        ),
        // matchExpressions In, a numeric and a named port.
        3 => (
            vec!["Ingress"],
            json!([{"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                        "values": [format!("app-{}", (k + 1) % APPS), format!("app-{}", (k + 2) % APPS)]}]}}],
                    "ports": [port(80 + s), named("metrics")]}]),
            json!([]),
        ),
        // Egress on a named port, and to an external range.
        _ => (
            vec!["Egress"],
            json!([]),
            json!([
                {"to": [{"podSelector": {"matchLabels": {"tier": "api"}}}],
                 "ports": [named("http"), port(9443 + s)]},
                {"to": [{"ipBlock": {"cidr": format!("192.0.2.{}/32", k % 256)}}],
                 "ports": [port(53 + s), {"protocol": "UDP", "port": 53}]},
            ]),
        ),
    };
    let mut spec = json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": types});
    if types.contains(&"Ingress") {
        spec["ingress"] = ingress;
    }
    if types.contains(&"Egress") {
        spec["egress"] = egress;
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("policy-{k:05}"), "namespace": ns},
        "spec": spec,
    })
}

/// Nodes the pods are spread over (pod `i` on `node-{i % nodes}`); the lab
/// is `node-0`.
pub(crate) fn nodes() -> usize {
    env_usize("PALISADE_BENCH_NODES", 20).max(1)
}

pub(crate) fn node(n: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")},
           "status": {"addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", n + 1)}]}})
}

/// Whether policy `k` selects a pod of `node-0`.
pub(crate) fn selects_local_pod(k: usize) -> bool {
    let (ns, app) = (k % NAMESPACES, (k / NAMESPACES) % APPS);
    (0..PODS).any(|i| i % NAMESPACES == ns && (i / NAMESPACES) % APPS == app && i % nodes() == 0)
}

pub(crate) fn cluster(policies: usize) -> Vec<Value> {
    let mut objects: Vec<Value> = (0..NAMESPACES).map(namespace).collect();
    objects.extend((0..nodes()).map(node));
    objects.extend((0..PODS).map(|i| pod(i, 0)));
    objects.extend((0..policies).map(|k| policy(k, 0)));
    objects
}
