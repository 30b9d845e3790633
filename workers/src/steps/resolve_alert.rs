//! resolve-alert: a dead letter was redriven or discarded (`grantline dlq retry|discard`), or
//! a later job did its work (a failed removal the sweep tried again; the letter is dropped), so
//! the page raised for it is resolved: PagerDuty `resolve` with the same dedup key, an
//! `alert.resolve` event on the webhook, a "resolved" message where a channel was told. The
//! letter is marked closed first, so an alert that runs later pages nobody. A destination that
//! cannot be reached fails the job transiently and the queue retries it; the ones already
//! resolved are not sent again. When the letter belongs to a request, `page_resolved` goes on
//! its audit trail, once.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::jobs::{LetterClosed, ResolveAlert};

use super::alert::audit_once;
use crate::paging;
use crate::services::Services;

pub async fn run(job: ResolveAlert, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    if job.how == LetterClosed::Superseded {
        // a later job did the dead job's work: the letter is no open problem any more
        svc.queue.discard(&job.queue, &job.dead_letter_id).await.map_err(super::redis_unavailable)?;
    }
    let Some(pager) = svc.pager.clone() else {
        tracing::info!(queue = %job.queue, dead_letter = %job.dead_letter_id, "no paging destination is configured; nothing to resolve");
        return Ok(Handoff::done());
    };
    let report = pager.resolve(&svc.queue, svc.now(), &job.queue, &job.dead_letter_id, job.how).await?;
    if let Some(id) = &report.request_id
        && !report.resolved.is_empty()
    {
        let event = AuditEvent::PageResolved {
            queue: job.queue.clone(),
            dead_letter_id: job.dead_letter_id.clone(),
            dedup_key: report.dedup_key.clone(),
            how: job.how.as_str().to_owned(),
            destinations: report.resolved.clone(),
        };
        audit_once(&svc, id, JobKind::ResolveAlert, &job.queue, &job.dead_letter_id, paging::AUDITED_RESOLVED, event)
            .await?;
    }
    Ok(Handoff::done())
}
