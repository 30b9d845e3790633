//! A request's life beyond its chain: cancelling it before anything was granted, and removing
//! its access now. Operator commands (the CLI and the operator HTTP API) and offboarding call
//! these, so there is one implementation of each.
//!
//! - [`cancel`]: only before execution (`received`, `validating`, `awaiting_approval`,
//!   `approved`, `deferred`). From `approved` or `deferred` the commit is guarded by the
//!   absence of execute-grant's effect-ledger key, which execute-grant writes before it
//!   re-reads the record and changes anything: either the cancel lands first (execute-grant
//!   then finds the request cancelled and changes nothing) or execution has started and the
//!   cancel is refused. The ticket is told (`update-ticket cancelled`), open approval cards
//!   and records are closed (`notify update`).
//! - [`remove_now`]: a granted request (`active`, `completed`) gets a `remove-access` job now,
//!   with the trigger that says why. remove-access is ownership-aware: it never removes an
//!   access that existed before grantline, nor one another request still holds; the ticket
//!   is noted with the trigger.
//!
//! Both are guarded commits retried on a concurrent change, audited under the caller's actor
//! (`operator:<id>`, `grantline:offboarding`, ...), and change nothing when refused.

use grantline_queue::{Guard, Queue};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::{Next, Outcome};
use grantline_shared::jobs::RemovalTrigger;
use grantline_shared::policy::{AccessLevel, TargetKind};
use grantline_shared::receipt::{access_key_group, access_key_mailbox};
use grantline_shared::record::{RecordError, RequestRecord};
use grantline_shared::request::RequestState;

use crate::decision::due_write;
use crate::{Applied, Commit, StoreError};

/// How many times a change is re-read and tried again after a concurrent change.
const ATTEMPTS: usize = 6;

/// The longest reason kept.
pub const MAX_REASON_LEN: usize = 1000;

/// The states a request may be cancelled from: nothing has been granted yet.
pub const CANCELLABLE: &[RequestState] = &[
    RequestState::Received,
    RequestState::Validating,
    RequestState::AwaitingApproval,
    RequestState::Approved,
    RequestState::Deferred,
];

/// The states whose access can be removed now.
pub const REMOVABLE: &[RequestState] = &[RequestState::Active, RequestState::Completed];

/// Why a lifecycle change was not made. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no such request")]
    NotFound,
    /// The request is not in a state the change applies to: a stable code and a message for
    /// people (HTTP 409).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LifecycleError {
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        LifecycleError::Refused { code, message: message.into() }
    }
}

/// Stable codes of refusals.
pub mod codes {
    /// Execution has started or the access was granted: cancel no longer applies.
    pub const ALREADY_EXECUTING: &str = "request.already_executing";
    /// The request ended (denied, rejected, cancelled, removed, ...).
    pub const FINISHED: &str = "request.finished";
    /// Nothing was granted (yet): there is nothing to remove.
    pub const NOT_GRANTED: &str = "request.not_granted";
    /// The grant is being recorded (granted, ticket being noted): try again in a moment.
    pub const SETTLING: &str = "request.settling";
    /// The request failed and is with compensation or on-call.
    pub const FAILED: &str = "request.failed";
    /// The request is not an active time-bound grant.
    pub const NOT_ACTIVE: &str = "request.not_active";
    /// An extension is already waiting for approval.
    pub const EXTENSION_PENDING: &str = "request.extension_pending";
    /// The new end is not later than the current one, or is in the past.
    pub const BAD_END: &str = "request.invalid_end";
    /// The policy does not allow the new end.
    pub const POLICY_REFUSED: &str = "policy.refused";
    /// The request kept changing while the change was tried.
    pub const BUSY: &str = "request.busy";
}

/// What a lifecycle change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub request_id: String,
    /// The request's state after the change.
    pub state: RequestState,
    /// The ids of the jobs it enqueued.
    pub jobs: Vec<String>,
}

/// The key execute-grant writes before it changes anything for `request_id` on `access`
/// (relative to the namespace): its effect ledger, and the sign that execution has started.
pub fn grant_ledger_key(request_id: &str, access: &str) -> String {
    format!("ledger:{request_id}:execute-grant:{access}")
}

/// The access key (`shared::receipt`) of what a request asks for, from its decision and its
/// requester; `None` before validate resolved them.
pub fn access_key(rec: &RequestRecord) -> Option<String> {
    let decision = rec.decision.as_ref()?;
    let user = rec.requester.as_ref()?;
    let target = decision.target.as_ref()?;
    match target.kind {
        TargetKind::Group => Some(access_key_group(target.group_id.as_deref()?, &user.id)),
        TargetKind::Mailbox => {
            let level: AccessLevel = decision.level.filter(|l| l.target_kind() == TargetKind::Mailbox)?;
            Some(access_key_mailbox(target.mailbox_address.as_deref()?, level, &user.id))
        }
    }
}

/// A reason as kept: trimmed, bounded.
pub fn clean_reason(reason: &str) -> String {
    reason.trim().chars().take(MAX_REASON_LEN).collect()
}

async fn load(queue: &Queue, id: &str) -> Result<RequestRecord, LifecycleError> {
    match crate::load(queue, id).await {
        Ok(r) => Ok(r),
        Err(StoreError::Record(RecordError::NotFound { .. })) => Err(LifecycleError::NotFound),
        Err(e) => Err(e.into()),
    }
}

fn not_cancellable(rec: &RequestRecord) -> LifecycleError {
    use RequestState as S;
    match rec.state {
        S::Granting | S::Granted | S::TicketUpdated | S::Active | S::Completed => LifecycleError::refused(
            codes::ALREADY_EXECUTING,
            format!("request {} is {}: the access was granted, so it can no longer be cancelled; revoke it instead", rec.id, rec.state),
        ),
        S::Failed | S::Compensating | S::RolledBack => LifecycleError::refused(
            codes::FAILED,
            format!("request {} is {}: it failed after execution started and is handled by compensation and on-call", rec.id, rec.state),
        ),
        s => LifecycleError::refused(codes::FINISHED, format!("request {} is already {s}", rec.id)),
    }
}

/// Cancels a request before anything was granted. `actor` is the audit actor
/// (`operator:<id>`); `reason` goes on the timeline and the ticket.
pub async fn cancel(
    queue: &Queue,
    request_id: &str,
    actor: &str,
    reason: &str,
    now_ms: u64,
) -> Result<Changed, LifecycleError> {
    let reason = clean_reason(reason);
    for _ in 0..ATTEMPTS {
        let rec = load(queue, request_id).await?;
        if !CANCELLABLE.contains(&rec.state) {
            return Err(not_cancellable(&rec));
        }
        let why = if reason.is_empty() { format!("cancelled by {actor}") } else { format!("cancelled by {actor}: {reason}") };
        let mut c = Commit::new(&rec, actor, now_ms)
            .event(AuditEvent::RequestCancelled { reason: reason.clone(), from_state: rec.state.as_str().to_owned() })
            .set(|u| u.reason(&why))
            .write(due_write(&rec.id, None))
            .outcome(Outcome::Cancelled);
        let executing = matches!(rec.state, RequestState::Approved | RequestState::Deferred);
        if executing && let Some(access) = access_key(&rec) {
            c = c.guard(Guard::KeyAbsent { key: grant_ledger_key(&rec.id, &access) });
        }
        match c.apply(queue).await? {
            Applied::Done { jobs, state } => {
                tracing::info!(request_id, actor, "request cancelled");
                return Ok(Changed { request_id: rec.id.clone(), state, jobs });
            }
            Applied::Conflict => {
                // the state or the head moved, or execution started: read again and decide again
                if executing
                    && let Some(access) = access_key(&rec)
                    && ledger_present(queue, &rec.id, &access).await?
                {
                    return Err(LifecycleError::refused(
                        codes::ALREADY_EXECUTING,
                        format!("request {}: execution has started, so it can no longer be cancelled; revoke it once granted", rec.id),
                    ));
                }
            }
        }
    }
    Err(busy(request_id))
}

async fn ledger_present(queue: &Queue, id: &str, access: &str) -> Result<bool, StoreError> {
    let mut conn = queue.connection();
    let n: bool = redis::AsyncCommands::exists(&mut conn, queue.namespace().key(&grant_ledger_key(id, access))).await?;
    Ok(n)
}

fn busy(request_id: &str) -> LifecycleError {
    LifecycleError::refused(codes::BUSY, format!("request {request_id} kept changing; nothing was done, try again"))
}

fn not_removable(rec: &RequestRecord) -> LifecycleError {
    use RequestState as S;
    match rec.state {
        S::Received | S::Validating | S::AwaitingApproval | S::Approved | S::Deferred => LifecycleError::refused(
            codes::NOT_GRANTED,
            format!("request {} is {}: nothing was granted yet; cancel it instead", rec.id, rec.state),
        ),
        S::Granting | S::Granted | S::TicketUpdated => LifecycleError::refused(
            codes::SETTLING,
            format!("request {} is {}: the grant is being recorded; try again in a moment", rec.id, rec.state),
        ),
        S::Failed | S::Compensating | S::RolledBack => LifecycleError::refused(
            codes::FAILED,
            format!("request {} is {}: compensation removes what it added", rec.id, rec.state),
        ),
        s => LifecycleError::refused(codes::FINISHED, format!("request {} is already {s}: nothing to remove", rec.id)),
    }
}

/// Removes a granted request's access now (`trigger`: revoked by an operator, offboarding).
/// The removal is ownership-aware (remove-access keeps a pre-existing access and one other
/// requests hold) and the ticket is noted. `actor` is the audit actor.
pub async fn remove_now(
    queue: &Queue,
    request_id: &str,
    actor: &str,
    trigger: RemovalTrigger,
    reason: &str,
    now_ms: u64,
) -> Result<Changed, LifecycleError> {
    let reason = clean_reason(reason);
    for _ in 0..ATTEMPTS {
        let rec = load(queue, request_id).await?;
        if !REMOVABLE.contains(&rec.state) {
            return Err(not_removable(&rec));
        }
        let why = match (trigger, reason.is_empty()) {
            (RemovalTrigger::Revoked, true) => format!("revoked by {actor}"),
            (RemovalTrigger::Revoked, false) => format!("revoked by {actor}: {reason}"),
            (t, true) => format!("{} ({actor})", t.as_str()),
            (t, false) => format!("{} ({actor}): {reason}", t.as_str()),
        };
        let c = Commit::new(&rec, actor, now_ms)
            .event(AuditEvent::RemovalRequested { trigger: trigger.as_str().to_owned(), reason: reason.clone() })
            .set(|u| u.reason(&why))
            .write(due_write(&rec.id, None))
            .then(Next::RemoveAccess { trigger, at_ms: None });
        match c.apply(queue).await? {
            Applied::Done { jobs, state } => {
                tracing::info!(request_id, actor, trigger = trigger.as_str(), "removal requested");
                return Ok(Changed { request_id: rec.id.clone(), state, jobs });
            }
            Applied::Conflict => continue,
        }
    }
    Err(busy(request_id))
}
