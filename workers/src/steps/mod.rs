//! One file per step: the handler, next to its payload's file name in shared/src/jobs.

pub mod alert;
pub mod approval_deadline;
pub mod execute_grant;
pub mod notify;
pub mod offboard;
pub mod reconcile;
pub mod remove_access;
pub mod request_approval;
pub mod resolve_alert;
pub mod rollback_grant;
pub mod schedule_removal;
pub mod sweep_directory;
pub mod sync_approvals;
pub mod update_ticket;
pub mod validate;

use grantline_queue::JobError;
use grantline_shared::{ErrorClass, StepError};

/// A classified connector failure as the queue's retry input.
pub fn job_error(e: impl Into<StepError>) -> JobError {
    let e: StepError = e.into();
    match e.class {
        ErrorClass::Transient { retry_after } => JobError::Transient { code: e.code, message: e.message, retry_after },
        ErrorClass::Throttled { retry_after } => JobError::Throttled { code: e.code, message: e.message, retry_after },
        ErrorClass::Permanent => JobError::Permanent { code: e.code, message: e.message },
    }
}

/// Redis could not be reached: the step runs again later.
pub fn redis_unavailable(e: impl std::fmt::Display) -> JobError {
    JobError::transient("redis.unavailable", e.to_string())
}

/// How long a value a step keeps in its effect-ledger key waits for the commit that ends the
/// step (a week: far beyond any retry).
pub const LEDGER_TTL_SECS: u64 = 7 * 24 * 3600;

/// What an earlier attempt of a step kept in its effect-ledger key (relative to the
/// namespace), when it is there and of this shape.
pub async fn ledger_read<T: serde::de::DeserializeOwned>(
    svc: &crate::services::Services,
    key: &str,
) -> Result<Option<T>, JobError> {
    let mut conn = svc.queue.connection();
    let v: Option<String> = redis::cmd("GET")
        .arg(svc.queue.namespace().key(key))
        .query_async(&mut conn)
        .await
        .map_err(redis_unavailable)?;
    Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
}

/// Keeps `value` in a step's effect-ledger key (relative to the namespace) for a repeat of the
/// step: for `ttl_secs`, or until the commit that ends the step deletes it.
pub async fn ledger_keep<T: serde::Serialize>(
    svc: &crate::services::Services,
    key: &str,
    value: &T,
    ttl_secs: Option<u64>,
) -> Result<(), JobError> {
    let text = serde_json::to_string(value).map_err(|e| JobError::permanent("ledger.encode", e.to_string()))?;
    let mut cmd = redis::cmd("SET");
    cmd.arg(svc.queue.namespace().key(key)).arg(text);
    if let Some(ttl) = ttl_secs {
        cmd.arg("EX").arg(ttl);
    }
    let mut conn = svc.queue.connection();
    cmd.query_async::<()>(&mut conn).await.map_err(redis_unavailable)
}

/// How long to wait before asking again about an object the directory (or Exchange) does not
/// know `now_ms`, for a request made at `created_ms`: within `grace` it may be replication
/// (apis.md 2.9: a new object can answer 404 for a while), so a quarter of the time so far,
/// between 1 and 30 seconds; past it, None: the object is taken as not there. The request is
/// newer than any object it names that exists, so measuring from it never gives an old object
/// the grace of a new one.
pub fn replication_wait(
    grace: std::time::Duration,
    created_ms: u64,
    now_ms: u64,
) -> Option<std::time::Duration> {
    use std::time::Duration;
    let elapsed = Duration::from_millis(now_ms.saturating_sub(created_ms));
    (elapsed < grace).then(|| (elapsed / 4).clamp(Duration::from_secs(1), Duration::from_secs(30)))
}

/// The evidence of one upstream call (its correlation ids and when it was made).
pub fn evidence(c: &grantline_connectors::graph::Correlation, at_ms: u64) -> grantline_shared::receipt::Evidence {
    grantline_shared::receipt::Evidence {
        request_id: c.request_id.clone(),
        client_request_id: c.client_request_id.clone(),
        at_ms,
    }
}

/// The audit event of letting go of an access: a group membership's removal (or
/// compensation), or a mailbox permission's.
pub fn removal_event(
    r: &grantline_shared::receipt::Receipt,
    release: &grantline_shared::receipt::RemovalReceipt,
) -> grantline_shared::audit::AuditEvent {
    use grantline_shared::audit::AuditEvent;
    use grantline_shared::receipt::Receipt;
    match r {
        Receipt::Group(g) if release.trigger == "compensation" => AuditEvent::Compensated {
            group_id: g.group_id.clone(),
            user_id: g.user_id.clone(),
            removed: release.removed,
        },
        Receipt::Group(g) => AuditEvent::RemovalExecuted {
            group_id: g.group_id.clone(),
            user_id: g.user_id.clone(),
            removed: release.removed,
            kept_pre_existing: release.kept_pre_existing,
            kept_for: release.kept_for.clone(),
            trigger: release.trigger.clone(),
        },
        Receipt::Mailbox(m) => AuditEvent::PermissionRemoved {
            mailbox: m.mailbox.clone(),
            level: m.level.to_string(),
            user_id: m.user_id.clone(),
            removed: release.removed,
            kept_pre_existing: release.kept_pre_existing,
            kept_for: release.kept_for.clone(),
            trigger: release.trigger.clone(),
        },
    }
}
