//! update-ticket: write the outcome back to the ticket. Each note carries a marker
//! `[grantline <request> <update>]`; a note already there is not written again, so the
//! step is idempotent. A ticket is closed complete only after the grant was verified, and a
//! "granted" note is written only while the request is still granted. A ticket that refuses
//! the manual-intervention note for good gets the reason on the request's trail (`step_failed`)
//! instead of a second dead letter: that note follows one, about which on-call was paged.

use std::sync::Arc;

use apalis_core::task::attempt::Attempt;
use apalis_core::task::data::Data;
use grantline_connectors::servicenow::{RitmPatch, UpdateOptions, ritm_state};
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::clock::{ms, timestamp};
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::{TicketUpdate, UpdateTicket};
use grantline_shared::receipt::Receipt;
use grantline_shared::record::RequestRecord;
use grantline_shared::request::RequestState;

use super::job_error;
use crate::record::{commit, handoff, load};
use crate::services::Services;

fn ms_to_text(ms: u64) -> String {
    timestamp(ms).to_string()
}

fn note(rec: &RequestRecord, update: TicketUpdate) -> (String, RitmPatch) {
    let marker = format!("[grantline {} {}]", rec.id, update.as_str());
    let decision = rec.decision.as_ref();
    let version = decision.map(|d| d.policy_version.clone()).unwrap_or_default();
    let reason = rec.reason.clone().unwrap_or_default();
    let grant = rec.grant.as_ref();
    // the end is recorded by schedule-removal, which runs after the "granted" note: until
    // then it is derived the same way schedule-removal derives it
    let end = rec.end_ms.or_else(|| {
        let end = decision?.duration.as_ref()?.end_for_start(timestamp(grant?.granted_ms()))?;
        Some(ms(end))
    });
    let trace = format!("request {} · trace {}", rec.id, rec.trace_id);
    // who approved: the recorded human decisions, or the rule that approved it
    let approvals = &rec.approvals;
    let approvers: Vec<String> = approvals.iter().filter(|a| a.approve).map(|a| a.approver.clone()).collect();
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
            let plan = decision.and_then(|d| d.plan().cloned());
            let who =
                plan.map(|p| p.stages.iter().map(stage_summary).collect::<Vec<_>>().join(" then ")).unwrap_or_default();
            format!("Waiting for approval: {who}")
        }
        TicketUpdate::Escalated => {
            let plan = decision.and_then(|d| d.plan());
            let stage = rec.approval_clock.as_ref().map(|c| c.stage).unwrap_or(0);
            match plan.and_then(|p| p.stages.get(stage)) {
                Some(s) => format!(
                    "Approval escalated: stage {} ({}) was not decided within {} and now goes to {}",
                    stage + 1,
                    s.name,
                    s.time_to_decide,
                    s.fallback.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "its fallback".into())
                ),
                None => "Approval escalated to the stage's fallback".to_owned(),
            }
        }
        TicketUpdate::Rejected => {
            patch.state = Some(ritm_state::CLOSED_INCOMPLETE.into());
            patch.approval = Some("rejected".into());
            // a human rejection names who rejected and why; otherwise (expiry) the reason
            match approvals.iter().rev().find(|a| !a.approve) {
                Some(a) => {
                    let comment = Some(a.comment.as_str()).filter(|c| !c.trim().is_empty());
                    format!(
                        "Request rejected by {}{}",
                        a.approver,
                        comment.map(|c| format!(": {c}")).unwrap_or_default()
                    )
                }
                None => format!("Request rejected: {reason}"),
            }
        }
        TicketUpdate::Expired => {
            patch.state = Some(ritm_state::CLOSED_INCOMPLETE.into());
            patch.approval = Some("rejected".into());
            format!("Approval expired: {reason}")
        }
        TicketUpdate::Cancelled => format!("Not executed: {reason}"),
        TicketUpdate::Deferred => format!("Approved; execution deferred: {reason}"),
        TicketUpdate::Granted => {
            patch.state = Some(ritm_state::CLOSED_COMPLETE.into());
            patch.approval = Some("approved".into());
            patch.stage = Some("complete".into());
            match grant {
                Some(g) => format!(
                    "Granted and verified: {} at {}{}. Workflow: grantline; policy {version}. Expiry: {}. Approval: {approved_by}.{} {} request-id {} client-request-id {}.",
                    g.describe(),
                    ms_to_text(g.granted_ms()),
                    if g.pre_existing() {
                        " (the access already existed; it will not be removed by this request)"
                    } else {
                        ""
                    },
                    end.map(ms_to_text)
                        .map(|e| format!("{e}{}", duration_note(decision)))
                        .unwrap_or_else(|| "none (permanent)".into()),
                    client_note(g),
                    match g {
                        Receipt::Group(_) => "Graph",
                        Receipt::Mailbox(_) => "Exchange",
                    },
                    g.evidence().request_id.clone().unwrap_or_default(),
                    g.evidence().client_request_id,
                ),
                None => "Granted.".to_owned(),
            }
        }
        TicketUpdate::Removed => {
            let kept_for = rec.removal.as_ref().map(|r| r.kept_for.clone()).unwrap_or_default();
            let why = match rec.removal.as_ref().map(|r| r.trigger.as_str()) {
                Some("offboarding") if !reason.is_empty() => {
                    format!("Access removed (the person left or was disabled; {reason})")
                }
                Some("offboarding") => "Access removed (the person left or was disabled)".to_owned(),
                Some("revoked") => "Access revoked by an operator".to_owned(),
                Some("drift") => {
                    "Access found removed outside grantline (removed out of band); request closed".to_owned()
                }
                _ => "Access period ended".to_owned(),
            };
            match grant {
                Some(g) if !kept_for.is_empty() => format!(
                    "{why}: {} stays for now: still needed by request(s) {}.",
                    g.describe(),
                    kept_for.join(", ")
                ),
                Some(g) if rec.removal.as_ref().is_some_and(|r| r.trigger == "drift") => {
                    format!("{why}: {} was no longer there when checked.", g.describe())
                }
                Some(g) if g.pre_existing() => {
                    format!("{why}: {} kept (it existed before this request).", g.describe())
                }
                Some(g) => format!("{why}: {} removed and verified.", g.describe()),
                None => format!("{why}."),
            }
        }
        TicketUpdate::ManualIntervention => {
            patch.state = Some(ritm_state::WORK_IN_PROGRESS.into());
            format!("Manual intervention needed: {reason}")
        }
        TicketUpdate::ExtensionRequested => {
            let who = decision
                .and_then(|d| d.plan())
                .map(|p| p.stages.iter().map(stage_summary).collect::<Vec<_>>().join(" then "))
                .unwrap_or_default();
            format!("{reason}. The access stays until its current end unless approved. Waiting for approval: {who}")
        }
        TicketUpdate::Extended => {
            let until = end.map(ms_to_text).unwrap_or_default();
            format!("Extension approved ({approved_by}): the access now ends {until}.")
        }
        TicketUpdate::ExtensionRefused => {
            let until = end.map(ms_to_text).unwrap_or_default();
            format!("Extension not approved ({reason}): the access still ends {until}.")
        }
    };
    (marker.clone(), RitmPatch { work_notes: Some(format!("{marker} {body} ({trace})")), ..patch })
}

/// One stage as the ticket shows it: who decides, and why a fallback stands in.
fn stage_summary(s: &grantline_shared::policy::PlannedStage) -> String {
    let people: Vec<String> = s
        .approvers
        .iter()
        .map(|a| match (&a.group_id, a.via_fallback) {
            (_, true) => s.fallback.as_ref().map(|f| format!("{f} (fallback)")).unwrap_or_else(|| "fallback".into()),
            (Some(g), false) => format!("any member of group {g}"),
            (None, false) => a.ids.join(", "),
        })
        .collect();
    let mut out = format!("{} ({}, {})", s.name, people.join(" / "), s.quorum);
    let notes: Vec<&str> =
        s.notes.iter().map(String::as_str).chain(s.approvers.iter().filter_map(|a| a.note.as_deref())).collect();
    if !notes.is_empty() {
        out.push_str(&format!(" [{}]", notes.join("; ")));
    }
    out
}

/// What the requester should know about how the access shows up in their client.
fn client_note(g: &Receipt) -> &'static str {
    match g {
        Receipt::Mailbox(m) if m.automapping == Some(false) => {
            " The mailbox is not automapped: add it in Outlook by hand. Clients can take up to an hour to show it."
        }
        Receipt::Mailbox(_) => " Clients can take up to an hour to show the change.",
        Receipt::Group(_) => "",
    }
}

/// Why the grant ends when it does, when the policy changed what was asked.
fn duration_note(decision: Option<&grantline_shared::policy::Decision>) -> &'static str {
    match decision.and_then(|d| d.duration.as_ref()) {
        Some(d) if d.shortened_to_cap => " (shortened to the policy's maximum)",
        Some(d) if d.ends_on_leave_date => " (the requester's leave date)",
        _ => "",
    }
}

pub async fn run(job: UpdateTicket, attempt: Attempt, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::UpdateTicket, &job.request_id).await? else { return Ok(Handoff::done()) };
    let update = job.update.as_str();
    if rec.noted.iter().any(|n| n == update) {
        // written and committed before: this is a repeated job
        return Ok(Handoff::done());
    }
    if job.update == TicketUpdate::Granted && rec.state != RequestState::Granted {
        // a "granted" note that did not get through before the request moved on (a redriven
        // dead letter after compensation removed the access) would tell the ticket a lie
        tracing::info!(request_id = %rec.id, state = %rec.state, "the grant's note is out of date; not written");
        return Ok(Handoff::done());
    }
    let (marker, patch) = note(&rec, job.update);
    // effect ledger: on the first attempt nothing can be on the ticket yet, so the note is
    // written without reading the journal; a later attempt (after a crash between the write
    // and the commit) reads it and skips a note already there
    let ledger = format!("ledger:{}:update-ticket:{update}", rec.id);
    let mut conn = svc.queue.connection();
    let first: bool = redis::cmd("SET")
        .arg(svc.queue.namespace().key(&ledger))
        .arg(svc.now_ms())
        .arg("NX")
        .arg("EX")
        .arg(super::LEDGER_TTL_SECS)
        .query_async::<Option<String>>(&mut conn)
        .await
        .map_err(super::redis_unavailable)?
        .is_some();
    // a refusal an earlier attempt met, kept for the commit it lost to a concurrent one: the
    // ticket is not asked again
    let refused_before: Option<Refusal> = if first { None } else { super::ledger_read(&svc, &ledger).await? };
    // the note that asks a person to step in comes after a dead letter, and on-call was paged
    // about it; a ticket that refuses this note too (an ACL) gets the reason on the trail
    // instead of a second dead letter and page
    let refused = |code: String, message: String| {
        let reason = rec.reason.clone().unwrap_or_default();
        handoff(
            commit(&svc, &rec, JobKind::UpdateTicket)
                .event(AuditEvent::StepFailed {
                    kind: JobKind::UpdateTicket.as_str().to_owned(),
                    attempt: u32::try_from(attempt.current()).unwrap_or(u32::MAX).saturating_add(1),
                    code,
                    message: format!(
                        "the ticket refused the manual-intervention note ({message}); manual intervention needed: {reason}"
                    ),
                })
                .write(grantline_queue::Write::new(grantline_queue::WriteCmd::Del, ledger.clone(), Vec::<String>::new()))
                .outcome(Outcome::TicketUpdated { update: job.update, time_bound: false }),
        )
    };
    if let Some(Refusal { code, message }) = refused_before {
        return refused(code, message);
    }
    let written = !first
        && svc
            .servicenow
            .list_work_notes(&rec.ticket.sys_id)
            .await
            .map_err(job_error)?
            .iter()
            .any(|n| n.value.contains(&marker));
    if !written {
        let sent =
            svc.servicenow.update_ritm(&rec.ticket.sys_id, &patch, UpdateOptions { no_response_body: true }).await;
        match sent.map_err(job_error) {
            Ok(_) => {}
            Err(JobError::Permanent { code, message }) if job.update == TicketUpdate::ManualIntervention => {
                let kept = Refusal { code, message };
                super::ledger_keep(&svc, &ledger, &kept, Some(super::LEDGER_TTL_SECS)).await?;
                return refused(kept.code, kept.message);
            }
            Err(e) => return Err(e),
        }
    }
    let time_bound = rec.end_ms.is_some()
        || rec.decision.as_ref().and_then(|d| d.duration.as_ref()).is_some_and(|d| !d.is_permanent());
    let mut noted = rec.noted.clone();
    noted.push(update.to_owned());
    handoff(
        commit(&svc, &rec, JobKind::UpdateTicket)
            .event(AuditEvent::TicketUpdated { update: update.into(), state: patch.state.clone().unwrap_or_default() })
            .set(|u| u.noted(&noted))
            .write(grantline_queue::Write::new(grantline_queue::WriteCmd::Del, ledger, Vec::<String>::new()))
            .outcome(Outcome::TicketUpdated { update: job.update, time_bound }),
    )
}

/// The ticket's refusal of a manual-intervention note, kept in the step's effect-ledger key
/// until the commit that records it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Refusal {
    code: String,
    message: String,
}
