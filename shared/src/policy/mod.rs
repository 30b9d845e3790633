//! Policy as code: one TOML file, reviewed like code, decides everything about an access request
//! that is not an identity fact.
//!
//! - [`Policy::parse`] reads and validates a file (errors carry file:line:column and what was
//!   expected); [`load_file`] is the only function here that does IO.
//! - [`evaluate`] turns [`RequestFacts`] into a [`Decision`]: allow or deny, every check with a
//!   stable code ([`codes`]), the resolved target, the approval plan or auto-approval, the
//!   effective duration and the change window. It is pure: `facts.now` is the only clock.
//! - [`approval_state`] says whether recorded approvals satisfy a plan; self-approvals never
//!   count.
//! - [`explain`] and [`run_tests`] back `grantline policy explain` and `grantline policy test`.
//!
//! Evaluation order: the first `[[rule]]`, `[[duration]]` and `[[window]]` whose `when` matches
//! applies; with no matching rule the request is denied. Hard rules (guests, disabled or leaving
//! accounts, role-assignable / dynamic / mail-enabled security / distribution / on-premises
//! synced groups, self-approval) are code and cannot be configured away.

mod approval;
mod decision;
mod error;
mod eval;
pub mod examples;
mod explain;
mod facts;
mod load;
mod model;
mod parse;
mod testing;
mod units;
mod window;

pub use approval::{
    ApprovalPlan, ApprovalProgress, ApprovalState, Approver, IgnoreReason, IgnoredApproval, PlannedApprover,
    PlannedStage, RecordedApproval, Verdict, approval_state,
};
pub use decision::{
    AiSuggestionOutcome, ApprovalRequirement, Check, CheckStatus, Decision, DurationOutcome, ItemMatch, Outcome,
    ResolvedTarget, SuggestionStatus, TargetSelection, WindowOutcome, codes,
};
pub use error::{Diagnostic, PolicyError};
pub use eval::{evaluate, ticket_target};
pub use explain::{Explanation, explain};
pub use facts::{GroupFacts, MailboxFacts, Principal, RequestFacts, UserFacts};
pub use load::load_file;
pub use model::{
    AccessLevel, ApproverKind, ApproverSpec, CatalogEntry, DurationRule, MailboxType, Match, OnTimeout, OverMax,
    Owners, Policy, Quorum, QuorumError, Rule, RuleOutcome, SCHEMA_VERSION, StageSpec, Target, TargetKind, TargetRef,
    TestCase, UnexplainedMembers,
};
pub use testing::{CaseResult, Expectation, ExpectedDuration, Mismatch, TestReport, compare, run_case, run_tests};
pub use units::{DurationError, KeywordError, PolicyDuration};
pub use window::{ChangeWindow, SlotError, WindowSlot, WindowStatus};

impl Policy {
    /// Parses and validates a policy from the exact bytes of a file. `source` names the file in
    /// error messages. On error the caller keeps its previous policy.
    pub fn parse(source: &str, bytes: &[u8]) -> Result<Policy, PolicyError> {
        parse::parse_policy(source, bytes)
    }
}

/// `grantline policy check`: parse and validate, returning the policy (whose
/// [`Policy::summary`] is the success line) or every problem found.
pub fn check(source: &str, bytes: &[u8]) -> Result<Policy, PolicyError> {
    Policy::parse(source, bytes)
}
