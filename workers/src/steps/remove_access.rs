//! remove-access: let go of this request's hold on the access it was granted. The access is
//! removed upstream (and the removal verified) only when grantline added it and no other
//! request still holds it; an access that existed before is never removed. The ticket is noted
//! either way.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::{RemovalTrigger, RemoveAccess};
use grantline_shared::request::keys;

use crate::membership::{MembershipLock, forget_write, let_go, locked};
use crate::record::{commit, handoff, load, store_error};
use crate::services::Services;

pub async fn run(job: RemoveAccess, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::RemoveAccess, &job.request_id).await? else {
        return Ok(Handoff::done());
    };
    // an extension moved the end past this expiry removal: the removal at the new end stands
    // (a few seconds of tolerance for clocks; the scheduler's sweep is the safety net)
    if job.trigger == RemovalTrigger::Expiry && rec.end_ms.is_some_and(|end| end > svc.now_ms() + 5_000) {
        tracing::info!(request_id = %rec.id, "the grant's end moved later; this removal is not due");
        return Ok(Handoff::done());
    }
    let grant = rec.grant().map_err(|e| store_error(e.into()))?.clone();
    let key = grant.access_key();
    let lock = MembershipLock::acquire(&svc.queue, &key, &rec.id, JobKind::RemoveAccess.as_str()).await?;
    locked(lock, &svc.queue, async {
        let release = let_go(&svc, &grant, &rec.id, job.trigger.as_str()).await?;
        handoff(
            commit(&svc, &rec, JobKind::RemoveAccess)
                .event(super::removal_event(&grant, &release))
                .set(|u| u.removal(&release))
                .write(forget_write(&key, &rec.id))
                .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
                .outcome(Outcome::Removed),
        )
    })
    .await
}
