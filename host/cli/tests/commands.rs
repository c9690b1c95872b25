//! Integration tests of the `resolve`, `explain`, `matrix` and
//! `conformance` commands, running the built binary.

use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("the palisade binary does not run: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DEMO: &str = "tests/fixtures/demo.yaml";

#[test]
fn resolve_prints_the_rule_set_as_json_and_yaml() {
    let o = palisade(&["resolve", DEMO, "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rs["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(rs["policies"].as_array().unwrap().len(), 1, "only db is isolated");
    let origins = stdout(&o);
    assert!(origins.contains("db-from-frontend"));
    assert!(origins.contains("node-exemption"));

    let o = palisade(&["resolve", DEMO, "--node", "node-2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs: serde_json::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> =
        rs["endpoints"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["shop/other"], "only node-2's pods are endpoints");
}

#[test]
fn explain_names_the_policy_and_the_rule() {
    let o = palisade(&[
        "explain",
        DEMO,
        "--from",
        "shop/frontend",
        "--to",
        "shop/db",
        "--port",
        "6379",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("ALLOWED: shop/frontend (10.1.0.11) -> shop/db (10.1.0.10) TCP/6379"),
        "{text}"
    );
    assert!(
        text.contains(
            "rule ingress[0] (Allow) of networking.k8s.io/v1 NetworkPolicy shop/db-from-frontend, in tier `default`"
        ),
        "{text}"
    );

    let o = palisade(&[
        "explain",
        DEMO,
        "--from",
        "shop/other",
        "--to",
        "shop/db",
        "--port",
        "6379/tcp",
    ]);
    let text = stdout(&o);
    assert!(text.starts_with("DENIED"), "{text}");
    assert!(
        text.contains("selected by networking.k8s.io/v1 NetworkPolicy shop/db-from-frontend"),
        "{text}"
    );
    assert!(text.contains("the destination's ingress denies it"), "{text}");

    let o =
        palisade(&["explain", DEMO, "--from", "node:node-1", "--to", "shop/db", "--port", "6379"]);
    assert!(stdout(&o).starts_with("ALLOWED"), "{}", stdout(&o));
    let o =
        palisade(&["explain", DEMO, "--from", "ip:192.0.2.1", "--to", "shop/db", "--port", "6379"]);
    assert!(stdout(&o).starts_with("DENIED"), "{}", stdout(&o));
}

#[test]
fn explain_rejects_unknown_endpoints_and_bad_ports() {
    let o = palisade(&["explain", DEMO, "--from", "shop/nope", "--to", "shop/db", "--port", "80"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--from `shop/nope`: no Pod `nope` in namespace `shop`"),
        "{}",
        stderr(&o)
    );
    let o =
        palisade(&["explain", DEMO, "--from", "shop/db", "--to", "shop/db", "--port", "80/icmp"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`icmp` is not TCP, UDP or SCTP"), "{}", stderr(&o));
}

#[test]
fn matrix_shows_every_pair_with_a_legend() {
    let o = palisade(&["matrix", DEMO, "--port", "6379"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("5 allowed, 1 denied"), "{text}");
    assert!(text.contains("p1  shop/db (10.1.0.10)"), "{text}");
    let row = text.lines().find(|l| l.trim_start().starts_with("p3 ")).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), vec!["p3", "-", "+", "."]);
}

#[test]
fn invalid_objects_are_named_with_their_field_and_fail_the_command() {
    let o = palisade(&["resolve", "tests/fixtures/invalid"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.yaml, document 2"), "{err}");
    assert!(err.contains("NetworkPolicy.networking.k8s.io shop/bad-port"), "{err}");
    assert!(err.contains("`spec.ingress[0].ports[0].port`"), "{err}");
}

#[test]
fn conformance_reports_counts_and_fails_on_mismatch() {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("s.yaml");
    std::fs::write(
        &scenario,
        r#"
name: cli-smoke
objects:
  - {apiVersion: v1, kind: Namespace, metadata: {name: x}}
  - {apiVersion: v1, kind: Pod, metadata: {namespace: x, name: a, labels: {app: a}}, status: {podIP: 10.0.0.1}}
  - {apiVersion: v1, kind: Pod, metadata: {namespace: x, name: b}, status: {podIP: 10.0.0.2}}
steps:
  - description: deny all
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: x, name: deny}, spec: {podSelector: {}}}
      - {apiVersion: example.com/v1, kind: Gadget, metadata: {name: g}}
    expect:
      - {from: x/b, to: x/a, port: 80, allowed: false}
      - {from: x/b, to: x/a, port: 81, allowed: true}
"#,
    )
    .unwrap();
    let path = scenario.to_str().unwrap();
    let o = palisade(&["conformance", path]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
    assert!(text.contains("FAIL cli-smoke step 1 \"deny all\""), "{text}");
    assert!(text.contains("expected x/b -> x/a TCP/81: allowed"), "{text}");
    assert!(text.contains("observed: denied"), "{text}");
    assert!(text.contains("ignored: cli-smoke step 1"), "{text}");

    let o = palisade(&["conformance", path, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["results"].as_array().unwrap().len(), 2);
    assert_eq!(report["failed"], 1);
    std::fs::remove_dir_all(&dir).ok();

    let o = palisade(&["conformance", path, "--backend", "nope"]);
    assert!(stderr(&o).contains("--backend `nope` is unknown"), "{}", stderr(&o));
}

#[test]
fn run_refuses_a_zero_plugin_limit_before_programming_anything() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!("dir:{}", dir.path().display());
    let o =
        palisade(&["run", "--plugin", "nftables", "--source", &source, "--plugin-memory-mb", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--plugin-memory-mb"), "{}", stderr(&o));
    let o = palisade(&["run", "--help"]);
    for flag in [
        "--plugin-memory-mb",
        "--plugin-deadline-ms",
        "--plugin-host-calls",
        "--plugin-host-call-kb",
    ] {
        assert!(stdout(&o).contains(flag), "{flag} in --help");
    }
}

const CALICO: &str = "tests/fixtures/calico.yaml";

#[test]
fn select_lists_what_a_calico_selector_picks_with_the_implicit_labels() {
    let names = |sel: &str| {
        let o = palisade(&["select", CALICO, "--selector", sel, "-o", "name"]);
        assert!(o.status.success(), "{sel}: {}", stderr(&o));
        stdout(&o).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(names("app == 'web'"), vec!["Pod/lab/probe", "Pod/shop/web"]);
    assert_eq!(names("pcns.team == 'a' && has(app)"), vec!["Pod/shop/db", "Pod/shop/web"]);
    assert_eq!(names("pcsa.tier == 'front'"), vec!["Pod/shop/web"]);
    assert_eq!(
        names(
            "projectcalico.org/serviceaccount == 'default' && projectcalico.org/namespace == 'lab'"
        ),
        vec!["Pod/lab/probe"]
    );
    assert_eq!(
        names("role == 'partner'"),
        vec!["GlobalNetworkSet/everyone", "NetworkSet/shop/partners"]
    );
    assert_eq!(names("role == 'partner' && global()"), vec!["GlobalNetworkSet/everyone"]);

    let o =
        palisade(&["select", CALICO, "--selector", "pcns.team == 'a' && has(role)", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["kind"], "NetworkSet");
    assert_eq!(v[0]["addresses"][0], "192.0.2.0/24");
    let o = palisade(&["select", CALICO, "--selector", "app == 'db'"]);
    assert!(stdout(&o).starts_with("KIND"), "{}", stdout(&o));
    assert!(stdout(&o).contains("10.70.0.2/32"), "{}", stdout(&o));
}

#[test]
fn select_with_labels_answers_in_its_exit_status() {
    let run =
        |sel: &str, labels: &str| palisade(&["select", "--selector", sel, "--labels", labels]);
    let o = run("app in {'a', 'b'} && !has(x)", r#"{"app": "b"}"#);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), "match");
    let o = run("app in {'a', 'b'} && !has(x)", r#"{"app": "b", "x": ""}"#);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).trim(), "no match");
    let o = run("app == 'a' ||", "{}");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("column 14: expected a label"), "{}", stderr(&o));
    let o = run("all()", "[1]");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--labels"), "{}", stderr(&o));
}

#[test]
fn explain_names_the_calico_tier_the_policy_and_the_rule() {
    let o =
        palisade(&["explain", CALICO, "--from", "lab/probe", "--to", "shop/db", "--port", "5432"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("DENIED"), "{text}");
    assert!(
        text.contains("denied by rule ingress[0] (Deny) of projectcalico.org/v3 GlobalNetworkPolicy security.db-guard, in tier `security`"),
        "{text}"
    );
    let o =
        palisade(&["explain", CALICO, "--from", "shop/web", "--to", "shop/db", "--port", "5432"]);
    let text = stdout(&o);
    assert!(text.starts_with("ALLOWED"), "{text}");
    assert!(text.contains("allowed by rule ingress[0] (Allow) of projectcalico.org/v3 NetworkPolicy shop/db-from-web, in tier `default`"), "{text}");
    assert!(text.contains("Passed on by rule ingress[1] (Pass) of projectcalico.org/v3 GlobalNetworkPolicy security.db-guard, in tier `security`"), "{text}");
    let o = palisade(&[
        "explain",
        CALICO,
        "--from",
        "ip:198.51.100.1",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ]);
    assert!(
        stdout(&o)
            .contains("no rule of tier `default` matches this peer and port, and its end denies"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn resolve_and_matrix_take_calico_manifests() {
    let o = palisade(&["resolve", CALICO, "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rs: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rs["endpoints"].as_array().unwrap().len(), 3);
    let o = palisade(&["matrix", CALICO, "--port", "5432"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
