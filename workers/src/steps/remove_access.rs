//! remove-access: remove only what grantline added (never a membership that existed
//! before), verify by reading back, and note the ticket.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RemoveAccess;
use grantline_shared::request::{fields, keys, RequestState};

use super::{already_done, job_error};
use crate::record::{load, GrantReceipt, StepCommit};
use crate::services::Services;

pub async fn run(job: RemoveAccess, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::Active {
        return Ok(already_done("remove-access", &rec.id, rec.state));
    }
    let grant: GrantReceipt = rec.field(fields::GRANT).ok_or_else(|| JobError::permanent("request.no_grant", "no grant"))?;
    let mut removed = false;
    if !grant.pre_existing {
        svc.graph.remove_member(&grant.group_id, &grant.user_id).await.map_err(job_error)?;
        if svc.graph.is_member(&grant.group_id, &grant.user_id).await.map_err(job_error)?.value {
            return Err(JobError::transient("removal.not_visible", "the membership is still visible; will verify again"));
        }
        removed = true;
    }
    let trigger = serde_json::to_value(job.trigger).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    StepCommit::new(&rec, "remove-access", svc.now_ms())
        .event(AuditEvent::RemovalExecuted {
            group_id: grant.group_id.clone(),
            user_id: grant.user_id.clone(),
            removed,
            kept_pre_existing: grant.pre_existing,
            trigger,
        })
        .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
        .outcome(Outcome::Removed)
        .into_handoff()
}
