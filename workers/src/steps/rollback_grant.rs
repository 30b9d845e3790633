//! rollback-grant: compensation for a request that failed after changing something. It lets
//! go of what this request added (the same rules as removal: never a pre-existing
//! membership, never one another request still holds), then the ticket goes to manual
//! intervention.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RollbackGrant;
use grantline_shared::request::{RequestState, fields, keys};

use super::already_done;
use crate::membership::{MembershipLock, forget_write, let_go, locked};
use crate::record::{GrantReceipt, StepCommit, load};
use crate::services::Services;

pub async fn run(job: RollbackGrant, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::Compensating {
        return Ok(already_done("rollback-grant", &rec.id, rec.state));
    }
    let Some(grant) = rec.field::<GrantReceipt>(fields::GRANT) else {
        return StepCommit::new(&rec, "rollback-grant", svc.now_ms()).outcome(Outcome::RolledBack).into_handoff();
    };
    let lock = MembershipLock::acquire(&svc.queue, &grant.group_id, &grant.user_id, &rec.id, "rollback-grant").await?;
    locked(lock, &svc.queue, async {
        let release = let_go(&svc, &grant, &rec.id).await?;
        StepCommit::new(&rec, "rollback-grant", svc.now_ms())
            .event(AuditEvent::Compensated {
                group_id: grant.group_id.clone(),
                user_id: grant.user_id.clone(),
                removed: release.removed,
            })
            .write(forget_write(&grant, &rec.id))
            .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
            .outcome(Outcome::RolledBack)
            .into_handoff()
    })
    .await
}
