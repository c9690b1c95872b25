//! The run report as text for a terminal, or as JSON.

use std::fmt::Write;

use crate::runner::RunReport;

/// Mismatches (with trace), problems, and a closing `N passed, N failed`.
pub fn text(report: &RunReport) -> String {
    let mut s = String::new();
    for p in &report.problems {
        // The message names the object and the field already.
        let what = if p.ignored_kind { "ignored" } else { "rejected" };
        let _ = writeln!(s, "{what}: {} step {}: {}", p.scenario, p.step, p.message);
    }
    for r in report.results.iter().filter(|r| !r.passed) {
        let e = &r.expectation;
        let _ = writeln!(
            s,
            "FAIL {} step {}{} ({})",
            r.scenario,
            r.step,
            r.description.as_deref().map(|d| format!(" \"{d}\"")).unwrap_or_default(),
            r.file
        );
        let _ = writeln!(
            s,
            "  expected {} -> {} {}/{}: {}",
            e.from,
            e.to,
            e.protocol,
            e.port,
            verdict(e.allowed)
        );
        match (&r.observed, &r.error) {
            (Some(o), _) => {
                let _ = writeln!(s, "  observed: {}", verdict(*o));
            }
            (None, Some(err)) => {
                let _ = writeln!(s, "  could not probe: {err}");
            }
            (None, None) => {}
        }
        if let Some(trace) = &r.trace {
            for line in trace.lines() {
                let _ = writeln!(s, "  | {line}");
            }
        }
    }
    let _ = writeln!(s, "{} passed, {} failed", report.passed, report.failed);
    s
}

fn verdict(allowed: bool) -> &'static str {
    if allowed {
        "allowed"
    } else {
        "denied"
    }
}

/// The whole report (every expectation with its result) as JSON.
pub fn json(report: &RunReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}
