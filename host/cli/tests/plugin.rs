//! Integration tests of `palisade plugin`, running the built binary on the
//! components built by scripts/build-plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("PALISADE_CACHE_DIR", std::env::temp_dir().join("palisade-cli-test-cache"))
        .output()
        .unwrap_or_else(|e| panic!("the palisade binary does not run: {e}"))
}

fn wasm(stem: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/release")
        .join(format!("{stem}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-plugins", path.display());
    path.display().to_string()
}

#[test]
fn inspect_prints_name_version_wit_package_and_imported_capabilities() {
    let o = palisade(&["plugin", "inspect", &wasm("palisade_fixture_hostile")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("hostile 0.1.0\n"), "{out}");
    assert!(out.contains("wit package:   palisade:backend@0.1.0"), "{out}");
    assert!(out.contains("imports:       log, nft, bpf"), "{out}");

    let o = palisade(&["plugin", "inspect", &wasm("palisade_calico_compat"), "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "calico-compat");
    assert_eq!(v["witPackage"], "palisade:backend@0.1.0");
    assert_eq!(v["imports"], serde_json::json!([]));
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_finds_shipped_plugins_by_name_and_list_shows_them_all() {
    let o = palisade(&["plugin", "inspect", "nftables", "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "nftables");

    let o = palisade(&["plugin", "list", "--output", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> =
        v.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nftables", "ebpf", "calico-compat"]);
}

#[test]
fn inspect_of_a_missing_plugin_fails_with_a_clear_error() {
    let o = palisade(&["plugin", "inspect", "no-such-plugin"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plugin `no-such-plugin` not found"), "{err}");
}

#[test]
fn inspect_describes_a_plugin_this_host_cannot_run_and_says_why() {
    let o = palisade(&["plugin", "inspect", &wasm("palisade_fixture_future")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("palisade_fixture_future (not runnable by this host)\n"), "{out}");
    assert!(out.contains("wit package:   palisade:backend@0.2.0"), "{out}");
    assert!(out.contains("runnable:      no: plugin `palisade_fixture_future` is built for palisade:backend@0.2.0"), "{out}");
    assert!(out.contains("sha256:"), "{out}");

    let o = palisade(&["plugin", "inspect", &wasm("palisade_fixture_future"), "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runnable"], false);
    assert_eq!(v["witPackage"], "palisade:backend@0.2.0");
    assert!(v["reason"].as_str().unwrap().contains("this host supports"), "{v}");

    // Not a component at all: an error (exit status 2).
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let o = palisade(&["plugin", "inspect", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a loadable WebAssembly component"));
}
