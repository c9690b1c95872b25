//! The watched manifest directory: changes are seen, files re-read alone,
//! removed objects deleted, broken files never delete anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use palisade_daemon::{DirWatcher, ManifestDir};
use palisade_pipeline::Pipeline;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop}\nstatus: {podIP: 10.0.0.2}\n";
const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn edits_creations_and_deletions_reach_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ns.yaml", NS);
    write(dir.path(), "pods.yaml", PODS);
    let mut pipeline = Pipeline::new(Default::default(), Default::default());
    let mut source = ManifestDir::new(dir.path());
    let report = source.load_all(&mut pipeline).unwrap();
    assert_eq!(report.applied, 3);
    assert_eq!(pipeline.rule_set().endpoints.len(), 2);
    assert!(pipeline.rule_set().policies.is_empty());

    write(dir.path(), "deny.yaml", DENY);
    let report = source.reload(&mut pipeline, &[dir.path().join("deny.yaml")]);
    assert_eq!((report.applied, report.deleted), (1, 0));
    assert_eq!(pipeline.rule_set().policies.len(), 2, "both pods isolated");

    // One pod removed from its file: deleted.
    write(dir.path(), "pods.yaml", PODS.split("---").next().unwrap());
    let report = source.reload(&mut pipeline, &[dir.path().join("pods.yaml")]);
    assert_eq!(report.deleted, 1);
    assert_eq!(pipeline.rule_set().endpoints.len(), 1);

    // A broken file deletes nothing and is reported.
    write(dir.path(), "deny.yaml", "spec: [unclosed");
    let report = source.reload(&mut pipeline, &[dir.path().join("deny.yaml")]);
    assert_eq!(report.unreadable.len(), 1, "{report:?}");
    assert_eq!(pipeline.rule_set().policies.len(), 1, "deny is still in force");

    // The file removed: its objects go.
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    let report = source.reload(&mut pipeline, &[dir.path().join("deny.yaml")]);
    assert_eq!(report.deleted, 1);
    assert!(pipeline.rule_set().policies.is_empty());
}

#[test]
fn an_object_moved_to_another_file_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &format!("{NS}---\n{DENY}"));
    let mut pipeline = Pipeline::new(Default::default(), Default::default());
    let mut source = ManifestDir::new(dir.path());
    source.load_all(&mut pipeline).unwrap();
    write(dir.path(), "a.yaml", NS);
    write(dir.path(), "b.yaml", DENY);
    let report =
        source.reload(&mut pipeline, &[dir.path().join("a.yaml"), dir.path().join("b.yaml")]);
    assert_eq!(report.deleted, 0);
    assert!(pipeline.store().iter().any(|(k, _)| k.name == "deny"));
}

#[test]
fn rejected_objects_are_reported_with_their_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ns.yaml", NS);
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n",
    );
    let mut pipeline = Pipeline::new(Default::default(), Default::default());
    let report = ManifestDir::new(dir.path()).load_all(&mut pipeline).unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert!(report.rejected[0].0.ends_with("bad.yaml"));
    assert!(report.rejected[0].1.message.contains("port 0"), "{:?}", report.rejected[0].1);
}

#[test]
fn the_watcher_reports_each_changed_file_once_the_tree_settles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut w = DirWatcher::new(dir.path(), Duration::from_millis(20)).unwrap();
    assert!(w.next_changes(Duration::from_millis(50)).unwrap().is_empty());
    write(dir.path(), "a.yaml", NS);
    write(dir.path(), "a.yaml", DENY);
    write(&dir.path().join("sub"), "b.yaml", NS);
    let changed = w.next_changes(Duration::from_secs(5)).unwrap();
    assert_eq!(changed, vec![dir.path().join("a.yaml"), dir.path().join("sub/b.yaml")]);
    // A directory created later is watched too.
    std::fs::create_dir(dir.path().join("later")).unwrap();
    write(&dir.path().join("later"), "c.yaml", NS);
    let changed = w.next_changes(Duration::from_secs(5)).unwrap();
    assert!(changed.contains(&dir.path().join("later/c.yaml")), "{changed:?}");
}
