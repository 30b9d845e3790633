//! rollback-grant: compensation for a request that failed after changing something. It lets
//! go of what this request added (the same rules as removal: never an access that existed
//! before, never one another request still holds), then the ticket goes to manual
//! intervention.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RollbackGrant;
use grantline_shared::request::keys;

use crate::membership::{MembershipLock, forget_write, let_go, locked};
use crate::record::{commit, handoff, load};
use crate::services::Services;

pub async fn run(job: RollbackGrant, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::RollbackGrant, &job.request_id).await? else {
        return Ok(Handoff::done());
    };
    let Some(grant) = rec.grant.clone() else {
        return handoff(commit(&svc, &rec, JobKind::RollbackGrant).outcome(Outcome::RolledBack));
    };
    let key = grant.access_key();
    let lock = MembershipLock::acquire(&svc.queue, &key, &rec.id, JobKind::RollbackGrant.as_str()).await?;
    locked(lock, &svc.queue, async {
        let release = let_go(&svc, &grant, &rec.id, "compensation").await?;
        handoff(
            commit(&svc, &rec, JobKind::RollbackGrant)
                .event(super::removal_event(&grant, &release))
                .set(|u| u.removal(&release))
                .write(forget_write(&key, &rec.id))
                .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
                .outcome(Outcome::RolledBack),
        )
    })
    .await
}
