//! `[[test]]` cases: a policy's own examples, run like `opa test`. Each case gives request facts
//! and the expected decision; the report shows, for each failing case, what differed.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::decision::{ApprovalRequirement, Decision, Outcome, SuggestionStatus};
use super::eval::evaluate;
use super::model::{AccessLevel, ApproverKind, Policy, TestCase};
use super::units::PolicyDuration;

/// An expected effective duration: `"permanent"` or a duration such as `"30d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedDuration {
    Permanent,
    Length(PolicyDuration),
}

impl FromStr for ExpectedDuration {
    type Err = super::units::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "permanent" { Ok(ExpectedDuration::Permanent) } else { s.parse().map(ExpectedDuration::Length) }
    }
}

impl fmt::Display for ExpectedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedDuration::Permanent => f.write_str("permanent"),
            ExpectedDuration::Length(d) => d.fmt(f),
        }
    }
}

impl Serialize for ExpectedDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExpectedDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::units::from_str_value(d, "\"permanent\" or a duration such as \"30d\"")
    }
}

/// What a test case expects. Only the given fields are compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub decision: Option<Outcome>,
    pub target: Option<String>,
    pub level: Option<AccessLevel>,
    pub rule: Option<String>,
    /// The request is auto-approved by this rule.
    pub auto_approved_by: Option<String>,
    /// The approver kinds of each stage, in order.
    pub approvals: Option<Vec<Vec<ApproverKind>>>,
    pub duration: Option<ExpectedDuration>,
    pub ends_at: Option<Timestamp>,
    pub shortened_to_cap: Option<bool>,
    /// The change may run from this moment (the next window opening when deferred).
    pub execute_at: Option<Timestamp>,
    /// Exactly these checks fail (order ignored).
    pub failing_checks: Option<Vec<String>>,
    pub ai_suggestion: Option<SuggestionStatus>,
}

/// One difference between expected and actual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub mismatches: Vec<Mismatch>,
    pub decision: Decision,
}

/// The result of all cases of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub policy_version: String,
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn all_passed(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            writeln!(f, "{} {}", if case.passed { "PASS" } else { "FAIL" }, case.name)?;
            for m in &case.mismatches {
                writeln!(f, "    {}: expected {}, got {}", m.field, m.expected, m.actual)?;
            }
            if !case.passed {
                for c in case.decision.failing() {
                    writeln!(f, "    (failing check {}: {})", c.code, c.reason)?;
                }
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

fn show_opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn show_stages(stages: &[Vec<ApproverKind>]) -> String {
    let inner: Vec<String> =
        stages.iter().map(|s| format!("[{}]", s.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))).collect();
    format!("[{}]", inner.join(", "))
}

/// Compares a decision with an expectation.
pub fn compare(expect: &Expectation, d: &Decision) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut diff = |field: &str, expected: String, actual: String| {
        if expected != actual {
            out.push(Mismatch { field: field.to_owned(), expected, actual });
        }
    };
    if let Some(e) = expect.decision {
        diff("decision", e.to_string(), d.outcome.to_string());
    }
    if let Some(e) = &expect.target {
        diff("target", e.clone(), show_opt(d.target.as_ref().map(|t| &t.key)));
    }
    if let Some(e) = expect.level {
        diff("level", e.to_string(), show_opt(d.level));
    }
    if let Some(e) = &expect.rule {
        diff("rule", e.clone(), show_opt(d.rule.as_ref()));
    }
    if let Some(e) = &expect.auto_approved_by {
        let actual = match &d.approval {
            Some(ApprovalRequirement::Auto { rule, .. }) => rule.clone(),
            Some(ApprovalRequirement::Plan(_)) => "approval by people".to_owned(),
            None => "none".to_owned(),
        };
        diff("auto_approved_by", e.clone(), actual);
    }
    if let Some(e) = &expect.approvals {
        let actual = match &d.approval {
            Some(ApprovalRequirement::Plan(p)) => {
                show_stages(&p.stages.iter().map(|s| s.approvers.iter().map(|a| a.kind).collect()).collect::<Vec<_>>())
            }
            Some(ApprovalRequirement::Auto { rule, .. }) => format!("auto-approved by {rule}"),
            None => "none".to_owned(),
        };
        diff("approvals", show_stages(e), actual);
    }
    if let Some(e) = expect.duration {
        let actual = match &d.duration {
            Some(o) if o.is_permanent() => "permanent".to_owned(),
            Some(o) => show_opt(o.duration),
            None => "none".to_owned(),
        };
        diff("duration", e.to_string(), actual);
    }
    if let Some(e) = expect.ends_at {
        diff("ends_at", e.to_string(), show_opt(d.duration.as_ref().and_then(|o| o.ends_at)));
    }
    if let Some(e) = expect.shortened_to_cap {
        diff("shortened_to_cap", e.to_string(), d.duration.as_ref().is_some_and(|o| o.shortened_to_cap).to_string());
    }
    if let Some(e) = expect.execute_at {
        diff("execute_at", e.to_string(), d.execute_at.to_string());
    }
    if let Some(e) = &expect.failing_checks {
        let mut want: Vec<&str> = e.iter().map(String::as_str).collect();
        let mut got = d.failing_codes();
        want.sort_unstable();
        got.sort_unstable();
        diff("failing_checks", format!("[{}]", want.join(", ")), format!("[{}]", got.join(", ")));
    }
    if let Some(e) = expect.ai_suggestion {
        diff("ai_suggestion", e.to_string(), show_opt(d.ai_suggestion.as_ref().map(|a| a.status)));
    }
    out
}

/// Runs one case.
pub fn run_case(case: &TestCase, policy: &Policy) -> CaseResult {
    let decision = evaluate(&case.facts, policy);
    let mismatches = compare(&case.expect, &decision);
    CaseResult { name: case.name.clone(), passed: mismatches.is_empty(), mismatches, decision }
}

/// Runs every `[[test]]` case of the policy.
pub fn run_tests(policy: &Policy) -> TestReport {
    TestReport {
        policy_version: policy.version().to_owned(),
        cases: policy.tests().iter().map(|c| run_case(c, policy)).collect(),
    }
}
