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
//!   is noted with the trigger. A grant whose extension awaits approval is removed too, the
//!   extension ending unapproved in the same commit.
//! - [`extend`]: a later end for an active grant, within the policy in force, back to approval
//!   under the request's plan; the decision's commit ([`settle_extension`]) moves the removal to
//!   the new end or keeps the original one.
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
            format!(
                "request {} is {}: the access was granted, so it can no longer be cancelled; revoke it instead",
                rec.id, rec.state
            ),
        ),
        S::Failed | S::Compensating | S::RolledBack => LifecycleError::refused(
            codes::FAILED,
            format!(
                "request {} is {}: it failed after execution started and is handled by compensation and on-call",
                rec.id, rec.state
            ),
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
        if rec.grant.is_some() {
            // awaiting approval of an extension: the access is there
            return Err(LifecycleError::refused(
                codes::ALREADY_EXECUTING,
                format!("request {} holds a grant (an extension is waiting for approval); revoke it instead", rec.id),
            ));
        }
        let why =
            if reason.is_empty() { format!("cancelled by {actor}") } else { format!("cancelled by {actor}: {reason}") };
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
                        format!(
                            "request {}: execution has started, so it can no longer be cancelled; revoke it once granted",
                            rec.id
                        ),
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
        // a grant whose extension awaits approval: the extension ends unapproved, and the
        // access goes now
        let extension = pending_extension(queue, &rec).await?;
        if !REMOVABLE.contains(&rec.state) && extension.is_none() {
            return Err(not_removable(&rec));
        }
        let why = match (trigger, reason.is_empty()) {
            (RemovalTrigger::Revoked, true) => format!("revoked by {actor}"),
            (RemovalTrigger::Revoked, false) => format!("revoked by {actor}: {reason}"),
            (t, true) => format!("{} ({actor})", t.as_str()),
            (t, false) => format!("{} ({actor}): {reason}", t.as_str()),
        };
        let mut c = Commit::new(&rec, actor, now_ms)
            .event(AuditEvent::RemovalRequested { trigger: trigger.as_str().to_owned(), reason: reason.clone() })
            .set(|u| u.reason(&why))
            .write(due_write(&rec.id, None))
            .then(Next::RemoveAccess { trigger, at_ms: None });
        if let Some(ext) = &extension {
            c = settle_extension(c, ext, Outcome::Rejected, trigger.as_str());
        }
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

/// An extension waiting for approval, kept beside the record (`req:{id}:extension`) from the
/// request for it until its decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extension {
    /// The end asked for (ms).
    pub until_ms: u64,
    /// The end that stands unless the extension is approved (ms).
    pub previous_end_ms: u64,
    /// The audit actor who asked.
    pub requested_by: String,
    pub reason: String,
    pub requested_ms: u64,
    /// The approvals of the grant itself (the extension's own are counted afresh).
    #[serde(default)]
    pub previous_approvals: Vec<grantline_shared::record::ApprovalEntry>,
    /// The messages and approval records of the grant's own round (the extension asks anew).
    #[serde(default)]
    pub previous_notices: Vec<grantline_shared::record::Notice>,
}

/// The key of a request's pending extension (relative to the namespace).
pub fn extension_key(request_id: &str) -> String {
    format!("req:{request_id}:extension")
}

/// The LIST of a request's decided extensions, oldest first (relative to the namespace): each
/// as it was asked for, with the approvals and notices of the round before it, so nothing the
/// record no longer holds is lost.
pub fn extensions_key(request_id: &str) -> String {
    format!("req:{request_id}:extensions")
}

/// The extension a request awaits a decision on, if any: a request awaiting approval that
/// already holds a grant.
pub async fn pending_extension(queue: &Queue, rec: &RequestRecord) -> Result<Option<Extension>, StoreError> {
    if rec.state != RequestState::AwaitingApproval || rec.grant.is_none() {
        return Ok(None);
    }
    let mut conn = queue.connection();
    let raw: Option<String> =
        redis::AsyncCommands::get(&mut conn, queue.namespace().key(&extension_key(&rec.id))).await?;
    raw.map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Encode(format!("extension of {}: {e}", rec.id))))
        .transpose()
}

/// What a decision about a pending extension amounts to: approved moves the removal to the
/// new end, rejected or expired keeps the original. Other outcomes (a stage approved, an
/// approval counted) are returned as they are.
pub fn extension_outcome(ext: &Extension, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Approved | Outcome::AutoApproved => Outcome::Extended { until_ms: ext.until_ms },
        Outcome::Rejected | Outcome::ApprovalExpired => Outcome::ExtensionRefused { end_ms: ext.previous_end_ms },
        o => o,
    }
}

/// Applies a decision to a pending extension inside the decision's commit: the outcome as
/// [`extension_outcome`] maps it and, once decided, the new end (or the original one), the
/// expiring-grants index and the extension's key let go. `how`: `approved`, `rejected`,
/// `expired`.
pub fn settle_extension<'a>(c: Commit<'a>, ext: &Extension, outcome: Outcome, how: &str) -> Commit<'a> {
    use grantline_queue::{Write, WriteCmd};
    use grantline_shared::request::keys;
    let mapped = extension_outcome(ext, outcome);
    let end = match mapped {
        Outcome::Extended { until_ms } => until_ms,
        Outcome::ExtensionRefused { end_ms } => end_ms,
        o => return c.outcome(o),
    };
    let approved = matches!(mapped, Outcome::Extended { .. });
    let id = c.request_id().to_owned();
    let decided = serde_json::json!({ "extension": ext, "approved": approved, "end_ms": end, "how": how });
    c.event(AuditEvent::ExtensionDecided { approved, end_ms: end, how: how.to_owned() })
        .write(Write::new(WriteCmd::RPush, extensions_key(&id), [decided.to_string()]))
        .set(|u| u.end_ms(&end))
        .write(Write::new(WriteCmd::ZAdd, keys::EXPIRING, [end.to_string(), id.clone()]))
        .write(Write::new(WriteCmd::Del, extension_key(&id), Vec::<String>::new()))
        .write(due_write(&id, None))
        .outcome(mapped)
}

/// Why a new end is refused before anything is asked: the request must be an active
/// time-bound grant, the end later than the current one and in the future, and within what
/// the policy in force allows for the request's duration rule (its `max`, counted from the
/// grant) and the requester's leave date.
pub fn check_extension(
    rec: &RequestRecord,
    policy: &grantline_shared::policy::Policy,
    until_ms: u64,
    now_ms: u64,
) -> Result<u64, LifecycleError> {
    use grantline_shared::clock::{ms, timestamp};
    if rec.state != RequestState::Active {
        return Err(match rec.state {
            RequestState::AwaitingApproval if rec.grant.is_some() => LifecycleError::refused(
                codes::EXTENSION_PENDING,
                format!("request {}: an extension is already waiting for approval", rec.id),
            ),
            RequestState::Completed => LifecycleError::refused(
                codes::NOT_ACTIVE,
                format!("request {} is a permanent grant: it has no end to extend", rec.id),
            ),
            s => LifecycleError::refused(
                codes::NOT_ACTIVE,
                format!("request {} is {s}: only an active time-bound grant can be extended", rec.id),
            ),
        });
    }
    let Some(end_ms) = rec.end_ms else {
        return Err(LifecycleError::refused(codes::NOT_ACTIVE, format!("request {} has no end on record", rec.id)));
    };
    if until_ms <= end_ms || until_ms <= now_ms {
        return Err(LifecycleError::refused(
            codes::BAD_END,
            format!("until must be later than the current end ({}) and in the future", timestamp(end_ms)),
        ));
    }
    let decision = rec.decision.as_ref();
    let duration = decision.and_then(|d| d.duration.as_ref());
    let start = rec.grant.as_ref().map(|g| g.granted_ms()).unwrap_or(rec.created_ms);
    if let Some(name) = duration.and_then(|d| d.rule.as_deref()) {
        let Some(rule) = policy.durations().iter().find(|r| r.name == name) else {
            return Err(LifecycleError::refused(
                codes::POLICY_REFUSED,
                format!(
                    "the policy in force has no duration rule {name:?} (the one this grant was made under); the end cannot be extended"
                ),
            ));
        };
        if let Some(max) = rule.max {
            let cap = ms(max.after(timestamp(start)));
            if until_ms > cap {
                return Err(LifecycleError::refused(
                    codes::POLICY_REFUSED,
                    format!(
                        "the policy's duration rule {name:?} allows at most {max} from the grant, until {}",
                        timestamp(cap)
                    ),
                ));
            }
        }
    }
    if let Some(leave) = duration.filter(|d| d.ends_on_leave_date).and_then(|d| d.not_after)
        && until_ms > ms(leave)
    {
        return Err(LifecycleError::refused(
            codes::POLICY_REFUSED,
            format!("the access cannot outlast the requester's leave date ({leave})"),
        ));
    }
    Ok(end_ms)
}

/// Asks for a later end of an active grant. The policy in force must allow it
/// ([`check_extension`]); then the request goes back to approval under its plan (the access
/// stays until a decision): approved, the removal moves to the new end; rejected or not
/// decided in time, the original end stands. A grant the policy approved by rule is extended
/// at once.
pub async fn extend(
    queue: &Queue,
    request_id: &str,
    actor: &str,
    until_ms: u64,
    reason: &str,
    now_ms: u64,
    policy: &grantline_shared::policy::Policy,
) -> Result<Changed, LifecycleError> {
    use grantline_queue::{Write, WriteCmd};
    use grantline_shared::clock::timestamp;
    use grantline_shared::record::ApprovalClock;
    let reason = clean_reason(reason);
    for _ in 0..ATTEMPTS {
        let rec = load(queue, request_id).await?;
        let end_ms = check_extension(&rec, policy, until_ms, now_ms)?;
        let ext = Extension {
            until_ms,
            previous_end_ms: end_ms,
            requested_by: actor.to_owned(),
            reason: reason.clone(),
            requested_ms: now_ms,
            previous_approvals: rec.approvals.clone(),
            previous_notices: rec.notices.clone(),
        };
        let plan = rec.decision.as_ref().and_then(|d| d.plan()).filter(|p| !p.stages.is_empty());
        // each extension gets its own notes on the ticket
        let noted: Vec<String> = rec
            .noted
            .iter()
            .filter(|n| !["extension_requested", "extended", "extension_refused"].contains(&n.as_str()))
            .cloned()
            .collect();
        let c = Commit::new(&rec, actor, now_ms)
            .event(AuditEvent::ExtensionRequested { until_ms, previous_end_ms: end_ms, reason: reason.clone() })
            .set(|u| u.noted(&noted));
        let c = match plan {
            Some(plan) => {
                let why = match reason.is_empty() {
                    true => format!("Extension to {} requested by {actor}", timestamp(until_ms)),
                    false => format!("Extension to {} requested by {actor}: {reason}", timestamp(until_ms)),
                };
                let clock = ApprovalClock::start(0, now_ms);
                let due = clock.next_due_ms(plan);
                let body = serde_json::to_string(&ext).map_err(|e| StoreError::Encode(e.to_string()))?;
                c.set(|u| {
                    u.reason(&why).approvals(&Vec::new()).notices(&Vec::new()).approval_clock(&clock).asked_ms(&now_ms)
                })
                .write(Write::new(WriteCmd::Set, extension_key(&rec.id), [body]))
                .write(due_write(&rec.id, due))
                .outcome(Outcome::ExtensionRequested)
            }
            // approved by a rule: the rule approves the extension too
            None => settle_extension(
                c.set(|u| u.reason(&format!("extended by {actor} (approved by rule)"))),
                &ext,
                Outcome::AutoApproved,
                "rule",
            ),
        };
        match c.apply(queue).await? {
            Applied::Done { jobs, state } => {
                tracing::info!(request_id, actor, until_ms, "extension requested");
                return Ok(Changed { request_id: rec.id.clone(), state, jobs });
            }
            Applied::Conflict => continue,
        }
    }
    Err(busy(request_id))
}

/// Reads a new end as an operator writes it: a plain date (`2027-03-02`: through the end of
/// that day in the policy's time zone) or an RFC 3339 instant (`2027-03-02T17:00:00Z`). The
/// error says what is accepted.
pub fn parse_until(text: &str, policy: &grantline_shared::policy::Policy) -> Result<u64, String> {
    let text = text.trim();
    let expected =
        "must be a date (2027-03-02, through the end of that day) or an RFC 3339 time (2027-03-02T17:00:00Z)";
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && text.len() == 10
    {
        return policy.end_of_day(date).map(grantline_shared::clock::ms).ok_or_else(|| expected.to_owned());
    }
    match text.parse::<jiff::Timestamp>() {
        Ok(t) if t.as_millisecond() > 0 => Ok(grantline_shared::clock::ms(t)),
        _ => Err(format!("{text:?} {expected}")),
    }
}
