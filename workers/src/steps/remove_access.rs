//! remove-access: let go of this request's hold on the membership. It is removed (and the
//! removal verified) only when grantline added it and no other request still holds it; a
//! membership that existed before is never removed. The ticket is noted either way.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RemoveAccess;
use grantline_shared::request::{RequestState, fields, keys};

use super::already_done;
use crate::membership::{MembershipLock, forget_write, let_go, locked};
use crate::record::{GrantReceipt, StepCommit, load};
use crate::services::Services;

pub async fn run(job: RemoveAccess, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if rec.state != RequestState::Active {
        return Ok(already_done("remove-access", &rec.id, rec.state));
    }
    let grant: GrantReceipt =
        rec.field(fields::GRANT).ok_or_else(|| JobError::permanent("request.no_grant", "no grant"))?;
    let lock = MembershipLock::acquire(&svc.queue, &grant.group_id, &grant.user_id, &rec.id, "remove-access").await?;
    locked(lock, &svc.queue, async {
        let release = let_go(&svc, &grant, &rec.id).await?;
        let trigger =
            serde_json::to_value(job.trigger).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        StepCommit::new(&rec, "remove-access", svc.now_ms())
            .event(AuditEvent::RemovalExecuted {
                group_id: grant.group_id.clone(),
                user_id: grant.user_id.clone(),
                removed: release.removed,
                kept_pre_existing: release.kept_pre_existing,
                kept_for: release.kept_for.clone(),
                trigger,
            })
            .set_json("removal", &release)?
            .write(forget_write(&grant, &rec.id))
            .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
            .outcome(Outcome::Removed)
            .into_handoff()
    })
    .await
}
