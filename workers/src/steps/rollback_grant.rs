//! rollback-grant: compensation for a request that failed after changing something. It lets
//! go of what this request added (the same rules as removal: never an access that existed
//! before, never one another request still holds), verified by reading it back, then the
//! ticket goes to manual intervention with the failure and what was undone. A rollback that
//! fails for good is dead-lettered like any step and pages the critical route (the access is
//! still in place); the request stays `compensating`.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::RollbackGrant;
use grantline_shared::receipt::RemovalReceipt;
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
        // effect ledger: the receipt of a removal already made, kept until the commit that
        // records it, so a retry (this commit lost a race with another writer of the record,
        // such as the alert's audit of its page) records what was done, not "already gone"
        let ledger = format!("ledger:{}:rollback-grant:{key}", rec.id);
        let release = match super::ledger_read::<RemovalReceipt>(&svc, &ledger).await? {
            Some(r) => r,
            None => {
                let r = let_go(&svc, &grant, &rec.id, "compensation").await?;
                super::ledger_keep(&svc, &ledger, &r, Some(super::LEDGER_TTL_SECS)).await?;
                r
            }
        };
        // the ticket's manual-intervention note says what failed and what was undone
        let undone = compensation_summary(&grant, &release);
        let reason = match rec.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => format!("{r}; {undone}"),
            None => undone,
        };
        handoff(
            commit(&svc, &rec, JobKind::RollbackGrant)
                .event(super::removal_event(&grant, &release))
                .set(|u| u.removal(&release).reason(&reason))
                .write(forget_write(&key, &rec.id))
                .write(Write::new(WriteCmd::Del, ledger.clone(), Vec::<String>::new()))
                .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
                .outcome(Outcome::RolledBack),
        )
    })
    .await
}

/// What compensation did with the access, in a sentence for the ticket.
fn compensation_summary(
    grant: &grantline_shared::receipt::Receipt,
    release: &grantline_shared::receipt::RemovalReceipt,
) -> String {
    let what = grant.describe();
    if release.removed {
        format!("compensated: {what} removed again and verified gone")
    } else if release.kept_pre_existing {
        format!("compensated: {what} kept (it existed before this request)")
    } else if !release.kept_for.is_empty() {
        format!("compensated: {what} kept, still needed by request(s) {}", release.kept_for.join(", "))
    } else {
        format!("compensated: {what} was already gone")
    }
}
