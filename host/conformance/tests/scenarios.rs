//! Runs the project's scenario folder with the reference backend. (The
//! shared public suites are run by `.ci/run` through the CLI when they sit
//! beside the clone.)

use std::path::Path;

use palisade_conformance::{load, report, run, ReferenceBackend, RunSettings};

fn run_folder(path: &Path) -> palisade_conformance::RunReport {
    let scenarios = load(path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!scenarios.is_empty(), "{}", path.display());
    let result = run(&scenarios, &mut ReferenceBackend::new(), &RunSettings::default());
    println!("{}", report::text(&result));
    result
}

#[test]
fn project_scenarios_pass_with_the_reference_backend() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
    let result = run_folder(&path);
    assert!(result.success(), "{} failed", result.failed);
    assert!(result.passed > 100);
}
