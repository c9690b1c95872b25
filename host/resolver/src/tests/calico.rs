//! Calico through the resolver, incrementally: the objects are written as
//! users write them (compiled by the dialect compiler), then changed; the
//! verdicts after each change come from Calico's semantics (the notes'
//! Calico section), not from the code.

use palisade_dialects::{Compiler, Settings as DialectSettings};
use palisade_store::ObjectKey;

use super::*;

/// The cluster of these tests: namespaces `x` (team a) and `y` (team b);
/// pods x/web (10.0.0.1, account `api`), x/db (10.0.0.2), y/cli
/// (10.0.1.1, account `api` of y).
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: b}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: x, labels: {tier: front}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {serviceAccountName: api, containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {containers: [{name: c, ports: [{containerPort: 5432}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: cli, namespace: y, labels: {app: cli}}
spec: {serviceAccountName: api, containers: [{name: c}]}
status: {podIP: 10.0.1.1}
"#;

const WEB: &str = "10.0.0.1";
const DB: &str = "10.0.0.2";
const CLI: &str = "10.0.1.1";

struct Cluster {
    compiler: Compiler,
    resolver: Resolver,
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster {
            compiler: Compiler::new(DialectSettings::default()),
            resolver: Resolver::new(Settings::default()),
        };
        c.apply(CLUSTER);
        c
    }

    /// Applies every document of `yaml`.
    fn apply(&mut self, yaml: &str) {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_json::to_value(
                <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap(),
            )
            .unwrap();
            let compiled = self.compiler.apply(&value).unwrap_or_else(|e| panic!("{e}"));
            self.resolver.handle_all(compiled.events);
        }
    }

    fn delete(&mut self, group: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let events = self.compiler.delete(&ObjectKey::new(group, kind, namespace, name));
        self.resolver.handle_all(events);
    }

    fn allowed(&self, from: &str, to: &str, port: u16) -> bool {
        allowed(self.resolver.rule_set(), from, to, port)
    }
}

#[test]
fn namespace_labels_are_read_as_pcns_and_follow_relabels() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-from-team-a, namespace: x}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {namespaceSelector: team == 'a'}
"#,
    );
    assert!(c.allowed(WEB, DB, 5432), "x is team a");
    assert!(!c.allowed(CLI, DB, 5432), "y is team b");
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {team: a}}\n");
    assert!(c.allowed(CLI, DB, 5432), "y relabelled to team a");
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: z}}\n");
    assert!(!c.allowed(WEB, DB, 5432), "x relabelled away");
}

#[test]
fn service_accounts_by_name_and_by_the_account_objects_labels() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db-from-front}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {serviceAccounts: {selector: tier == 'front'}}
"#,
    );
    assert!(c.allowed(WEB, DB, 5432), "x/api is tier front");
    assert!(!c.allowed(CLI, DB, 5432), "y/api has no object, no labels");
    c.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: y, labels: {tier: front}}\n");
    assert!(c.allowed(CLI, DB, 5432), "y/api now labelled");
    c.delete("", "ServiceAccount", Some("x"), "api");
    assert!(!c.allowed(WEB, DB, 5432), "x/api's labels are gone with it");

    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db-from-front}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {serviceAccounts: {names: [default]}}
"#,
    );
    assert!(!c.allowed(WEB, DB, 5432), "web runs as api");
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: x, labels: {app: web}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.1}\n",
    );
    assert!(c.allowed(WEB, DB, 5432), "no serviceAccountName: `default`");
}

#[test]
fn network_sets_are_matched_by_rule_selectors_only() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db-from-partners}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: role == 'partner'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [203.0.113.0/24]}
"#,
    );
    assert!(c.allowed("203.0.113.9", DB, 5432));
    assert!(!c.allowed("198.51.100.1", DB, 5432));
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: partners, labels: {role: partner}}\nspec: {nets: [198.51.100.0/24]}\n",
    );
    assert!(!c.allowed("203.0.113.9", DB, 5432), "the set's nets changed");
    assert!(c.allowed("198.51.100.1", DB, 5432));
    c.delete("projectcalico.org", "GlobalNetworkSet", None, "partners");
    assert!(!c.allowed("198.51.100.1", DB, 5432));

    // A namespaced policy's rule selector sees its own namespace's sets.
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: y, labels: {role: partner}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-from-partners, namespace: x}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    source: {selector: role == 'partner'}
"#,
    );
    assert!(!c.allowed("192.0.2.1", WEB, 80), "the set is in y, the policy in x");
    assert!(c.allowed("192.0.2.1", DB, 5432), "the global policy sees it");
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: partners, namespace: x, labels: {role: partner}}\nspec: {nets: [192.0.2.0/24]}\n",
    );
    assert!(c.allowed("192.0.2.1", WEB, 80), "now in x too");
}

#[test]
fn unknown_addresses_match_no_selector_but_a_not_selector() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: "!has(app)"}
"#,
    );
    assert!(!c.allowed("198.51.100.1", DB, 5432), "an unknown address has no labels to test");
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {notSelector: app == 'cli'}
"#,
    );
    assert!(c.allowed("198.51.100.1", DB, 5432), "notSelector matches what it does not select");
    assert!(c.allowed(WEB, DB, 5432));
    assert!(!c.allowed(CLI, DB, 5432));
    c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: cli, namespace: y, labels: {app: other}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.1.1}\n");
    assert!(c.allowed(CLI, DB, 5432), "relabelled out of the notSelector");
}

#[test]
fn nets_and_not_nets_intersect() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress:
  - action: Deny
    source: {nets: [10.0.0.0/16], notNets: [10.0.1.0/24]}
  - action: Allow
"#,
    );
    assert!(!c.allowed(WEB, DB, 5432), "inside nets");
    assert!(c.allowed(CLI, DB, 5432), "inside notNets");
    assert!(c.allowed("192.0.2.1", DB, 5432), "outside nets");
}

#[test]
fn a_local_condition_follows_the_endpoints_labels() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: x-all, namespace: x}
spec:
  ingress:
  - action: Allow
    destination: {selector: open == 'yes'}
"#,
    );
    assert!(!c.allowed(CLI, DB, 5432), "isolated; db is not open");
    c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: x, labels: {app: db, open: 'yes'}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.2}\n");
    assert!(c.allowed(CLI, DB, 5432), "db opened");
    assert!(!c.allowed(CLI, WEB, 80), "web is not");
}

#[test]
fn tiers_policies_and_orders_decide_in_calicos_order() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.pass-db}
spec:
  tier: security
  selector: app == 'db'
  ingress: [{action: Pass, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-db}
spec:
  order: 500
  selector: app == 'db'
  ingress: [{action: Deny, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-db}
spec:
  order: 100
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
"#,
    );
    // web → db: passed by `security`, then in the default tier allow-db
    // (order 100) comes before deny-db (order 500).
    assert!(c.allowed(WEB, DB, 5432));
    // cli → db: `security` applies to db but no rule matches: the tier's
    // end denies.
    assert!(!c.allowed(CLI, DB, 5432));
    c.apply("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 10, defaultAction: Pass}\n");
    // Now cli falls through to the default tier, where no policy matches
    // cli and the tier's end denies.
    assert!(!c.allowed(CLI, DB, 5432));
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-db}
spec:
  order: 1000
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
"#,
    );
    assert!(!c.allowed(WEB, DB, 5432), "deny-db (500) now comes first");
    // A Kubernetes NetworkPolicy sits in the default tier at order 1000,
    // as `knp.default.<name>`: after deny-db.
    c.delete("projectcalico.org", "GlobalNetworkPolicy", None, "allow-db");
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: x}\nspec: {podSelector: {}, ingress: [{}]}\n",
    );
    assert!(!c.allowed(WEB, DB, 5432), "deny-db before the Kubernetes policy");
    assert!(c.allowed(CLI, DB, 5432), "the Kubernetes policy allows everything else");
}

#[test]
fn egress_named_ports_resolve_on_the_destination_pods_the_rule_picks() {
    let mut c = Cluster::new();
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: cli, namespace: y, labels: {app: cli}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 6432}]}]}
status: {podIP: 10.0.1.1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web-out}
spec:
  selector: app == 'web'
  egress:
  - action: Allow
    destination: {selector: app == 'db', ports: [pg]}
"#,
    );
    assert!(c.allowed(WEB, DB, 5432), "db's pg, TCP as declared");
    assert!(!c.allowed(WEB, DB, 6432));
    assert!(!c.allowed(WEB, CLI, 6432), "cli names pg too, but the selector does not pick it");
    c.apply(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web-out}
spec:
  selector: app == 'web'
  egress:
  - action: Allow
    ipVersion: 6
    destination: {ports: [pg]}
"#,
    );
    assert!(!c.allowed(WEB, DB, 5432), "IPv6 only: no IPv4 destination");
    assert!(!c.allowed(WEB, CLI, 6432));
}
