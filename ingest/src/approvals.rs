//! One way in for every answer to an approval request. A door (the operator API, the Teams bot
//! endpoint, the Slack interactivity endpoint, the signed-link page) proves who answered in its
//! own way and hands over a [`Claim`]; here the directory turns the claim into an approver
//! identity (object id, UPN, the plan's groups they belong to) and `store::decision` judges and
//! records it. A claim the directory does not know is refused and audited like any other
//! refused answer.

use grantline_connectors::graph::{Claim, plan_groups};
use grantline_shared::flow::Outcome;
use grantline_shared::policy::Approver;
use grantline_shared::request::RequestState;
use grantline_store::decision::{self, Ballot, Decided, Refusal};

use crate::error::{ApiError, codes};
use crate::state::AppState;

/// An answer as a door brings it.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub claim: Claim<'a>,
    /// The UPN the door knows (used when no directory is configured and the claim is an id).
    pub upn: Option<&'a str>,
    pub approve: bool,
    pub comment: &'a str,
    /// `operator`, `teams`, `slack`, `web`.
    pub door: &'a str,
    /// The stage the card or link asked about.
    pub stage: Option<usize>,
    /// An operator recording on someone's behalf.
    pub recorded_by: Option<&'a str>,
    /// The audit actor: `approver:<door>` or `operator:<id>`.
    pub actor: String,
}

/// What came of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    Counted {
        outcome: Outcome,
        stage: usize,
        state: RequestState,
        jobs: Vec<String>,
        approver: Approver,
    },
    Refused(Refusal),
    /// There is no such request.
    NotFound,
}

/// The stable name of a counted outcome.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
        Outcome::StageApproved { .. } => "stage_approved",
        Outcome::Extended { .. } => "extended",
        Outcome::ExtensionRefused { .. } => "extension_refused",
        _ => "counted",
    }
}

/// The HTTP error of a refusal.
pub fn refusal_error(r: &Refusal) -> ApiError {
    match r {
        Refusal::SelfApproval => ApiError::forbidden(codes::APPROVAL_SELF_APPROVAL, r.message()),
        Refusal::NotAnApprover => ApiError::forbidden(codes::APPROVAL_NOT_AN_APPROVER, r.message()),
        Refusal::UnknownApprover => ApiError::forbidden(codes::APPROVAL_UNKNOWN_APPROVER, r.message()),
        Refusal::NoPlan => ApiError::conflict(codes::APPROVAL_NO_PLAN, r.message()),
        Refusal::WrongStage { .. } => ApiError::conflict(codes::APPROVAL_WRONG_STAGE, r.message()),
        Refusal::NotAwaiting(_) => ApiError::conflict(codes::REQUEST_NOT_AWAITING_APPROVAL, r.message()),
        Refusal::Incomplete(_) => ApiError::conflict(codes::REQUEST_INCOMPLETE, r.message()),
    }
}

fn directory_error(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        codes::APPROVAL_DIRECTORY_UNAVAILABLE,
        format!("the directory could not confirm who answered; nothing was recorded: {e}"),
    )
}

/// Proves the claim against the directory, then judges and records the answer.
pub async fn answer(state: &AppState, request_id: &str, a: Answer<'_>) -> Result<Answered, ApiError> {
    let rec = match grantline_store::find(&state.queue, request_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Answered::NotFound),
        Err(e) => return Err(e.into()),
    };
    if !rec.trace_id.is_empty() {
        tracing::Span::current().record("trace_id", rec.trace_id.as_str());
    }
    let groups = rec.decision.as_ref().and_then(|d| d.plan()).map(plan_groups).unwrap_or_default();
    let now = state.now_ms();
    let approver = match (&state.directory, a.claim) {
        (Some(graph), claim) => match graph.approver(claim, &groups).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                let refusal = Refusal::UnknownApprover;
                return match decision::refuse(&state.queue, request_id, claim.as_str(), a.door, &refusal, &a.actor, now)
                    .await?
                {
                    Some(()) => Ok(Answered::Refused(refusal)),
                    None => Ok(Answered::NotFound),
                };
            }
            Err(e) => return Err(directory_error(&e)),
        },
        // without a directory only an identity the configuration states can answer (the
        // operator's own): a name alone proves nothing
        (None, Claim::ObjectId(id)) => {
            Approver { id: id.to_owned(), upn: a.upn.map(str::to_owned), member_of: Vec::new() }
        }
        (None, Claim::Name(_)) => return Err(directory_error(&"no directory (graph) is configured")),
    };
    let ballot = Ballot {
        display: approver.upn.clone().unwrap_or_else(|| approver.id.clone()),
        approver: approver.clone(),
        approve: a.approve,
        comment: a.comment.to_owned(),
        door: a.door.to_owned(),
        recorded_by: a.recorded_by.map(str::to_owned),
        stage: a.stage,
        reference: None,
    };
    match decision::decide(&state.queue, request_id, &ballot, &a.actor, now).await? {
        None => Ok(Answered::NotFound),
        Some(Decided::Refused(r)) => Ok(Answered::Refused(r)),
        Some(Decided::Counted { outcome, stage, state, jobs }) => {
            Ok(Answered::Counted { outcome, stage, state, jobs, approver })
        }
    }
}
