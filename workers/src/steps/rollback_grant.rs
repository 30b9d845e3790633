//! rollback-grant: compensation for a request that failed after changing something. It
//! undoes only what this request added, then the ticket goes to manual intervention.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RollbackGrant;
use grantline_shared::request::{fields, RequestState};

use super::{already_done, job_error};
use crate::record::{load, GrantReceipt, StepCommit};
use crate::services::Services;

pub async fn run(job: RollbackGrant, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::Compensating {
        return Ok(already_done("rollback-grant", &rec.id, rec.state));
    }
    let mut commit = StepCommit::new(&rec, "rollback-grant", svc.now_ms());
    if let Some(grant) = rec.field::<GrantReceipt>(fields::GRANT).filter(|g| !g.pre_existing) {
        svc.graph.remove_member(&grant.group_id, &grant.user_id).await.map_err(job_error)?;
        commit = commit.event(AuditEvent::Compensated { group_id: grant.group_id, user_id: grant.user_id, removed: true });
    }
    commit.outcome(Outcome::RolledBack).into_handoff()
}
