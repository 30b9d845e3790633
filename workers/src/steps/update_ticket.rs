//! update-ticket: write the outcome back to the ticket. Each note carries a marker
//! `[grantline <request> <update>]`; a note already there is not written again, so the
//! step is idempotent. A ticket is closed complete only after the grant was verified.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_connectors::servicenow::{RitmPatch, UpdateOptions, ritm_state};
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::{TicketUpdate, UpdateTicket};
use grantline_shared::policy::Decision;
use grantline_shared::request::fields;

use super::job_error;
use crate::record::{GrantReceipt, RequestRecord, StepCommit, load};
use crate::services::Services;

fn ms_to_text(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(0)).map(|t| t.to_string()).unwrap_or_default()
}

fn note(rec: &RequestRecord, update: TicketUpdate) -> (String, RitmPatch) {
    let marker = format!("[grantline {} {}]", rec.id, update.as_str());
    let decision: Option<Decision> = rec.field(fields::DECISION);
    let version = decision.as_ref().map(|d| d.policy_version.clone()).unwrap_or_default();
    let reason = rec.raw.get(fields::REASON).cloned().unwrap_or_default();
    let grant: Option<GrantReceipt> = rec.field(fields::GRANT);
    // the end is recorded by schedule-removal, which runs after the "granted" note: until
    // then it is derived the same way schedule-removal derives it
    let end = rec.raw.get(fields::END_MS).and_then(|v| v.parse::<u64>().ok()).or_else(|| {
        let start = jiff::Timestamp::from_millisecond(i64::try_from(grant.as_ref()?.granted_ms).ok()?).ok()?;
        let end = decision.as_ref()?.duration.as_ref()?.end_for_start(start)?;
        u64::try_from(end.as_millisecond()).ok()
    });
    let trace = format!("request {} · trace {}", rec.id, rec.trace_id);
    // who approved: the recorded human decisions, or the rule that approved it
    let approvals: Vec<serde_json::Value> = rec.field(fields::APPROVALS).unwrap_or_default();
    let approvers: Vec<String> = approvals
        .iter()
        .filter(|a| a.get("approve").and_then(|v| v.as_bool()) == Some(true))
        .filter_map(|a| a.get("approver").and_then(|v| v.as_str()).map(str::to_owned))
        .collect();
    let approved_by =
        if approvers.is_empty() { reason.clone() } else { format!("approved by {}", approvers.join(", ")) };
    let mut patch = RitmPatch::default();
    let body = match update {
        TicketUpdate::Denied => {
            patch.state = Some(ritm_state::CLOSED_INCOMPLETE.into());
            format!("Access denied by policy ({version}): {reason}")
        }
        TicketUpdate::AwaitingApproval => {
            patch.approval = Some("requested".into());
            patch.stage = Some("waiting_for_approval".into());
            let plan = decision.as_ref().and_then(|d| d.plan().cloned());
            let who = plan
                .map(|p| {
                    p.stages
                        .iter()
                        .map(|s| {
                            format!(
                                "{} ({})",
                                s.name,
                                s.approvers.iter().flat_map(|a| a.ids.clone()).collect::<Vec<_>>().join(", ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" then ")
                })
                .unwrap_or_default();
            format!("Waiting for approval: {who}")
        }
        TicketUpdate::Rejected => {
            patch.state = Some(ritm_state::CLOSED_INCOMPLETE.into());
            patch.approval = Some("rejected".into());
            // a human rejection names who rejected and why; otherwise (expiry) the reason
            match approvals.iter().rev().find(|a| a.get("approve").and_then(|v| v.as_bool()) == Some(false)) {
                Some(a) => {
                    let who = a.get("approver").and_then(|v| v.as_str()).unwrap_or("an approver");
                    let comment = a.get("comment").and_then(|v| v.as_str()).filter(|c| !c.trim().is_empty());
                    format!("Request rejected by {who}{}", comment.map(|c| format!(": {c}")).unwrap_or_default())
                }
                None => format!("Request rejected: {reason}"),
            }
        }
        TicketUpdate::Deferred => format!("Approved; execution deferred: {reason}"),
        TicketUpdate::Granted => {
            patch.state = Some(ritm_state::CLOSED_COMPLETE.into());
            patch.approval = Some("approved".into());
            patch.stage = Some("complete".into());
            match &grant {
                Some(g) => format!(
                    "Granted and verified: {} added to {} ({}) at {}{}. Workflow: grantline; policy {version}. Expiry: {}. Approval: {approved_by}. Graph request-id {} client-request-id {}.",
                    g.user_upn,
                    g.group_name,
                    g.group_id,
                    ms_to_text(g.granted_ms),
                    if g.pre_existing {
                        " (the membership already existed; it will not be removed by this request)"
                    } else {
                        ""
                    },
                    end.map(ms_to_text)
                        .map(|e| format!("{e}{}", duration_note(decision.as_ref())))
                        .unwrap_or_else(|| "none (permanent)".into()),
                    g.graph_request_id.clone().unwrap_or_default(),
                    g.client_request_id,
                ),
                None => "Granted.".to_owned(),
            }
        }
        TicketUpdate::Removed => match &grant {
            Some(g) if removal_kept_for(rec).is_some() => format!(
                "Access period ended: {} keeps membership of {} for now: still needed by request(s) {}.",
                g.user_upn,
                g.group_name,
                removal_kept_for(rec).unwrap_or_default().join(", ")
            ),
            Some(g) if g.pre_existing => format!(
                "Access period ended: {} kept membership of {} (it existed before this request).",
                g.user_upn, g.group_name
            ),
            Some(g) => format!("Access period ended: {} removed from {} and verified.", g.user_upn, g.group_name),
            None => "Access period ended.".to_owned(),
        },
        TicketUpdate::ManualIntervention => {
            patch.state = Some(ritm_state::WORK_IN_PROGRESS.into());
            format!("Manual intervention needed: {reason}")
        }
    };
    (marker.clone(), RitmPatch { work_notes: Some(format!("{marker} {body} ({trace})")), ..patch })
}

/// The other requests that kept a membership alive at this request's removal.
fn removal_kept_for(rec: &RequestRecord) -> Option<Vec<String>> {
    let removal: serde_json::Value = rec.field("removal")?;
    let kept: Vec<String> = serde_json::from_value(removal.get("kept_for")?.clone()).ok()?;
    (!kept.is_empty()).then_some(kept)
}

/// Why the grant ends when it does, when the policy changed what was asked.
fn duration_note(decision: Option<&Decision>) -> &'static str {
    match decision.and_then(|d| d.duration.as_ref()) {
        Some(d) if d.shortened_to_cap => " (shortened to the policy's maximum)",
        Some(d) if d.ends_on_leave_date => " (the requester's leave date)",
        _ => "",
    }
}

pub async fn run(job: UpdateTicket, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    let (marker, patch) = note(&rec, job.update);
    let existing = svc.servicenow.list_work_notes(&rec.ticket.sys_id).await.map_err(job_error)?;
    if !existing.iter().any(|n| n.value.contains(&marker)) {
        svc.servicenow
            .update_ritm(&rec.ticket.sys_id, &patch, UpdateOptions { no_response_body: true })
            .await
            .map_err(job_error)?;
    }
    let time_bound = rec.raw.contains_key(fields::END_MS)
        || rec.field::<Decision>(fields::DECISION).and_then(|d| d.duration).is_some_and(|d| !d.is_permanent());
    StepCommit::new(&rec, "update-ticket", svc.now_ms())
        .event(AuditEvent::TicketUpdated {
            update: job.update.as_str().into(),
            state: patch.state.clone().unwrap_or_default(),
        })
        .outcome(Outcome::TicketUpdated { update: job.update, time_bound })
        .into_handoff()
}
