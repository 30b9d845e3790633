//! execute-grant: give the access the request was approved for, through the executor of its
//! target kind, and verify it by reading it back. Outside the change window it defers itself
//! to the window's opening. A ticket closed, cancelled or no longer active by then is never
//! executed: the request ends cancelled, and nothing upstream is changed.
//!
//! The algorithm is the same for every kind: under the access's lock, write an effect-ledger
//! marker, find out whether the access is there (the validate step's read, when fresh and this
//! is the first attempt; otherwise a read now when the executor's write cannot say so itself,
//! as a batched write cannot), write only when it is not there, read back after a write, and
//! record a receipt that says whether the access existed before grantline. An
//! access not yet visible after the write is a transient failure: the queue retries with
//! backoff (no handler sleeps to wait for replication).

use std::sync::Arc;
use std::time::Duration;

use apalis_core::task::data::Data;
use grantline_queue::{Guard, Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::ExecuteGrant;
use grantline_shared::request::RequestState;

use super::{job_error, redis_unavailable};
use crate::executor::Access;
use crate::membership::{MembershipLock, changed_key, hold_write, locked, other_holders};
use crate::record::{commit, handoff, load, store_error};
use crate::services::Services;

/// How old the validate step's read of the current state may be and still stand in for a
/// read at execution.
pub const EVIDENCE_MAX_AGE: Duration = Duration::from_secs(60);

pub async fn run(job: ExecuteGrant, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::ExecuteGrant, &job.request_id).await? else {
        return Ok(Handoff::done());
    };
    let decision = rec.decision().map_err(|e| store_error(e.into()))?;
    let now_ms = svc.now_ms();
    let access = Access::of(&rec)?;
    let key = access.key();
    let ledger = ledger_key(&rec.id, &key);
    // the ticket is the authority: one closed, cancelled or no longer active since validate
    // read it is never executed. Asked only before execution started (no ledger marker): a
    // retry after the write finishes what it began.
    if !ledger_exists(&svc, &ledger).await? {
        let ritm = svc.servicenow.get_ritm(&rec.ticket.sys_id).await.map_err(job_error)?;
        if let Some(reason) = ritm.closed_reason() {
            return handoff(
                commit(&svc, &rec, JobKind::ExecuteGrant)
                    .event(AuditEvent::CheckEvaluated {
                        code: "ticket.open".into(),
                        passed: false,
                        reason: reason.clone(),
                    })
                    .set(|u| u.reason(&format!("{reason} when the grant was due; nothing was granted")))
                    .guard(Guard::KeyAbsent { key: ledger })
                    .outcome(Outcome::Cancelled),
            );
        }
    }
    let window_ms = grantline_shared::clock::ms(decision.execute_at);
    if window_ms > now_ms && rec.state == RequestState::Approved {
        let reason = decision.deferral().unwrap_or("outside the change window").to_owned();
        return handoff(
            commit(&svc, &rec, JobKind::ExecuteGrant)
                .set(|u| u.reason(&reason))
                .outcome(Outcome::Deferred { until_ms: window_ms }),
        );
    }
    // one access, many requests: grant and removal of it are serialised
    let lock = MembershipLock::acquire(&svc.queue, &key, &rec.id, JobKind::ExecuteGrant.as_str()).await?;
    locked(lock, &svc.queue, async {
        // effect ledger: a marker written before the change, so a retry after a crash between
        // the change and its acknowledgement knows the access it finds may be its own
        // and, in the same round trip, whether grantline removed the access lately (the mark
        // is set under the lock now held, so it cannot change before the write)
        let mut conn = svc.queue.connection();
        let (ledger_set, changed): (Option<String>, bool) = redis::pipe()
            .cmd("SET")
            .arg(svc.queue.namespace().key(&ledger))
            .arg(now_ms)
            .arg("NX")
            .cmd("EXISTS")
            .arg(svc.queue.namespace().key(&changed_key(&key)))
            .query_async(&mut conn)
            .await
            .map_err(redis_unavailable)?;
        let first_attempt = ledger_set.is_some();
        // the marker is also the sign that execution started: an operator's cancel is guarded
        // by its absence, so a request read before a cancel is read again now
        if load(&svc, JobKind::ExecuteGrant, &rec.id).await?.is_none() {
            if first_attempt {
                let _: () = redis::cmd("DEL")
                    .arg(svc.queue.namespace().key(&ledger))
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_unavailable)?;
            }
            return Ok(Handoff::done());
        }
        // what an earlier attempt learned of the access before it wrote, and what it concluded
        // (it may have been cut short by a crash, or its commit lost a race with another writer
        // of the record)
        let earlier: Option<Attempt> = if first_attempt { None } else { super::ledger_read(&svc, &ledger).await? };
        let learned = earlier.as_ref().map(|a| a.before);
        // an attempt that found (or made) the access moments ago and lost only its commit is
        // committed again as it was: no second read or write upstream. Unless grantline removed
        // the access since, or the finding is too old to stand for the state now.
        let recent = |at_ms: u64| now_ms.saturating_sub(at_ms) <= EVIDENCE_MAX_AGE.as_millis() as u64;
        let repeat = earlier.as_ref().filter(|a| !changed && recent(a.at_ms)).and_then(|a| a.found.as_ref());
        // no write that a read already answered, unless grantline removed the access lately:
        // then a read (validate's, or one now through a replica) may predate the removal, and
        // only the write's own answer, from the primary, says what is there
        let fresh = rec.current.as_ref().filter(|c| first_attempt && !changed && recent(c.evidence.at_ms));
        let before = match fresh {
            Some(c) => Some(crate::executor::Found { present: c.present, evidence: c.evidence.clone() }),
            None if repeat.is_some() => None,
            // a repeat after an earlier attempt wrote: a read first, so the write is not repeated
            None if !changed && (learned.is_some() || svc.executors.checks_before_grant(&access)) => {
                Some(svc.executors.check(&access).await?)
            }
            // the write's own answer ("already there") says what was there
            None => None,
        };
        let (evidence, applied, change) = if let Some(r) = repeat {
            (r.evidence.clone(), r.applied, r.change.clone())
        } else if let Some(b) = before.as_ref().filter(|b| b.present) {
            (b.evidence.clone(), false, None)
        } else {
            let change = match svc.executors.grant(&access, &rec.id).await {
                Ok(change) => change,
                Err(e) if is_not_found(&e) => {
                    // nothing was written: the retry starts afresh (and reads the ticket again)
                    if first_attempt {
                        let _: () = redis::cmd("DEL")
                            .arg(svc.queue.namespace().key(&ledger))
                            .query_async(&mut conn)
                            .await
                            .map_err(redis_unavailable)?;
                    }
                    return Err(not_found(svc.executors.not_found_grace, rec.created_ms, now_ms, e));
                }
                Err(e) => return Err(e),
            };
            // read back: the write's success is the source of truth, but a grant is recorded
            // only once it is visible
            if !svc.executors.read_back(&access).await?.present {
                return Err(JobError::transient(
                    "grant.not_visible",
                    "the access is not visible yet; it will be verified again",
                ));
            }
            (change.evidence.clone(), change.applied, Some(change))
        };
        // pre-existing: there before grantline (our first attempt may find its own write on a
        // retry, hence the ledger); an access other grantline requests hold is shared, not
        // pre-existing, and this request becomes one more holder
        let others = other_holders(&svc.queue, &key, &rec.id).await?;
        let validated_pre_existing = !changed && rec.current.as_ref().is_some_and(|c| c.present);
        // on the first attempt nothing of ours can be there yet: the access was there before
        // exactly when nothing had to be written (the read said so, or the write's "already
        // there" did, when the read was older than the write)
        let before_present = match learned {
            Some(b) => b,
            None if first_attempt => !applied,
            None => before.as_ref().map(|b| b.present).unwrap_or(!applied),
        };
        if repeat.is_none() {
            // remember what was there before this request's write (kept from the first attempt)
            // and what this attempt concluded, for a repeat of this step
            let attempt = Attempt {
                at_ms: now_ms,
                before: before_present,
                found: Some(Found { evidence: evidence.clone(), applied, change: change.clone() }),
            };
            super::ledger_keep(&svc, &ledger, &attempt, None).await?;
        }
        let pre_existing = if !others.is_empty() {
            false
        } else if let Some(b) = learned {
            b
        } else if first_attempt {
            !applied
        } else {
            validated_pre_existing
        };
        // a repeat keeps the time the access was found or made
        let granted_ms = match (repeat, earlier.as_ref()) {
            (Some(_), Some(a)) => a.at_ms,
            _ => now_ms,
        };
        let receipt = access.receipt(pre_existing, granted_ms, evidence.clone(), change.as_ref());
        let event = match &access {
            Access::Group { group_id, user_id, .. } => AuditEvent::GrantExecuted {
                group_id: group_id.clone(),
                user_id: user_id.clone(),
                before_member: before_present,
                after_member: true,
                pre_existing,
                graph_request_id: evidence.request_id.clone(),
                client_request_id: evidence.client_request_id.clone(),
            },
            Access::Mailbox { address, level, user_id, .. } => AuditEvent::PermissionGranted {
                mailbox: address.clone(),
                level: level.to_string(),
                user_id: user_id.clone(),
                before_present,
                pre_existing,
                exchange_request_id: evidence.request_id.clone(),
                client_request_id: evidence.client_request_id.clone(),
            },
        };
        let mut c = commit(&svc, &rec, JobKind::ExecuteGrant)
            .event(event)
            .set(|u| u.grant(&receipt))
            .write(Write::new(WriteCmd::Del, ledger.clone(), Vec::<String>::new()));
        if !pre_existing {
            c = c.write(hold_write(&key, &rec.id));
        }
        handoff(c.outcome(Outcome::Granted))
    })
    .await
}

/// The upstream did not find the person, the group or the mailbox. Validate read them moments
/// before, so this may be replication (apis.md 2.9: a new object can briefly answer 404 to
/// writes).
fn is_not_found(e: &JobError) -> bool {
    matches!(e, JobError::Permanent { code, .. } if code == "graph.not_found" || code == "exchange.not_found")
}

/// A not-found answer `elapsed` after the request was made (on the clock): within the grace it
/// is waited out, spending no attempt ([`super::replication_wait`]); past it, the object is
/// taken as gone for good.
fn not_found(grace: Duration, created_ms: u64, now_ms: u64, e: JobError) -> JobError {
    let elapsed = Duration::from_millis(now_ms.saturating_sub(created_ms));
    if let Some(after) = super::replication_wait(grace, created_ms, now_ms) {
        tracing::info!(error = %e, elapsed_secs = elapsed.as_secs(), "not found yet; it may not have replicated");
        return JobError::wait(
            e.code(),
            format!(
                "{} (not found {} s after the request was made; retried as replication for up to {} s)",
                e.message(),
                elapsed.as_secs(),
                grace.as_secs()
            ),
            after,
        );
    }
    JobError::permanent(
        e.code(),
        format!(
            "{}; still not found {} s after the request was made (executors.not_found_grace_secs is {})",
            e.message(),
            elapsed.as_secs(),
            grace.as_secs()
        ),
    )
}

/// What an attempt of this step learned and concluded, kept in its effect-ledger marker until
/// the commit that ends the step deletes it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Attempt {
    /// When the attempt concluded (ms since the epoch, on the clock).
    at_ms: u64,
    /// The access was there before this request wrote anything.
    before: bool,
    /// What the attempt found there after its read or write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    found: Option<Found>,
}

/// The access is there, and the call that says so.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Found {
    evidence: grantline_shared::receipt::Evidence,
    /// This request's write changed something.
    applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change: Option<crate::executor::Change>,
}

/// Whether this step's effect-ledger marker is there: execution started and may have written.
async fn ledger_exists(svc: &Services, ledger: &str) -> Result<bool, JobError> {
    let mut conn = svc.queue.connection();
    redis::cmd("EXISTS")
        .arg(svc.queue.namespace().key(ledger))
        .query_async::<bool>(&mut conn)
        .await
        .map_err(redis_unavailable)
}

/// The effect-ledger key of this step's change to one access (relative to the namespace).
fn ledger_key(request_id: &str, access: &str) -> String {
    grantline_store::lifecycle::grant_ledger_key(request_id, access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_waited_out_for_the_grace_then_permanent() {
        let grace = Duration::from_secs(300);
        let e = || JobError::permanent("graph.not_found", "Resource 'u' does not exist");
        let at = |secs: u64| not_found(grace, 1_000_000, 1_000_000 + secs * 1000, e());
        match at(0) {
            JobError::Wait { code, after, message } => {
                assert_eq!((code.as_str(), after), ("graph.not_found", Duration::from_secs(1)));
                assert!(message.contains("Resource 'u' does not exist") && message.contains("300 s"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(at(40), JobError::Wait { after, .. } if after == Duration::from_secs(10)));
        assert!(matches!(at(299), JobError::Wait { after, .. } if after == Duration::from_secs(30)));
        match at(300) {
            JobError::Permanent { code, message } => {
                assert_eq!(code, "graph.not_found");
                assert!(message.contains("still not found 300 s") && message.contains("not_found_grace_secs"));
            }
            other => panic!("{other:?}"),
        }
        // no grace: at once
        assert!(matches!(not_found(Duration::ZERO, 5, 5, e()), JobError::Permanent { .. }));
        // only the not-found answers of the directory and of Exchange
        assert!(is_not_found(&e()));
        assert!(is_not_found(&JobError::permanent("exchange.not_found", "x")));
        assert!(!is_not_found(&JobError::permanent("graph.forbidden", "x")));
        assert!(!is_not_found(&JobError::transient("graph.not_found", "x")));
    }
}
