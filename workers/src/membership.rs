//! One access, many requests. Every grantline request that relies on an access grantline
//! created (a group membership, a mailbox permission) is a holder (`holders:{access}`, the
//! receipt's access key); removal happens only when the last holder lets go, and never for an
//! access that existed before grantline. Grant and removal of one access are serialised by a
//! short lock, released by the same atomic commit that records the outcome (guarded: only
//! while this request still holds it).

use std::time::Duration;

use grantline_queue::{Guard, Handoff, JobError, Queue, Write, WriteCmd};
use redis::AsyncCommands;

use crate::steps::redis_unavailable;

/// How long a membership lock lives if its holder dies without releasing it.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// The holders of an access (by its receipt's access key).
pub fn holders_key(access: &str) -> String {
    format!("holders:{access}")
}

fn lock_key(access: &str) -> String {
    format!("lock:{access}")
}

/// Set while grantline removes an access and for [`CHANGED_TTL`] after: a read of the access
/// made meanwhile (validate's) may predate the removal, or come from a replica that has not
/// seen it, so it must not stand in for a read at execution.
pub(crate) fn changed_key(access: &str) -> String {
    format!("changed:{access}")
}

/// How long a removal's mark stays: far beyond the freshness a grant gives a read
/// (`execute_grant::EVIDENCE_MAX_AGE`) and beyond Graph's replication delays.
const CHANGED_TTL: Duration = Duration::from_secs(3600);

/// A held lock on one membership. Re-entrant for the same request, so a retry of a step
/// whose earlier attempt died while holding it does not wait for the TTL.
pub struct MembershipLock {
    key: String,
    token: String,
}

impl MembershipLock {
    pub async fn acquire(queue: &Queue, access: &str, request_id: &str, step: &str) -> Result<Self, JobError> {
        let key = lock_key(access);
        let token = format!("{request_id}:{step}");
        let abs = queue.namespace().key(&key);
        let mut conn = queue.connection();
        let set: Option<String> = redis::cmd("SET")
            .arg(&abs)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(redis_unavailable)?;
        if set.is_none() {
            let holder: Option<String> = conn.get(&abs).await.map_err(redis_unavailable)?;
            if holder.as_deref() != Some(token.as_str()) {
                // waiting for a lock is not failing: no attempt is spent
                return Err(JobError::wait(
                    "access.busy",
                    format!("another request is changing this access ({})", holder.unwrap_or_default()),
                    Duration::from_millis(100 + u64::from(fastrand::u8(..))),
                ));
            }
            let _: bool = conn.pexpire(&abs, LOCK_TTL.as_millis() as i64).await.map_err(redis_unavailable)?;
        }
        Ok(Self { key, token })
    }

    /// Adds the guard and the release to a step's hand-off: the commit applies only while
    /// this request still holds the lock, and releases it.
    pub fn release_with(&self, h: Handoff) -> Handoff {
        h.guard(Guard::KeyEquals { key: self.key.clone(), value: self.token.clone() }).write(Write::new(
            WriteCmd::Del,
            self.key.clone(),
            Vec::<String>::new(),
        ))
    }

    /// Releases at once (a failed attempt), if still held by this request: the same guarded
    /// delete as `release_with`, committed on its own.
    pub async fn release(self, queue: &Queue) {
        if let Err(e) = queue.commit(self.release_with(Handoff::done())).await {
            tracing::warn!(error = %e, "could not release a membership lock; it expires by itself");
        }
    }
}

/// The requests that hold an access grantline created.
pub async fn holders(queue: &Queue, access: &str) -> Result<Vec<String>, JobError> {
    let mut conn = queue.connection();
    conn.smembers(queue.namespace().key(&holders_key(access))).await.map_err(redis_unavailable)
}

/// The other requests (besides `request_id`) that hold an access.
pub async fn other_holders(queue: &Queue, access: &str, request_id: &str) -> Result<Vec<String>, JobError> {
    Ok(holders(queue, access).await?.into_iter().filter(|h| h != request_id).collect())
}

/// The write that makes this request a holder of an access.
pub fn hold_write(access: &str, request_id: &str) -> Write {
    Write::new(WriteCmd::SAdd, holders_key(access), [request_id.to_owned()])
}

/// The write that drops this request from an access's holders.
pub fn forget_write(access: &str, request_id: &str) -> Write {
    Write::new(WriteCmd::SRem, holders_key(access), [request_id.to_owned()])
}

/// Runs a step's work under an access lock: on success the hand-off carries the guarded
/// release, on failure the lock is released at once so the retry (or another request) can
/// take it.
pub async fn locked(
    lock: MembershipLock,
    queue: &Queue,
    work: impl std::future::Future<Output = Result<Handoff, JobError>>,
) -> Result<Handoff, JobError> {
    match work.await {
        Ok(h) => Ok(lock.release_with(h)),
        Err(e) => {
            lock.release(queue).await;
            Err(e)
        }
    }
}

/// Lets go of this request's hold on the access its receipt records: removes it upstream only
/// when grantline added it and no other request still holds it, then verifies it is gone.
/// Call with the access lock held; commit [`forget_write`] with the same hand-off.
pub async fn let_go(
    svc: &crate::Services,
    grant: &grantline_shared::receipt::Receipt,
    request_id: &str,
    trigger: &str,
) -> Result<grantline_shared::receipt::RemovalReceipt, JobError> {
    use grantline_shared::receipt::RemovalReceipt;
    let at_ms = svc.now_ms();
    let kept = |kept_pre_existing: bool, kept_for: Vec<String>| RemovalReceipt {
        removed: false,
        kept_pre_existing,
        kept_for,
        already_gone: false,
        evidence: None,
        trigger: trigger.to_owned(),
        at_ms,
    };
    if grant.pre_existing() {
        return Ok(kept(true, Vec::new()));
    }
    let others = other_holders(&svc.queue, &grant.access_key(), request_id).await?;
    if !others.is_empty() {
        return Ok(kept(false, others));
    }
    let access = crate::executor::Access::from_receipt(grant);
    // marked before the removal, so a read of the access overlapping it is never trusted
    let mut conn = svc.queue.connection();
    let _: () = conn
        .pset_ex(svc.queue.namespace().key(&changed_key(&grant.access_key())), at_ms, CHANGED_TTL.as_millis() as u64)
        .await
        .map_err(redis_unavailable)?;
    let change = svc.executors.revoke(&access, request_id).await?;
    if svc.executors.read_back(&access).await?.present {
        return Err(JobError::transient(
            "removal.not_visible",
            "the access is still visible; it will be verified again",
        ));
    }
    Ok(RemovalReceipt {
        removed: change.applied,
        kept_pre_existing: false,
        kept_for: Vec::new(),
        already_gone: !change.applied,
        evidence: Some(change.evidence),
        trigger: trigger.to_owned(),
        at_ms,
    })
}
