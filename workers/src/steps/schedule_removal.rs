//! schedule-removal: a time-bound grant gets a durable delayed remove-access job at its end,
//! and an entry in the expiring-grants index that the scheduler's safety net sweeps.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::clock::{ms, timestamp};
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::ScheduleRemoval;
use grantline_shared::request::keys;

use crate::record::{commit, handoff, load, store_error};
use crate::services::Services;

pub async fn run(job: ScheduleRemoval, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::ScheduleRemoval, &job.request_id).await? else {
        return Ok(Handoff::done());
    };
    let decision = rec.decision().map_err(|e| store_error(e.into()))?;
    let grant = rec.grant().map_err(|e| store_error(e.into()))?;
    let end = decision
        .duration
        .as_ref()
        .and_then(|d| d.end_for_start(timestamp(grant.granted_ms())))
        .ok_or_else(|| JobError::permanent("request.permanent_grant", "the grant has no end"))?;
    let end_ms = ms(end);
    handoff(
        commit(&svc, &rec, JobKind::ScheduleRemoval)
            .event(AuditEvent::RemovalScheduled { remove_at_ms: end_ms })
            .set(|u| u.end_ms(&end_ms))
            .write(Write::new(WriteCmd::ZAdd, keys::EXPIRING, [end_ms.to_string(), rec.id.clone()]))
            .outcome(Outcome::RemovalScheduled { at_ms: end_ms }),
    )
}
