//! request-approval: apply the approval requirement. A policy rule may approve (recorded
//! with the rule as the reason); otherwise the request waits for its approvers: the first
//! stage's clock starts (the scheduler finds it in `approvals:due` for reminders and the
//! deadline), the ticket is told and `notify` asks the approvers. The human wait is not a job:
//! answers arrive at the doors (Teams, Slack, the signed-link page, the operator API) and from
//! ServiceNow's approval records.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RequestApproval;
use grantline_shared::policy::ApprovalRequirement;
use grantline_shared::record::ApprovalClock;
use grantline_store::decision::due_write;

use crate::record::{commit, handoff, load, store_error};
use crate::services::Services;

pub async fn run(job: RequestApproval, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::RequestApproval, &job.request_id).await? else {
        return Ok(Handoff::done());
    };
    let decision = rec.decision().map_err(|e| store_error(e.into()))?;
    let commit = commit(&svc, &rec, JobKind::RequestApproval);
    match &decision.approval {
        Some(ApprovalRequirement::Plan(plan)) => {
            let approvers: Vec<String> =
                plan.stages.iter().flat_map(|s| s.approvers.iter().flat_map(|a| a.ids.iter().cloned())).collect();
            let now = svc.now_ms();
            let clock = ApprovalClock::start(0, now);
            let due = clock.next_due_ms(plan);
            handoff(
                commit
                    .event(AuditEvent::ApprovalRequested { approvers, reason: format!("rule {}", plan.rule) })
                    .set(|u| u.asked_ms(&now).approval_clock(&clock))
                    .write(due_write(&rec.id, due))
                    .outcome(Outcome::ApprovalRequested),
            )
        }
        _ => {
            let reason = decision
                .rule
                .clone()
                .map(|r| format!("auto-approved by rule {r}"))
                .unwrap_or_else(|| "auto-approved".into());
            handoff(
                commit
                    .event(AuditEvent::ApprovalRecorded {
                        approver: "policy".into(),
                        approve: true,
                        comment: reason.clone(),
                    })
                    .set(|u| u.reason(&reason))
                    .outcome(Outcome::AutoApproved),
            )
        }
    }
}
