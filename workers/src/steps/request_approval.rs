//! request-approval: apply the approval requirement. A policy rule may approve (recorded
//! with the rule as the reason); otherwise the approvers are asked and the step finishes:
//! the human wait is not a job. Decisions arrive at the HTTP edge.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RequestApproval;
use grantline_shared::policy::{ApprovalRequirement, Decision};
use grantline_shared::request::{RequestState, fields};

use super::already_done;
use crate::record::{StepCommit, load};
use crate::services::Services;

pub async fn run(job: RequestApproval, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::Validating {
        return Ok(already_done("request-approval", &rec.id, rec.state));
    }
    let decision: Decision = rec
        .field(fields::DECISION)
        .ok_or_else(|| JobError::permanent("request.no_decision", "validate stored no decision"))?;
    let commit = StepCommit::new(&rec, "request-approval", svc.now_ms());
    match &decision.approval {
        Some(ApprovalRequirement::Plan(plan)) => {
            let approvers: Vec<String> =
                plan.stages.iter().flat_map(|s| s.approvers.iter().flat_map(|a| a.ids.iter().cloned())).collect();
            commit
                .event(AuditEvent::ApprovalRequested { approvers, reason: format!("rule {}", plan.rule) })
                .outcome(Outcome::ApprovalRequested)
                .into_handoff()
        }
        _ => {
            let reason = decision
                .rule
                .clone()
                .map(|r| format!("auto-approved by rule {r}"))
                .unwrap_or_else(|| "auto-approved".into());
            commit
                .event(AuditEvent::ApprovalRecorded {
                    approver: "policy".into(),
                    approve: true,
                    comment: reason.clone(),
                })
                .set(fields::REASON, reason)
                .outcome(Outcome::AutoApproved)
                .into_handoff()
        }
    }
}
