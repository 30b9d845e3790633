//! remove-access: let go of this request's hold on the access it was granted. The access is
//! removed upstream (and the removal verified) only when grantline added it and no other
//! request still holds it; an access that existed before is never removed. The ticket is noted
//! either way.
//!
//! A removal that failed for good is filed under the failed removals (by the alert of its dead
//! letter) and the scheduler's sweep enqueues it again once per period. The removal that
//! finally succeeds takes the request out of that file in its own commit and resolves the
//! pages of those dead letters (`resolve-alert`, superseded); so does one that finds the
//! request already removed another way, or its end moved later by an extension.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::{FailedRemoval, LetterClosed, RemovalTrigger, RemoveAccess};
use grantline_shared::request::keys;
use redis::AsyncCommands;

use crate::membership::{MembershipLock, forget_write, let_go, locked};
use crate::record::{commit, handoff, load, store_error};
use crate::services::Services;

pub async fn run(job: RemoveAccess, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let failed = failed_removal(&svc, &job.request_id).await?;
    let Some(rec) = load(&svc, JobKind::RemoveAccess, &job.request_id).await? else {
        // not in a state a removal runs from; a failed removal of a request that ended
        // another way (removed out of band, revoked meanwhile) has nothing left to do
        if let Some(f) = failed {
            let ended = grantline_store::find(&svc.queue, &job.request_id)
                .await
                .map_err(store_error)?
                .is_some_and(|r| r.state.is_terminal());
            if ended {
                return settle(&svc, Handoff::done(), &job.request_id, &f);
            }
        }
        return Ok(Handoff::done());
    };
    // an extension moved the end past this expiry removal: the removal at the new end stands
    // (a few seconds of tolerance for clocks; the scheduler's sweep is the safety net)
    if job.trigger == RemovalTrigger::Expiry && rec.end_ms.is_some_and(|end| end > svc.now_ms() + 5_000) {
        tracing::info!(request_id = %rec.id, "the grant's end moved later; this removal is not due");
        return match failed.filter(|f| f.trigger == RemovalTrigger::Expiry) {
            Some(f) => settle(&svc, Handoff::done(), &rec.id, &f),
            None => Ok(Handoff::done()),
        };
    }
    let grant = rec.grant().map_err(|e| store_error(e.into()))?.clone();
    let key = grant.access_key();
    let lock = MembershipLock::acquire(&svc.queue, &key, &rec.id, JobKind::RemoveAccess.as_str()).await?;
    locked(lock, &svc.queue, async {
        let release = let_go(&svc, &grant, &rec.id, job.trigger.as_str()).await?;
        let h = handoff(
            commit(&svc, &rec, JobKind::RemoveAccess)
                .event(super::removal_event(&grant, &release))
                .set(|u| u.removal(&release))
                .write(forget_write(&key, &rec.id))
                .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
                .outcome(Outcome::Removed),
        )?;
        match &failed {
            Some(f) => settle(&svc, h, &rec.id, f),
            None => Ok(h),
        }
    })
    .await
}

/// The failed removal on file for a request, if any.
async fn failed_removal(svc: &Services, request_id: &str) -> Result<Option<FailedRemoval>, JobError> {
    let mut conn = svc.queue.connection();
    let raw: Option<String> = conn
        .hget(svc.queue.namespace().key(keys::FAILED_REMOVALS), request_id)
        .await
        .map_err(super::redis_unavailable)?;
    Ok(raw.map(|r| {
        serde_json::from_str(&r).unwrap_or_else(|e| {
            tracing::warn!(request_id, error = %e, "a failed removal on file cannot be read; it is settled all the same");
            FailedRemoval { trigger: RemovalTrigger::Expiry, letters: Vec::new(), since_ms: 0 }
        })
    }))
}

/// Takes the request out of the failed removals with this hand-off, and resolves the page of
/// every dead letter on file (their `resolve-alert` jobs, whose ids derive from the letters).
fn settle(svc: &Services, h: Handoff, request_id: &str, failed: &FailedRemoval) -> Result<Handoff, JobError> {
    let mut h = h.write(Write::new(WriteCmd::HDel, keys::FAILED_REMOVALS, [request_id.to_owned()]));
    for letter in &failed.letters {
        let job = crate::paging::resolve_job(
            &svc.queue.config().namespace,
            JobKind::RemoveAccess.as_str(),
            letter,
            LetterClosed::Superseded,
            "remove-access",
        )
        .map_err(|e| JobError::permanent("resolve.encode", e.to_string()))?;
        h = h.then(job);
    }
    tracing::info!(request_id, letters = failed.letters.len(), "a removal that had failed for good is settled");
    Ok(h)
}
