//! schedule-removal: a time-bound grant gets a durable delayed remove-access job at its end,
//! and an entry in the expiring-grants index that the scheduler's safety net sweeps.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::ScheduleRemoval;
use grantline_shared::policy::Decision;
use grantline_shared::request::{RequestState, fields, keys};

use super::already_done;
use crate::record::{GrantReceipt, StepCommit, load};
use crate::services::Services;

pub async fn run(job: ScheduleRemoval, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::TicketUpdated {
        return Ok(already_done("schedule-removal", &rec.id, rec.state));
    }
    let decision: Decision =
        rec.field(fields::DECISION).ok_or_else(|| JobError::permanent("request.no_decision", "no decision"))?;
    let grant: GrantReceipt =
        rec.field(fields::GRANT).ok_or_else(|| JobError::permanent("request.no_grant", "no grant"))?;
    let start = jiff::Timestamp::from_millisecond(i64::try_from(grant.granted_ms).unwrap_or(0))
        .map_err(|e| JobError::permanent("request.bad_time", e.to_string()))?;
    let end = decision
        .duration
        .as_ref()
        .and_then(|d| d.end_for_start(start))
        .ok_or_else(|| JobError::permanent("request.permanent_grant", "the grant has no end"))?;
    let end_ms = u64::try_from(end.as_millisecond()).unwrap_or(0);
    StepCommit::new(&rec, "schedule-removal", svc.now_ms())
        .event(AuditEvent::RemovalScheduled { remove_at_ms: end_ms })
        .set(fields::END_MS, end_ms.to_string())
        .write(Write::new(WriteCmd::ZAdd, keys::EXPIRING, [end_ms.to_string(), rec.id.clone()]))
        .expiry_at(end_ms)
        .outcome(Outcome::RemovalScheduled)
        .into_handoff()
}
