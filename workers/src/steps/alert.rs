//! alert: the queue enqueues one per dead letter. It marks the request failed and sends
//! the ticket to manual intervention (or compensates first when something was changed),
//! and raises the page (the paging connectors are configured separately; without one the
//! alert is an error-level log line with the dead letter's id).

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::Alert;
use grantline_shared::request::fields;

use crate::record::{GrantReceipt, StepCommit, load};
use crate::services::Services;

pub async fn run(job: Alert, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let letters = svc.queue.dead_letters(&job.queue, None, 1000).await.map_err(super::redis_unavailable)?;
    let letter = letters.into_iter().find(|d| d.id == job.dead_letter_id);
    let last_error = letter.as_ref().and_then(|d| d.errors.last().cloned());
    tracing::error!(
        queue = %job.queue, job_id = %job.job_id, dead_letter = %job.dead_letter_id,
        code = last_error.as_ref().map(|e| e.code.as_str()).unwrap_or(""),
        "ALERT: a job was dead-lettered; on-call action needed (grantline dlq list {})", job.queue
    );
    let Some(request_id) =
        letter.as_ref().and_then(|d| d.payload.get("request_id")).and_then(|v| v.as_str()).map(str::to_owned)
    else {
        return Ok(Handoff::done());
    };
    let rec = load(&svc.queue, &request_id).await?;
    if rec.state.is_terminal()
        || matches!(
            rec.state,
            grantline_shared::request::RequestState::Failed | grantline_shared::request::RequestState::Compensating
        )
    {
        return Ok(Handoff::done());
    }
    let changed = rec.field::<GrantReceipt>(fields::GRANT).is_some_and(|g| !g.pre_existing);
    let reason = match &last_error {
        Some(e) => format!(
            "{} failed for good after {} attempt(s): {} ({})",
            job.queue,
            letter.as_ref().map(|d| d.attempts).unwrap_or(0),
            e.message,
            e.code
        ),
        None => format!("{} failed for good", job.queue),
    };
    StepCommit::new(&rec, "alert", svc.now_ms())
        .event(AuditEvent::DeadLettered {
            queue: job.queue.clone(),
            job_id: job.job_id.clone(),
            dead_letter_id: job.dead_letter_id.clone(),
        })
        .set(fields::REASON, reason)
        .outcome(Outcome::Failed { changed_something: changed })
        .into_handoff()
}
