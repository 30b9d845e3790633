//! approval-deadline: a point of the pending stage's time to decide came. The request's
//! approval clock says which: a reminder (those who have not answered are reminded), or the
//! deadline (the stage goes to its fallback when the policy says `on_timeout = "escalate"` and
//! it has not been escalated yet, with a fresh time to decide; otherwise the request expires,
//! the ticket is told and the approval records are closed). Every outcome files the request
//! under its next due time in `approvals:due`, or takes it out.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::ApprovalDeadline;
use grantline_shared::policy::{ApprovalRequirement, OnTimeout};
use grantline_shared::record::ApprovalClock;
use grantline_store::decision::{due_write, pending_stage};

use crate::record::{commit, handoff, load};
use crate::services::Services;

pub async fn run(job: ApprovalDeadline, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::ApprovalDeadline, &job.request_id).await? else {
        // decided meanwhile: nothing is due any more
        return Ok(Handoff::done().write(due_write(&job.request_id, None)));
    };
    let now = svc.now_ms();
    let c = commit(&svc, &rec, JobKind::ApprovalDeadline);
    let Some(mut decision) = rec.decision.clone() else {
        return handoff(c.write(due_write(&rec.id, None)));
    };
    let requester = rec.requester.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    let Some(ApprovalRequirement::Plan(plan)) = decision.approval.as_mut() else {
        return handoff(c.write(due_write(&rec.id, None)));
    };
    let Some(pending) = pending_stage(plan, &requester, &rec.approvals) else {
        return handoff(c.write(due_write(&rec.id, None)));
    };
    // the clock of the pending stage (a decision moves it on; an old record may lack it)
    let clock = match rec.approval_clock.clone() {
        Some(c) if c.stage == pending => c,
        _ => ApprovalClock::start(pending, rec.asked_ms.unwrap_or(now)),
    };
    let Some(deadline) = clock.deadline_ms(plan) else {
        return handoff(c.write(due_write(&rec.id, None)));
    };
    let stage = &plan.stages[pending];
    let waiting: Vec<String> = rec
        .notices
        .iter()
        .filter(|n| n.stage == Some(pending))
        .filter(|n| !rec.approvals.iter().any(|a| a.stage == Some(pending) && a.approver_id.as_deref() == Some(&n.to)))
        .map(|n| n.to.clone())
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
    if deadline <= now {
        let within = format!("stage {} ({}) was not decided within {}", pending + 1, stage.name, stage.time_to_decide);
        if stage.on_timeout == OnTimeout::Escalate && !stage.escalated && stage.fallback.is_some() {
            let to = stage.fallback.as_ref().map(|f| f.to_string()).unwrap_or_default();
            plan.escalate(pending);
            let clock = ApprovalClock::start(pending, now);
            let due = clock.next_due_ms(plan);
            tracing::info!(request_id = %rec.id, stage = pending, %to, "approval escalated to the fallback");
            return handoff(
                c.event(AuditEvent::ApprovalEscalated { stage: pending, to, reason: within.clone() })
                    .set(|u| u.decision(&decision).approval_clock(&clock).reason(&format!("{within}; escalated")))
                    .write(due_write(&rec.id, due))
                    .outcome(Outcome::Escalated { stage: pending }),
            );
        }
        // an extension not decided in time: the original end stands
        if let Some(ext) =
            grantline_store::lifecycle::pending_extension(&svc.queue, &rec).await.map_err(crate::record::store_error)?
        {
            tracing::info!(request_id = %rec.id, stage = pending, "extension not decided in time");
            let reason = format!("{within}; the extension expired");
            return handoff(grantline_store::lifecycle::settle_extension(
                c.event(AuditEvent::ApprovalExpired { stage: pending, reason: within }).set(|u| u.reason(&reason)),
                &ext,
                Outcome::ApprovalExpired,
                "expired",
            ));
        }
        tracing::info!(request_id = %rec.id, stage = pending, "approval expired");
        let reason = format!("{within}; the request expired and nothing was granted");
        return handoff(
            c.event(AuditEvent::ApprovalExpired { stage: pending, reason: within })
                .set(|u| u.reason(&reason))
                .write(due_write(&rec.id, None))
                .outcome(Outcome::ApprovalExpired),
        );
    }
    let due: Vec<u8> = clock.pending_reminders(plan).into_iter().filter(|(_, at)| *at <= now).map(|(p, _)| p).collect();
    if let Some(percent) = due.iter().max().copied() {
        let mut clock = clock;
        clock.reminded.extend(due);
        let next = clock.next_due_ms(plan);
        return handoff(
            c.event(AuditEvent::ApprovalReminded { stage: pending, percent, to: waiting })
                .set(|u| u.approval_clock(&clock))
                .write(due_write(&rec.id, next))
                .outcome(Outcome::Reminded { stage: pending }),
        );
    }
    // rung early (the clock moved since the scheduler looked): file it under its real due time
    Ok(Handoff::done().write(due_write(&rec.id, clock.next_due_ms(plan))))
}
