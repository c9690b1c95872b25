//! Runs the scenario folders with the reference backend.

use std::path::{Path, PathBuf};

use palisade_conformance::{load, report, run, ReferenceBackend, RunSettings};

fn run_folder(path: &Path) -> palisade_conformance::RunReport {
    let scenarios = load(path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!scenarios.is_empty(), "{}", path.display());
    let result = run(&scenarios, &mut ReferenceBackend::new(), &RunSettings::default());
    println!("{}", report::text(&result));
    result
}

#[test]
fn public_suite_passes_with_the_reference_backend() {
    let path = PathBuf::from("/work/shared/conformance/public");
    if !path.exists() {
        eprintln!("skipped: {} is not here", path.display());
        return;
    }
    let result = run_folder(&path);
    assert!(result.success(), "{} failed", result.failed);
    assert!(result.passed > 100);
}

#[test]
fn project_scenarios_pass_with_the_reference_backend() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
    if !path.exists() {
        return;
    }
    let result = run_folder(&path);
    assert!(result.success(), "{} failed", result.failed);
}
