//! alert: the queue enqueues one per dead letter. It marks the request failed and sends
//! the ticket to manual intervention (or compensates first when something was changed),
//! and raises the page (the paging connectors are configured separately; without one the
//! alert is an error-level log line with the dead letter's id).

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::Alert;
use grantline_shared::request::RequestState;

use crate::record::{commit, handoff, store_error};
use crate::services::Services;

pub async fn run(job: Alert, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let letter = svc.queue.dead_letter(&job.queue, &job.dead_letter_id).await.map_err(super::redis_unavailable)?;
    let Some(letter) = letter else {
        // discarded before its alert ran
        tracing::warn!(queue = %job.queue, dead_letter = %job.dead_letter_id, "the dead letter is gone; nothing to alert");
        return Ok(Handoff::done());
    };
    let last_error = letter.errors.last().cloned();
    tracing::error!(
        queue = %job.queue, job_id = %job.job_id, dead_letter = %job.dead_letter_id,
        code = last_error.as_ref().map(|e| e.code.as_str()).unwrap_or(""),
        "ALERT: a job was dead-lettered; on-call action needed (grantline dlq list {})", job.queue
    );
    let Some(request_id) = letter.payload.get("request_id").and_then(|v| v.as_str()).map(str::to_owned) else {
        return Ok(Handoff::done());
    };
    let Some(rec) = grantline_store::find(&svc.queue, &request_id).await.map_err(store_error)? else {
        return Ok(Handoff::done());
    };
    if rec.state.is_terminal() || matches!(rec.state, RequestState::Failed | RequestState::Compensating) {
        return Ok(Handoff::done());
    }
    let changed = rec.grant.as_ref().is_some_and(|g| !g.pre_existing());
    let reason = match &last_error {
        Some(e) => {
            format!("{} failed for good after {} attempt(s): {} ({})", job.queue, letter.attempts, e.message, e.code)
        }
        None => format!("{} failed for good", job.queue),
    };
    handoff(
        commit(&svc, &rec, JobKind::Alert)
            .event(AuditEvent::DeadLettered {
                queue: job.queue.clone(),
                job_id: job.job_id.clone(),
                dead_letter_id: job.dead_letter_id.clone(),
            })
            .set(|u| u.reason(&reason))
            .outcome(Outcome::Failed { changed_something: changed }),
    )
}
