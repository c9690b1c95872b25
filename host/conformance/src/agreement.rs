//! Several backends on the same scenarios: do they answer every
//! expectation alike?
//!
//! Expectations are matched across the runs' reports by position (the
//! runner visits scenarios, steps and expectations in the same order for
//! every backend) and checked to be the same expectation.

use std::fmt::Write;

use serde::Serialize;

use crate::runner::RunReport;

/// One expectation on which the backends did not all answer the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub scenario: String,
    pub step: usize,
    pub probe: String,
    pub expected: bool,
    /// Per backend: what it answered (`None`: it could not be asked).
    pub answers: Vec<(String, Option<bool>)>,
}

/// The comparison of several runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Agreement {
    pub backends: Vec<String>,
    /// Expectations compared.
    pub expectations: usize,
    /// Expectations every backend answered, and answered alike.
    pub agreeing: usize,
    pub disagreements: Vec<Disagreement>,
    /// Set when the runs do not hold the same expectations (a scenario
    /// failed to load for one of them, ...): what differs.
    pub mismatch: Option<String>,
}

impl Agreement {
    /// True if the runs hold the same expectations and every backend
    /// answered every one of them alike.
    pub fn complete(&self) -> bool {
        self.mismatch.is_none() && self.disagreements.is_empty()
    }
}

/// Compares the answers of `reports` (one per backend).
pub fn agreement(reports: &[RunReport]) -> Agreement {
    let mut a = Agreement {
        backends: reports.iter().map(|r| r.backend.clone()).collect(),
        ..Agreement::default()
    };
    let Some(first) = reports.first() else { return a };
    if let Some(other) = reports.iter().find(|r| r.results.len() != first.results.len()) {
        a.mismatch = Some(format!(
            "{} holds {} expectations, {} holds {}",
            first.backend,
            first.results.len(),
            other.backend,
            other.results.len()
        ));
        return a;
    }
    for (i, r) in first.results.iter().enumerate() {
        let row: Vec<_> = reports.iter().map(|rep| &rep.results[i]).collect();
        if let Some(odd) = row.iter().find(|x| {
            x.scenario != r.scenario || x.step != r.step || x.expectation != r.expectation
        }) {
            a.mismatch = Some(format!(
                "expectation {i}: {} step {} against {} step {}",
                r.scenario, r.step, odd.scenario, odd.step
            ));
            return a;
        }
        a.expectations += 1;
        let answers: Vec<(String, Option<bool>)> =
            reports.iter().zip(&row).map(|(rep, x)| (rep.backend.clone(), x.observed)).collect();
        let same = answers.iter().all(|(_, o)| o.is_some() && *o == answers[0].1);
        if same {
            a.agreeing += 1;
        } else {
            let e = &r.expectation;
            a.disagreements.push(Disagreement {
                scenario: r.scenario.clone(),
                step: r.step,
                probe: format!("{} -> {} {}/{}", e.from, e.to, e.protocol, e.port),
                expected: e.allowed,
                answers,
            });
        }
    }
    a
}

fn word(o: Option<bool>) -> &'static str {
    match o {
        Some(true) => "allowed",
        Some(false) => "denied",
        None => "no answer",
    }
}

/// The comparison as text: disagreements, then a closing line.
pub fn text(a: &Agreement) -> String {
    let mut s = String::new();
    if let Some(m) = &a.mismatch {
        let _ = writeln!(s, "the runs cannot be compared: {m}");
    }
    for d in &a.disagreements {
        let answers: Vec<String> =
            d.answers.iter().map(|(b, o)| format!("{b}: {}", word(*o))).collect();
        let _ = writeln!(
            s,
            "DISAGREE {} step {}: {} (expected {}): {}",
            d.scenario,
            d.step,
            d.probe,
            word(Some(d.expected)),
            answers.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "agreement of {}: {} of {} expectations answered alike",
        a.backends.join(", "),
        a.agreeing,
        a.expectations
    );
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::runner::ExpectationResult;
    use crate::scenario::Expectation;

    fn result(step: usize, port: u16, observed: Option<bool>) -> ExpectationResult {
        ExpectationResult {
            scenario: "s".into(),
            file: "s.yaml".into(),
            step,
            description: None,
            expectation: Expectation {
                from: "a/x".into(),
                to: "b/y".into(),
                port,
                protocol: palisade_model::Protocol::Tcp,
                allowed: true,
            },
            observed,
            passed: observed == Some(true),
            error: None,
            trace: None,
        }
    }

    fn report(backend: &str, results: Vec<ExpectationResult>) -> RunReport {
        RunReport { backend: backend.into(), results, ..RunReport::default() }
    }

    #[test]
    fn a_differing_or_missing_answer_is_a_disagreement() {
        let a = agreement(&[
            report(
                "reference",
                vec![
                    result(1, 80, Some(true)),
                    result(1, 81, Some(false)),
                    result(2, 80, Some(true)),
                ],
            ),
            report(
                "ebpf",
                vec![result(1, 80, Some(true)), result(1, 81, Some(true)), result(2, 80, None)],
            ),
        ]);
        assert_eq!(a.expectations, 3);
        assert_eq!(a.agreeing, 1);
        assert_eq!(a.disagreements.len(), 2);
        assert_eq!(a.disagreements[0].probe, "a/x -> b/y TCP/81");
        assert_eq!(a.disagreements[1].answers[1], ("ebpf".to_string(), None));
        assert!(!a.complete());
    }

    #[test]
    fn runs_of_different_expectations_are_not_compared() {
        let a = agreement(&[
            report("reference", vec![result(1, 80, Some(true))]),
            report("ebpf", vec![result(1, 81, Some(true))]),
        ]);
        assert!(a.mismatch.is_some());
        assert!(!a.complete());
    }
}
