//! One group membership, many requests. Every grantline request that relies on a membership
//! grantline created is a holder (`holders:{group}:{user}`); removal happens only when the
//! last holder lets go, and never for a membership that existed before grantline. Grant and
//! removal of one (group, user) are serialised by a short lock, released by the same atomic
//! commit that records the outcome (guarded: only while this request still holds it).

use std::time::Duration;

use grantline_queue::{Guard, Handoff, JobError, Queue, Write, WriteCmd};
use redis::AsyncCommands;

use crate::steps::redis_unavailable;

/// How long a membership lock lives if its holder dies without releasing it.
const LOCK_TTL: Duration = Duration::from_secs(60);

pub fn holders_key(group: &str, user: &str) -> String {
    format!("holders:{group}:{user}")
}

fn lock_key(group: &str, user: &str) -> String {
    format!("lock:membership:{group}:{user}")
}

/// A held lock on one membership. Re-entrant for the same request, so a retry of a step
/// whose earlier attempt died while holding it does not wait for the TTL.
pub struct MembershipLock {
    key: String,
    token: String,
}

impl MembershipLock {
    pub async fn acquire(
        queue: &Queue,
        group: &str,
        user: &str,
        request_id: &str,
        step: &str,
    ) -> Result<Self, JobError> {
        let key = lock_key(group, user);
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
                return Err(JobError::Transient {
                    code: "membership.busy".into(),
                    message: format!("another request is changing this membership ({})", holder.unwrap_or_default()),
                    retry_after: Some(Duration::from_millis(200)),
                });
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

/// The requests that hold a membership grantline created.
pub async fn holders(queue: &Queue, group: &str, user: &str) -> Result<Vec<String>, JobError> {
    let mut conn = queue.connection();
    conn.smembers(queue.namespace().key(&holders_key(group, user))).await.map_err(redis_unavailable)
}

/// What letting go of a membership did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    /// Removed from the directory and verified gone.
    pub removed: bool,
    /// The membership existed before grantline: never removed by it.
    pub kept_pre_existing: bool,
    /// Other grantline requests still hold it.
    pub kept_for: Vec<String>,
}

/// Lets go of this request's hold on a membership: removes it from the directory (always
/// with `/$ref`) only when it was grantline's and no other request holds it, then verifies.
/// Call with the membership lock held; commit `forget_writes` with the same hand-off.
pub async fn let_go(
    svc: &crate::Services,
    grant: &crate::record::GrantReceipt,
    request_id: &str,
) -> Result<Release, JobError> {
    use crate::steps::job_error;
    if grant.pre_existing {
        return Ok(Release { removed: false, kept_pre_existing: true, kept_for: Vec::new() });
    }
    let others: Vec<String> =
        holders(&svc.queue, &grant.group_id, &grant.user_id).await?.into_iter().filter(|h| h != request_id).collect();
    if !others.is_empty() {
        return Ok(Release { removed: false, kept_pre_existing: false, kept_for: others });
    }
    svc.graph.remove_member(&grant.group_id, &grant.user_id).await.map_err(job_error)?;
    if svc.graph.is_member(&grant.group_id, &grant.user_id).await.map_err(job_error)?.value {
        return Err(JobError::transient("removal.not_visible", "the membership is still visible; will verify again"));
    }
    Ok(Release { removed: true, kept_pre_existing: false, kept_for: Vec::new() })
}

/// The write that drops this request from the membership's holders.
pub fn forget_write(grant: &crate::record::GrantReceipt, request_id: &str) -> Write {
    Write::new(WriteCmd::SRem, holders_key(&grant.group_id, &grant.user_id), [request_id.to_owned()])
}

/// Runs a step's work under a membership lock: on success the hand-off carries the guarded
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
