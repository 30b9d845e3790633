//! The one decision model. Every door (the operator API, Teams, Slack, ServiceNow approval
//! records, the signed-link page) brings a [`Ballot`]: an approver identity the door proved
//! (a directory object id, the UPN when known, the groups it was verified to belong to), a
//! verdict, a comment and the stage it was asked about. [`judge`] decides what it amounts to
//! under the request's approval plan, and [`decide`] records it in one guarded commit: counted
//! (the approvals, the state and the jobs `flow::next` names, the approval clock moved on) or
//! refused (an audit event with the claimed identity and why).
//!
//! Deny by default: without a readable plan nobody may approve. The person the access is for
//! never counts, nor whoever the plan excludes; a stale card (asking about a stage that is no
//! longer pending) cannot act.

use grantline_queue::{Queue, Write, WriteCmd};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::policy::{
    ApprovalPlan, ApprovalProgress, Approver, IgnoreReason, RecordedApproval, Verdict, approval_state,
};
use grantline_shared::record::{ApprovalClock, ApprovalEntry, RecordError, RequestRecord};
use grantline_shared::request::{RequestState, keys};

use crate::{Applied, Commit, StoreError};

/// One approver's answer, as a door brings it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    /// Who answered, as the door proved it: `id` is the directory object id.
    pub approver: Approver,
    /// How to show them (UPN, else the id).
    pub display: String,
    pub approve: bool,
    pub comment: String,
    /// `operator`, `teams`, `slack`, `servicenow`, `web`.
    pub door: String,
    /// An operator recording on the approver's behalf.
    pub recorded_by: Option<String>,
    /// The stage the card, message, record or link asked about (`None`: the current one).
    pub stage: Option<usize>,
    /// The door's reference of the answer (a ServiceNow approval record's sys_id).
    pub reference: Option<String>,
}

/// Why an answer did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAwaiting(RequestState),
    /// The record lacks what a decision needs (a requester).
    Incomplete(String),
    /// No readable approval plan: nobody may approve.
    NoPlan,
    SelfApproval,
    NotAnApprover,
    /// The directory knows no enabled account by the identity the door proved.
    UnknownApprover,
    /// The card or link asked about another stage than the pending one.
    WrongStage {
        asked: usize,
        pending: usize,
    },
}

impl Refusal {
    /// The stable code (also the HTTP error code of the operator API).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotAwaiting(_) => "request.not_awaiting_approval",
            Refusal::Incomplete(_) => "request.incomplete",
            Refusal::NoPlan => "approval.no_plan",
            Refusal::SelfApproval => "approval.self_approval",
            Refusal::NotAnApprover => "approval.not_an_approver",
            Refusal::WrongStage { .. } => "approval.wrong_stage",
            Refusal::UnknownApprover => "approval.unknown_approver",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NotAwaiting(s) => format!("the request is {s}, not awaiting approval"),
            Refusal::Incomplete(why) => format!("the request cannot be decided: {why}"),
            Refusal::NoPlan => "the request has no approval plan on record; nobody can approve it".to_owned(),
            Refusal::SelfApproval => {
                "the person the access is for (or whoever the policy excludes) can never approve it".to_owned()
            }
            Refusal::NotAnApprover => "this person is not an approver of the pending stage".to_owned(),
            Refusal::UnknownApprover => {
                "the directory has no enabled account for this approver; nothing was recorded".to_owned()
            }
            Refusal::WrongStage { asked, pending } => format!(
                "this asked about stage {} but stage {} is pending; the card is out of date",
                asked + 1,
                pending + 1
            ),
        }
    }
}

/// What a ballot amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Counted { outcome: Outcome, stage: usize, state: RequestState, jobs: Vec<String> },
    Refused(Refusal),
}

fn recorded(entries: &[ApprovalEntry]) -> Vec<RecordedApproval> {
    entries
        .iter()
        .map(|a| RecordedApproval {
            stage: a.stage.unwrap_or(0),
            approver: a.as_approver(),
            verdict: if a.approve { Verdict::Approve } else { Verdict::Reject },
            at: None,
        })
        .collect()
}

/// The stage pending under a plan with these answers, if any.
pub fn pending_stage(plan: &ApprovalPlan, requester_id: &str, past: &[ApprovalEntry]) -> Option<usize> {
    match approval_state(plan, &recorded(past), requester_id).progress {
        ApprovalProgress::Pending { stage } => Some(stage),
        _ => None,
    }
}

/// What a ballot amounts to for a request, without writing anything.
pub fn judge(rec: &RequestRecord, ballot: &Ballot) -> Result<(Outcome, usize), Refusal> {
    if rec.state != RequestState::AwaitingApproval {
        return Err(Refusal::NotAwaiting(rec.state));
    }
    let requester = rec
        .requester
        .as_ref()
        .filter(|r| !r.id.trim().is_empty())
        .ok_or_else(|| Refusal::Incomplete("no requester on record".into()))?;
    let plan = rec.decision.as_ref().and_then(|d| d.plan()).ok_or(Refusal::NoPlan)?;
    if plan.stages.is_empty() {
        return Err(Refusal::NoPlan);
    }
    let mut all = recorded(&rec.approvals);
    let pending = match approval_state(plan, &all, &requester.id).progress {
        ApprovalProgress::Pending { stage } => stage,
        _ => return Err(Refusal::NotAwaiting(rec.state)),
    };
    if let Some(asked) = ballot.stage
        && asked != pending
    {
        return Err(Refusal::WrongStage { asked, pending });
    }
    all.push(RecordedApproval {
        stage: pending,
        approver: ballot.approver.clone(),
        verdict: if ballot.approve { Verdict::Approve } else { Verdict::Reject },
        at: None,
    });
    let after = approval_state(plan, &all, &requester.id);
    let mine = all.len() - 1;
    if let Some(ignored) = after.ignored.iter().find(|i| i.index == mine) {
        return Err(match ignored.reason {
            IgnoreReason::SelfApproval => Refusal::SelfApproval,
            _ => Refusal::NotAnApprover,
        });
    }
    let outcome = match after.progress {
        ApprovalProgress::Approved => Outcome::Approved,
        ApprovalProgress::Rejected { .. } => Outcome::Rejected,
        ApprovalProgress::Pending { stage } if stage != pending => Outcome::StageApproved { next: stage },
        // the same stage still pending: more approvals are needed (an all-of or N-of-M quorum)
        ApprovalProgress::Pending { .. } => Outcome::ApprovalCounted,
    };
    Ok((outcome, pending))
}

/// The write that files a request under its next approval due time (or takes it out).
pub fn due_write(rec_id: &str, due: Option<u64>) -> Write {
    match due {
        Some(at) => Write::new(WriteCmd::ZAdd, keys::APPROVALS_DUE, [at.to_string(), rec_id.to_owned()]),
        None => Write::new(WriteCmd::ZRem, keys::APPROVALS_DUE, [rec_id.to_owned()]),
    }
}

/// Records, on the request's timeline, an answer refused before it could be judged (the
/// directory did not know the person). `None`: there is no such request.
pub async fn refuse(
    queue: &Queue,
    request_id: &str,
    claimed: &str,
    door: &str,
    refusal: &Refusal,
    actor: &str,
    now_ms: u64,
) -> Result<Option<()>, StoreError> {
    for _ in 0..ATTEMPTS {
        let rec = match crate::load(queue, request_id).await {
            Ok(r) => r,
            Err(StoreError::Record(RecordError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(e),
        };
        tracing::info!(request_id, door, reason = refusal.code(), "decision refused");
        let c = Commit::new(&rec, actor, now_ms)
            .event(AuditEvent::ApprovalRefused {
                approver: claimed.to_owned(),
                approver_id: None,
                door: door.to_owned(),
                reason: refusal.code().to_owned(),
            })
            .outcome(Outcome::DecisionRefused);
        match c.apply(queue).await? {
            Applied::Done { .. } => return Ok(Some(())),
            Applied::Conflict => continue,
        }
    }
    Err(StoreError::Encode(format!("request {request_id} kept changing while a refusal was recorded; retry")))
}

/// How many times a decision is re-read and judged again after a concurrent change.
const ATTEMPTS: usize = 6;

/// Judges and records a ballot. `actor` is the audit actor (`approver:<id>`, `operator:<id>`).
/// `None`: there is no such request.
pub async fn decide(
    queue: &Queue,
    request_id: &str,
    ballot: &Ballot,
    actor: &str,
    now_ms: u64,
) -> Result<Option<Decided>, StoreError> {
    for _ in 0..ATTEMPTS {
        let rec = match crate::load(queue, request_id).await {
            Ok(r) => r,
            Err(StoreError::Record(RecordError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(e),
        };
        // a granted request awaiting approval is deciding an extension of its end
        let extension = crate::lifecycle::pending_extension(queue, &rec).await?;
        let commit = Commit::new(&rec, actor, now_ms);
        let (commit, counted) = match judge(&rec, ballot) {
            Err(refusal) => {
                tracing::info!(request_id, approver = %ballot.approver.id, door = %ballot.door, reason = refusal.code(), "decision refused");
                let c = commit
                    .event(AuditEvent::ApprovalRefused {
                        approver: ballot.display.clone(),
                        approver_id: Some(ballot.approver.id.clone()).filter(|i| !i.is_empty()),
                        door: ballot.door.clone(),
                        reason: refusal.code().to_owned(),
                    })
                    .outcome(Outcome::DecisionRefused);
                (c, Err(refusal))
            }
            Ok((outcome, stage)) => {
                let mut approvals = rec.approvals.clone();
                approvals.push(ApprovalEntry {
                    approver: ballot.display.clone(),
                    approver_id: Some(ballot.approver.id.clone()),
                    approve: ballot.approve,
                    comment: ballot.comment.clone(),
                    at_ms: now_ms,
                    stage: Some(stage),
                    via: Some(ballot.door.clone()),
                    recorded_by: ballot.recorded_by.clone(),
                    approver_upn: ballot.approver.upn.clone(),
                    member_of: ballot.approver.member_of.clone(),
                    reference: ballot.reference.clone(),
                });
                let plan = rec.decision.as_ref().and_then(|d| d.plan());
                let c = commit
                    .event(AuditEvent::ApprovalRecorded {
                        approver: ballot.display.clone(),
                        approve: ballot.approve,
                        comment: ballot.comment.clone(),
                    })
                    .set(|u| u.approvals(&approvals));
                let how = if ballot.approve { "approved" } else { "rejected" };
                let (c, outcome) = match &extension {
                    Some(ext) => (
                        crate::lifecycle::settle_extension(c, ext, outcome, how),
                        crate::lifecycle::extension_outcome(ext, outcome),
                    ),
                    None => (c.outcome(outcome), outcome),
                };
                let mut c = c;
                c = match (outcome, plan) {
                    (Outcome::StageApproved { next }, Some(plan)) => {
                        let clock = ApprovalClock::start(next, now_ms);
                        let due = clock.next_due_ms(plan);
                        c.set(|u| u.approval_clock(&clock)).write(due_write(&rec.id, due))
                    }
                    (Outcome::Approved | Outcome::Rejected, _) => c.write(due_write(&rec.id, None)),
                    _ => c,
                };
                (c, Ok((outcome, stage)))
            }
        };
        match commit.apply(queue).await? {
            Applied::Done { jobs, state } => {
                return Ok(Some(match counted {
                    Ok((outcome, stage)) => Decided::Counted { outcome, stage, state, jobs },
                    Err(r) => Decided::Refused(r),
                }));
            }
            Applied::Conflict => continue,
        }
    }
    Err(StoreError::Encode(format!("request {request_id} kept changing while a decision was recorded; retry")))
}
