//! End to end, as root: `palisade run --source kube` with the nftables
//! plugin, against the fake API server (the real list/watch wire format),
//! enforcing on the wire of a namespace lab: a NetworkPolicy created
//! through the API isolates its pod; while the API server is away the
//! isolation stays (logged once); deleting the policy lifts it. On the way,
//! `palisade status` reads the per-pod state from the daemon's health
//! address, and the gated pod gets its `palisade.io/policy-programmed`
//! condition through pods/status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube-source/tests/support/fake_api.rs"]
mod fake_api;
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use serde_json::json;
use support::{allowed, eventually, palisade_run, probe_until, shop_lab, Counts, Daemon};

fn pod(name: &str, ip: &str, ports: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
           "spec": {"nodeName": "lab-node", "containers": [{"name": name, "ports": ports}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

#[test]
fn run_from_the_api_server_enforces_a_created_policy_on_the_wire_and_lifts_it_on_delete() {
    let lab = shop_lab("10.78.0.1", "10.78.0.2");
    let mut api = FakeApi::start();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    api.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "lab-node"}}));
    let mut web = pod("web", "10.78.0.1", json!([{"containerPort": 80}]));
    web["spec"]["readinessGates"] = json!([{"conditionType": "palisade.io/policy-programmed"}]);
    api.apply(web);
    api.apply(pod("client", "10.78.0.2", json!([])));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n",
            api.url()
        ),
    )
    .unwrap();
    assert!(allowed(&lab), "no policy: open");

    let mut cmd = palisade_run(
        &["--source", "kube", "--plugin", "nftables", "--node", "lab-node"],
        &lab.node_netns(),
        "palisade-cli-test-cache",
    );
    cmd.args(["--health-addr", "127.0.0.1:0", "--log", "info"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let mut daemon = Daemon::spawn(cmd);
    // The daemon's stderr as it comes: it names the health address it bound.
    let (said, reader) = daemon.collect_stderr();
    let deadline = Instant::now() + Duration::from_secs(180);
    let addr = loop {
        let text = said.lock().unwrap().clone();
        if text.contains("; ready") {
            let addr = text
                .split("/readyz and /metrics on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string);
            break addr.unwrap_or_else(|| panic!("no health address: {text}"));
        }
        assert!(Instant::now() < deadline, "not ready: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Per pod: web and client are this node's endpoints, programmed.
    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["status", "--addr", &addr])
            .args(args)
            .output()
            .unwrap()
    };
    let table = status(&[]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("shop/web") && table.contains("shop/client"), "{table}");
    assert!(table.starts_with("READY  GENERATION  API SERVER\nyes"), "{table}");
    assert!(status(&["--pod", "shop/web"]).status.success());
    assert_eq!(status(&["--pod", "shop/nobody"]).status.code(), Some(1));
    // The readiness gate of web is set through pods/status.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.status_patches().iter().any(|(ns, name, _)| ns == "shop" && name == "web") {
        assert!(Instant::now() < deadline, "no readiness gate set: {:?}", api.requests());
        std::thread::sleep(Duration::from_millis(50));
    }

    api.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-web", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}}}));
    assert!(
        eventually(&lab, false, Duration::from_secs(15)),
        "the policy created through the API isolates web"
    );

    // The API server goes away for a while: the last state stays in force.
    // Probers through the outage: client → web must stay denied (25 at a
    // time, 200 ms timeout), web → client must stay allowed (its refusal
    // reaches web; 5 at a time, 1 s timeout).
    api.stop();
    let (counts, stop) = (Counts::default(), AtomicBool::new(false));
    std::thread::scope(|s| {
        s.spawn(|| {
            probe_until(
                &lab,
                ("shop/client", "shop/web"),
                ("shop/web", "shop/client"),
                &stop,
                &counts,
            )
        });
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (denied, leaked) = (load(&counts.denied_probes), load(&counts.leaked));
    let (allowed_probes, dropped) = (load(&counts.allowed_probes), load(&counts.dropped));
    println!(
        "API server away 1.5 s: {denied} denied probes, {leaked} leaked; {allowed_probes} allowed probes, {dropped} dropped"
    );
    assert_eq!(
        (leaked, dropped),
        (0, 0),
        "the last state stays in force while the API server is away"
    );
    assert!(denied >= 150, "the prober ran at 100/s or more: {denied}");
    api.start_again();

    api.delete("networking.k8s.io/v1", "NetworkPolicy", Some("shop"), "deny-web");
    assert!(eventually(&lab, true, Duration::from_secs(15)), "deleting it lifts the isolation");

    let status = daemon.stop();
    reader.join().unwrap();
    let stderr = said.lock().unwrap().clone();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("ready"), "{stderr}");
    // One log line per change of state of the API server's reachability.
    assert_eq!(stderr.matches("API server unreachable").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("API server reachable again").count(), 1, "{stderr}");
    assert!(api.requests().iter().any(|r| r.contains("watch=true")), "it watched");
    let tables = Command::new("ip")
        .args(["netns", "exec", lab.node_netns_name(), "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tables.stdout).trim().is_empty());
}
