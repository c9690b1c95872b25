//! The run report as text for a terminal, or as JSON.

use std::fmt::Write;

use crate::runner::{ExpectationResult, RunReport};

/// One line per scenario, then problems, mismatches (with trace), and a
/// closing `N passed, N failed`.
pub fn text(report: &RunReport) -> String {
    let mut s = String::new();
    for (scenario, results) in by_scenario(report) {
        let failed = results.iter().filter(|r| !r.passed).count();
        let status = if failed == 0 { "PASS" } else { "FAIL" };
        let _ = writeln!(s, "{status} {scenario} ({} checks, {failed} failed)", results.len());
    }
    for w in &report.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
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

/// Results grouped by scenario, in run order.
fn by_scenario(report: &RunReport) -> Vec<(&str, Vec<&ExpectationResult>)> {
    let mut groups: Vec<(&str, Vec<&ExpectationResult>)> = Vec::new();
    for r in &report.results {
        match groups.last_mut() {
            Some((name, list)) if *name == r.scenario => list.push(r),
            _ => groups.push((&r.scenario, vec![r])),
        }
    }
    groups
}

/// Every step of every scenario with each expectation and its outcome, then
/// the summary of [`text`].
pub fn text_verbose(report: &RunReport) -> String {
    let mut s = String::new();
    for (scenario, results) in by_scenario(report) {
        let _ = writeln!(s, "scenario {scenario}");
        let from_w = results.iter().map(|r| r.expectation.from.len()).max().unwrap_or(0);
        let to_w = results.iter().map(|r| r.expectation.to.len()).max().unwrap_or(0);
        let mut step = usize::MAX;
        for r in results {
            if r.step != step {
                step = r.step;
                let _ =
                    writeln!(s, "  step {}: {}", r.step, r.description.as_deref().unwrap_or(""));
            }
            let e = &r.expectation;
            let seen = match r.observed {
                Some(o) => verdict(o),
                None => "not probed",
            };
            let _ = writeln!(
                s,
                "    {} {:<from_w$} -> {:<to_w$} {:>5}/{:<4} expected {:<7} saw {}",
                if r.passed { "ok  " } else { "FAIL" },
                e.from,
                e.to,
                e.port,
                e.protocol,
                verdict(e.allowed),
                seen
            );
        }
    }
    s.push('\n');
    s.push_str(&text(report));
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
