//! alert: the queue enqueues one per dead letter. It looks the letter up by id, marks the
//! request failed and sends the ticket to manual intervention (or compensates first when
//! something was changed), then pages on-call through the configured routes
//! (`crate::paging`), and records the page on the request's audit trail. A removal's letter
//! does not fail the request: the access is still there, so the request keeps its state and
//! is filed under the failed removals, which the scheduler's sweep tries again. A rollback's
//! letter leaves the request compensating (a redrive runs it again) and asks the ticket for
//! manual intervention with what may still be in place. A side channel's letter (a card or a
//! message not sent or not brought up to date, approval records not read) does not decide the
//! request either: it keeps its state, a grant stands, and the letter goes on its trail.
//!
//! The request's transition is committed on its own before paging, so compensation never
//! waits for an on-call tool. Paging that fails transiently fails the job, and the queue
//! retries it: the transition is then found done, and only the destinations that do not have
//! the page yet are sent to. Without a pager the alert is an error-level log line.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Guard, Handoff, JobError, Write};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::Alert;
use grantline_shared::record::RequestRecord;
use grantline_shared::request::RequestState;
use grantline_store::{Applied, Commit};

use crate::paging::{self, DeadLetterPage};
use crate::record::store_error;
use crate::services::Services;

/// How often a commit is tried again on fresh state when a concurrent change got there first.
const COMMIT_TRIES: usize = 5;

pub async fn run(job: Alert, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let letter = svc.queue.dead_letter(&job.queue, &job.dead_letter_id).await.map_err(super::redis_unavailable)?;
    let Some(letter) = letter else {
        // redriven or discarded before its alert ran
        tracing::warn!(queue = %job.queue, dead_letter = %job.dead_letter_id, "the dead letter is gone; nothing to alert");
        return Ok(Handoff::done());
    };
    let last_error = letter.errors.last().cloned();
    let request_id = letter.payload.get("request_id").and_then(|v| v.as_str()).map(str::to_owned);
    let mut rec = match &request_id {
        Some(id) => grantline_store::find(&svc.queue, id).await.map_err(store_error)?,
        None => None,
    };
    if let Some(r) = &rec {
        rec = Some(if job.queue == JobKind::RemoveAccess.as_str() {
            hold_failed_removal(&svc, &job, &letter, r.clone()).await?
        } else if job.queue == JobKind::RollbackGrant.as_str() {
            hold_failed_rollback(&svc, &job, &letter, r.clone()).await?
        } else if side_channel(&job.queue) {
            let event = AuditEvent::DeadLettered {
                queue: job.queue.clone(),
                job_id: job.job_id.clone(),
                dead_letter_id: job.dead_letter_id.clone(),
            };
            audit_once(&svc, &r.id, JobKind::Alert, &job.queue, &job.dead_letter_id, paging::AUDITED_DEAD, event)
                .await?;
            grantline_store::load(&svc.queue, &r.id).await.map_err(store_error)?
        } else {
            fail_request(&svc, &job, &letter, r.clone()).await?
        });
    }
    let page = DeadLetterPage {
        subject: paging::PageSubject::DeadLetter,
        queue: job.queue.clone(),
        dead_letter_id: job.dead_letter_id.clone(),
        job_id: job.job_id.clone(),
        attempts: letter.attempts,
        error_code: last_error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
        error_message: last_error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| letter.reason.clone()),
        request_id: request_id.clone(),
        ticket: rec.as_ref().map(|r| r.ticket.number.clone()),
        trace_id: rec.as_ref().map(|r| r.trace_id.clone()),
        dead_at_ms: letter.at,
    };
    let Some(pager) = svc.pager.clone() else {
        tracing::error!(
            queue = %job.queue, job_id = %job.job_id, dead_letter = %job.dead_letter_id, code = %page.error_code,
            "ALERT (no paging destination is configured): {}", page.summary()
        );
        return Ok(Handoff::done());
    };
    let report = pager.page(&svc.queue, svc.now(), &page).await?;
    if report.closed && report.sent.is_empty() {
        tracing::info!(queue = %job.queue, dead_letter = %job.dead_letter_id, "the dead letter was closed before it was paged about");
        return Ok(Handoff::done());
    }
    if let Some(id) = &request_id {
        let event = AuditEvent::Paged {
            queue: job.queue.clone(),
            dead_letter_id: job.dead_letter_id.clone(),
            dedup_key: report.dedup_key.clone(),
            severity: report.severity.clone(),
            destinations: report.sent.clone(),
            refused: report.refused.clone(),
        };
        audit_once(&svc, id, JobKind::Alert, &job.queue, &job.dead_letter_id, paging::AUDITED_PAGED, event).await?;
    }
    if report.sent.is_empty() && !report.refused.is_empty() && !report.closed {
        // nobody has the page: the alert itself is dead-lettered (on the alert queue, where
        // `grantline dlq list alert` shows it) rather than acknowledged as if someone knew
        return Err(JobError::permanent(
            "paging.refused",
            format!("every destination refused the page: {}", report.refused.join("; ")),
        ));
    }
    Ok(Handoff::done())
}

/// The steps that tell people and read their answers, beside the request's own chain: when one
/// fails for good the request is as sound as before (a decision can still be taken through
/// another door, the approval deadline still runs), so its letter is paged without failing the
/// request, and a redrive sends what was missed.
fn side_channel(queue: &str) -> bool {
    [JobKind::Notify, JobKind::SyncApprovals].iter().any(|k| k.as_str() == queue)
}

/// What failed, in a sentence: "{queue} failed for good after N attempt(s): message (code)".
fn failure(job: &Alert, letter: &grantline_queue::DeadLetter) -> String {
    match letter.errors.last() {
        Some(e) => {
            format!("{} failed for good after {} attempt(s): {} ({})", job.queue, letter.attempts, e.message, e.code)
        }
        None => format!("{} failed for good", job.queue),
    }
}

/// The commit that puts the letter on the request's trail with `reason`.
fn dead_lettered<'a>(svc: &Services, job: &Alert, rec: &'a RequestRecord, reason: &str) -> Commit<'a> {
    Commit::step(rec, JobKind::Alert, svc.now_ms())
        .event(AuditEvent::DeadLettered {
            queue: job.queue.clone(),
            job_id: job.job_id.clone(),
            dead_letter_id: job.dead_letter_id.clone(),
        })
        .set(|u| u.reason(&reason.to_owned()))
}

/// Applies a commit on the request and reads it back: whether it applied (a concurrent change
/// got there first otherwise), and the record as it is now.
async fn settle(svc: &Services, commit: Commit<'_>, id: &str) -> Result<(bool, RequestRecord), JobError> {
    let applied = commit.apply(&svc.queue).await.map_err(store_error)?;
    let rec = grantline_store::load(&svc.queue, id).await.map_err(store_error)?;
    Ok((matches!(applied, Applied::Done { .. }), rec))
}

/// Moves the request to failed (or compensating) with the reason, once; returns the record
/// as it is afterwards.
async fn fail_request(
    svc: &Services,
    job: &Alert,
    letter: &grantline_queue::DeadLetter,
    mut rec: RequestRecord,
) -> Result<RequestRecord, JobError> {
    for _ in 0..COMMIT_TRIES {
        if rec.state.is_terminal() || matches!(rec.state, RequestState::Failed | RequestState::Compensating) {
            return Ok(rec);
        }
        let changed = rec.grant.as_ref().is_some_and(|g| !g.pre_existing());
        let commit = dead_lettered(svc, job, &rec, &failure(job, letter))
            .outcome(Outcome::Failed { changed_something: changed });
        let (done, fresh) = settle(svc, commit, &rec.id).await?;
        rec = fresh;
        if done {
            return Ok(rec);
        }
    }
    Err(JobError::transient("request.busy", format!("request {} kept changing while it was failed", rec.id)))
}

/// The record field set once a failed rollback's dead letter is on the request's trail and
/// its manual-intervention note enqueued.
const COMPENSATION_FAILED: &str = "compensation_failed";

/// A rollback that failed for good leaves what the request changed possibly in place. The
/// request stays `compensating` (a redrive of the letter runs the rollback again once the
/// cause is fixed), the dead letter goes on its trail, and the ticket is asked for manual
/// intervention saying what failed and what may still be there. Once per letter.
async fn hold_failed_rollback(
    svc: &Services,
    job: &Alert,
    letter: &grantline_queue::DeadLetter,
    mut rec: RequestRecord,
) -> Result<RequestRecord, JobError> {
    let key = paging::record_key(&job.queue, &job.dead_letter_id);
    for _ in 0..COMMIT_TRIES {
        if rec.state != RequestState::Compensating {
            // rolled back (a redrive succeeded) or moved on meanwhile
            return Ok(rec);
        }
        let mut conn = svc.queue.connection();
        let done: bool = redis::AsyncCommands::hexists(&mut conn, svc.queue.namespace().key(&key), COMPENSATION_FAILED)
            .await
            .map_err(super::redis_unavailable)?;
        if done {
            return Ok(rec);
        }
        let failed = format!("compensation failed: {}", failure(job, letter));
        let still = match &rec.grant {
            Some(g) => format!(
                "{} may still be in place: remove it by hand, or redrive the rollback's dead letter {} once the cause is fixed",
                g.describe(),
                job.dead_letter_id
            ),
            None => format!("redrive the rollback's dead letter {} once the cause is fixed", job.dead_letter_id),
        };
        let reason = match rec.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => format!("{r}; {failed}; {still}"),
            None => format!("{failed}; {still}"),
        };
        let commit = dead_lettered(svc, job, &rec, &reason)
            .guard(Guard::FieldAbsent { key: key.clone(), field: COMPENSATION_FAILED.to_owned() })
            .write(Write::hset(key.clone(), [(COMPENSATION_FAILED, "1".to_owned())]))
            .outcome(Outcome::CompensationFailed);
        let (done, fresh) = settle(svc, commit, &rec.id).await?;
        rec = fresh;
        if done {
            return Ok(rec);
        }
    }
    Err(JobError::transient("request.busy", format!("request {} kept changing while its rollback failed", rec.id)))
}

/// A removal that failed for good is not a failed request: the access is still there and
/// must still go. The request keeps its state (active, or completed for a permanent grant),
/// the dead letter goes on its trail with the reason, and it is filed under
/// `keys::FAILED_REMOVALS` with the removal's trigger, where the scheduler's sweep finds it and
/// tries the removal again once per period. Returns the record as it is afterwards.
async fn hold_failed_removal(
    svc: &Services,
    job: &Alert,
    letter: &grantline_queue::DeadLetter,
    mut rec: RequestRecord,
) -> Result<RequestRecord, JobError> {
    use grantline_shared::jobs::{FailedRemoval, RemovalTrigger};
    use grantline_shared::request::keys;
    let trigger = letter
        .payload
        .get("trigger")
        .and_then(|t| serde_json::from_value::<RemovalTrigger>(t.clone()).ok())
        .unwrap_or(RemovalTrigger::Expiry);
    for _ in 0..COMMIT_TRIES {
        if !grantline_shared::flow::may_run(JobKind::RemoveAccess, rec.state) {
            // removed (or moved on) meanwhile: nothing is left to remove
            return Ok(rec);
        }
        let mut conn = svc.queue.connection();
        let held: Option<String> =
            redis::AsyncCommands::hget(&mut conn, svc.queue.namespace().key(keys::FAILED_REMOVALS), &rec.id)
                .await
                .map_err(super::redis_unavailable)?;
        let mut failed = held.and_then(|h| serde_json::from_str::<FailedRemoval>(&h).ok()).unwrap_or(FailedRemoval {
            trigger,
            letters: Vec::new(),
            since_ms: letter.at,
        });
        if failed.letters.contains(&job.dead_letter_id) {
            return Ok(rec);
        }
        failed.letters.push(job.dead_letter_id.clone());
        let reason = match letter.errors.last() {
            Some(_) => format!("{}; the access is still there and the removal is tried again", failure(job, letter)),
            None => format!("{}; the removal is tried again", failure(job, letter)),
        };
        let value = serde_json::to_string(&failed).map_err(|e| JobError::permanent("alert.encode", e.to_string()))?;
        let commit = dead_lettered(svc, job, &rec, &reason)
            .write(Write::hset(keys::FAILED_REMOVALS, [(rec.id.as_str(), value)]));
        let (done, fresh) = settle(svc, commit, &rec.id).await?;
        rec = fresh;
        if done {
            return Ok(rec);
        }
    }
    Err(JobError::transient("request.busy", format!("request {} kept changing while its removal was held", rec.id)))
}

/// Appends `event` to the request's trail once per letter: the commit is guarded by the
/// absence of `marker` in the letter's paging record and sets it.
pub(crate) async fn audit_once(
    svc: &Services,
    request_id: &str,
    kind: JobKind,
    letter_queue: &str,
    dead_letter_id: &str,
    marker: &str,
    event: AuditEvent,
) -> Result<(), JobError> {
    let key = paging::record_key(letter_queue, dead_letter_id);
    for _ in 0..COMMIT_TRIES {
        let Some(rec) = grantline_store::find(&svc.queue, request_id).await.map_err(store_error)? else {
            return Ok(());
        };
        let mut conn = svc.queue.connection();
        let done: bool = redis::AsyncCommands::hexists(&mut conn, svc.queue.namespace().key(&key), marker)
            .await
            .map_err(super::redis_unavailable)?;
        if done {
            return Ok(());
        }
        let applied = Commit::step(&rec, kind, svc.now_ms())
            .event(event.clone())
            .guard(Guard::FieldAbsent { key: key.clone(), field: marker.to_owned() })
            .write(Write::hset(key.clone(), [(marker, "1".to_owned())]))
            .apply(&svc.queue)
            .await
            .map_err(store_error)?;
        if let Applied::Done { .. } = applied {
            return Ok(());
        }
    }
    Err(JobError::transient("request.busy", format!("request {request_id} kept changing; the audit event waits")))
}
