//! offboard: a person left. Every request of theirs in the person index is handled once,
//! through the same lifecycle the operator's commands use (`store::lifecycle`):
//!
//! - a grant (`active`, `completed`, or one whose extension awaits approval) is removed now:
//!   a `remove-access` job with the `offboarding` trigger, ownership-aware (a membership that
//!   existed before, or that another request holds, stays), its ticket noted;
//! - a request not yet executed is cancelled, its ticket told and its approvers' cards closed;
//! - a request being granted right now (`granting`, `granted`, `ticket_updated`) is left for the
//!   job's retry, which finds it granted and removes it.
//!
//! A directory source (disabled, deleted, leave date passed) is read again first: someone
//! enabled again, or whose leave date moved, is not offboarded. Each handled request is
//! remembered (`offboard:{user}:handled`), so a second event about the same person, or the
//! sweep seeing what the leaver event already said, handles nothing twice. The offboarding is
//! recorded on the directory log (`audit:directory`); each request's own timeline carries its
//! `removal_requested` or `request_cancelled`.

use std::collections::HashSet;
use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError};
use grantline_shared::clock::{ms, timestamp};
use grantline_shared::jobs::{Offboard, OffboardSource, RemovalTrigger};
use grantline_shared::record::RequestRecord;
use grantline_shared::request::RequestState;
use grantline_store::directory::{self, DirectoryEvent};
use grantline_store::lifecycle::{self, LifecycleError, codes};
use redis::AsyncCommands;

use super::{job_error, redis_unavailable};
use crate::record::store_error;
use crate::services::Services;

/// The audit actor of what offboarding changes.
pub const ACTOR: &str = "grantline:offboard";

/// The most requests one person's offboarding reads.
const MAX_REQUESTS: usize = 10_000;

/// The reason kept on each request and its ticket.
pub fn reason(job: &Offboard) -> String {
    let what = match job.source {
        OffboardSource::Leaver => "leaver".to_owned(),
        OffboardSource::AccountDisabled => "leaver: the account is disabled in the directory".to_owned(),
        OffboardSource::LeaveDatePassed => match job.effective_ms {
            Some(at) => format!("leaver: the leave date ({}) passed", timestamp(at)),
            None => "leaver: the leave date passed".to_owned(),
        },
        OffboardSource::Deleted => "leaver: the user was deleted from the directory".to_owned(),
    };
    let extra = job.reason.trim();
    if extra.is_empty() { what } else { format!("{what}: {extra}") }
}

/// What the directory says of the person now: still leaving, or not any more.
async fn still_leaving(svc: &Services, job: &Offboard) -> Result<bool, JobError> {
    let user = svc.graph.get_user(&job.user_id).await.map_err(job_error)?.value;
    let Some(user) = user else {
        return Ok(true); // deleted
    };
    let disabled = user.account_enabled == Some(false);
    let left = user.employee_leave_date_time.is_some_and(|t| ms(t) <= svc.now_ms());
    Ok(disabled || left)
}

/// What to do with one request.
enum Action {
    Remove,
    Cancel,
    /// Being granted now: the retry removes it.
    Later,
    /// Nothing to do (failed: compensation removes what it added; or already over).
    Skip,
}

fn action(rec: &RequestRecord) -> Action {
    use RequestState as S;
    match rec.state {
        S::Active | S::Completed => Action::Remove,
        S::AwaitingApproval if rec.grant.is_some() => Action::Remove,
        S::Received | S::Validating | S::AwaitingApproval | S::Approved | S::Deferred => Action::Cancel,
        S::Granting | S::Granted | S::TicketUpdated => Action::Later,
        _ => Action::Skip,
    }
}

pub async fn run(job: Offboard, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    // requests recorded before the person index existed are added to it first (once)
    grantline_store::person::ensure_backfilled(&svc.queue, svc.now_ms()).await.map_err(store_error)?;
    if job.source.from_directory() && !still_leaving(&svc, &job).await? {
        tracing::info!(user_id = %job.user_id, source = job.source.as_str(), "the directory no longer shows this person leaving; nothing done");
        return Ok(Handoff::done());
    }
    let why = reason(&job);
    let records =
        grantline_store::person::requests(&svc.queue, &job.user_id, MAX_REQUESTS).await.map_err(store_error)?;
    let handled_key = svc.queue.namespace().key(&directory::handled_key(&job.user_id));
    let mut conn = svc.queue.connection();
    let handled: HashSet<String> = conn.smembers(&handled_key).await.map_err(redis_unavailable)?;
    let (mut removed, mut cancelled, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    let mut busy = None;
    for rec in records.iter().filter(|r| !handled.contains(&r.id)) {
        let now = svc.now_ms();
        let result = match action(rec) {
            Action::Remove => {
                lifecycle::remove_now(&svc.queue, &rec.id, ACTOR, RemovalTrigger::Offboarding, &why, now).await
            }
            Action::Cancel => lifecycle::cancel(&svc.queue, &rec.id, ACTOR, &why, now).await,
            Action::Later => {
                pending.push(rec.id.clone());
                continue;
            }
            Action::Skip => continue,
        };
        match result {
            Ok(changed) => {
                let _: i64 = conn.sadd(&handled_key, &rec.id).await.map_err(redis_unavailable)?;
                match changed.state {
                    RequestState::Cancelled => cancelled.push(rec.id.clone()),
                    _ => removed.push(rec.id.clone()),
                }
            }
            Err(LifecycleError::NotFound) => {}
            // it moved on since it was read: executed (remove it next time), or finished
            Err(LifecycleError::Refused { code, .. })
                if [codes::ALREADY_EXECUTING, codes::SETTLING, codes::NOT_GRANTED, codes::BUSY].contains(&code) =>
            {
                pending.push(rec.id.clone())
            }
            Err(LifecycleError::Refused { code, message }) => {
                tracing::info!(request_id = %rec.id, code, %message, "offboarding left a request alone");
            }
            Err(LifecycleError::Store(e)) => {
                busy = Some(store_error(e));
                break;
            }
        }
    }
    if !removed.is_empty() || !cancelled.is_empty() || !pending.is_empty() || handled.is_empty() {
        let event = DirectoryEvent::Offboarded {
            user_id: job.user_id.clone(),
            upn: job.upn.clone(),
            source: job.source.as_str().to_owned(),
            reason: why.clone(),
            removed: removed.clone(),
            cancelled: cancelled.clone(),
            pending: pending.clone(),
        };
        directory::record(&svc.queue, ACTOR, svc.now_ms(), event).await.map_err(store_error)?;
        directory::count(&svc.queue, "offboard_removals", removed.len() as i64).await.map_err(store_error)?;
        directory::count(&svc.queue, "offboard_cancels", cancelled.len() as i64).await.map_err(store_error)?;
    }
    tracing::info!(user_id = %job.user_id, removed = removed.len(), cancelled = cancelled.len(), pending = pending.len(), "offboarded");
    if let Some(e) = busy {
        return Err(e);
    }
    if !pending.is_empty() {
        // waiting is not failing: no attempt is spent
        return Err(JobError::wait(
            "offboard.pending",
            format!(
                "{} request(s) of this person are being granted right now; they are removed on the retry",
                pending.len()
            ),
            std::time::Duration::from_secs(1),
        ));
    }
    Ok(Handoff::done())
}

// about a person (or the whole directory), not one request: the span names that instead
impl crate::runtime::JobSpan for Offboard {
    fn job_span(&self) -> tracing::Span {
        tracing::info_span!(
            "offboard",
            otel.kind = "consumer",
            user_id = %self.user_id,
            source = self.source.as_str(),
            attempt = tracing::field::Empty,
            job_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: OffboardSource, reason: &str) -> Offboard {
        Offboard { user_id: "u".into(), upn: None, source, reason: reason.into(), effective_ms: None }
    }

    #[test]
    fn every_reason_says_leaver() {
        assert_eq!(reason(&job(OffboardSource::Leaver, "")), "leaver");
        assert_eq!(reason(&job(OffboardSource::Leaver, " Left the company ")), "leaver: Left the company");
        for s in [OffboardSource::AccountDisabled, OffboardSource::LeaveDatePassed, OffboardSource::Deleted] {
            assert!(reason(&job(s, "")).starts_with("leaver: "), "{s:?}");
        }
    }
}
