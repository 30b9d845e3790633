//! The scheduler: time. Its output is always jobs. It watches every queue (reaping expired
//! leases and applying retention even when no worker of a kind runs), runs the safety net for
//! removals (any grant past its end without a removal gets one, and a removal that failed for
//! good is tried again, once per period each), rings the approval
//! clocks (`approval-deadline` for every request whose reminder or deadline came, from the
//! `approvals:due` index) and polls ServiceNow's approval records of waiting requests now and
//! then (`sync-approvals`, in case a doorbell was lost), and rings the directory's periodic
//! jobs: the users delta sweep for leavers (`sweep-directory`) and the drift reconciliation
//! (`reconcile`), one job per period each. Several schedulers may run at once:
//! every job it enqueues carries an idempotency key. Its clock is a [`Clock`], so tests and
//! the demo can move time.

use std::future::Future;
use std::time::Duration;

use grantline_queue::{PushOutcome, Queue, QueueError};
use grantline_shared::flow::Next;
use grantline_shared::jobs::{FailedRemoval, RemovalTrigger};
use grantline_shared::request::{fields, keys};
use grantline_shared::{Clock, JobKind};
use redis::AsyncCommands;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub sweep_every: Duration,
    /// A grant this long past its end without a removal is swept (the delayed removal job
    /// normally fires first; the grace keeps the sweep from racing it).
    pub grace: Duration,
    /// A removal still due (one that failed for good, or whose job was lost) is enqueued again
    /// at most once per this period.
    pub removal_retry_every: Duration,
    /// How often the approval records of waiting requests are read back from ServiceNow.
    pub approval_poll_every: Duration,
    /// At most this many waiting requests per poll (those due soonest first).
    pub approval_poll_batch: usize,
    /// How often the directory's users delta is read for leavers (`sweep-directory`); `None`
    /// turns the sweep off.
    pub directory_sweep_every: Option<Duration>,
    /// How often active grants and governed groups are compared with the directory
    /// (`reconcile`); `None` turns it off.
    pub reconcile_every: Option<Duration>,
    pub clock: Clock,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            sweep_every: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            removal_retry_every: Duration::from_secs(3600),
            approval_poll_every: Duration::from_secs(300),
            approval_poll_batch: 200,
            directory_sweep_every: Some(Duration::from_secs(15 * 60)),
            reconcile_every: Some(Duration::from_secs(60 * 60)),
            clock: Clock::system(),
        }
    }
}

async fn traceparent(queue: &Queue, request_id: &str) -> Result<String, QueueError> {
    let mut conn = queue.connection();
    let t: Option<String> = conn.hget(queue.namespace().key(&keys::request(request_id)), fields::TRACEPARENT).await?;
    Ok(t.unwrap_or_default())
}

/// Rings every approval clock whose time came: one `approval-deadline` job per (request, due
/// time). Returns how many it enqueued.
pub async fn sweep_approvals(queue: &Queue, now_ms: u64) -> Result<usize, QueueError> {
    let mut conn = queue.connection();
    let due: Vec<(String, f64)> = conn
        .zrangebyscore_limit_withscores(queue.namespace().key(keys::APPROVALS_DUE), "-inf", now_ms, 0, 1000)
        .await?;
    let mut enqueued = 0;
    for (request_id, score) in due {
        let due_ms = score as u64;
        let next = Next::ApprovalDeadline { due_ms };
        let job = grantline_store::job(&request_id, &traceparent(queue, &request_id).await?, next, now_ms)
            .map_err(|e| QueueError::InvalidJob(e.to_string()))?
            .idempotency_key(format!("deadline:{request_id}:{due_ms}"));
        if let PushOutcome::Enqueued { .. } = queue.push(job).await? {
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Asks for a read-back of the ServiceNow approval records of up to `limit` waiting requests
/// (one `sync-approvals` job per request and poll period). Returns how many it enqueued.
pub async fn poll_approvals(queue: &Queue, now_ms: u64, every: Duration, limit: usize) -> Result<usize, QueueError> {
    if limit == 0 {
        return Ok(0);
    }
    let mut conn = queue.connection();
    let waiting: Vec<String> =
        conn.zrange(queue.namespace().key(keys::APPROVALS_DUE), 0, isize::try_from(limit).unwrap_or(200) - 1).await?;
    let period = now_ms / u64::try_from(every.as_millis()).unwrap_or(1).max(1);
    let mut enqueued = 0;
    for request_id in waiting {
        let job =
            grantline_store::job(&request_id, &traceparent(queue, &request_id).await?, Next::SyncApprovals, now_ms)
                .map_err(|e| QueueError::InvalidJob(e.to_string()))?
                .idempotency_key(format!("sync:{request_id}:{period}"));
        if let PushOutcome::Enqueued { .. } = queue.push(job).await? {
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// How many entries of an index one pass reads per call.
const PAGE: isize = 1000;

/// One pass of the removal safety net. Every grant past its end (plus `grace`) that is still
/// on the expiring index, and every removal on file as failed for good
/// (`keys::FAILED_REMOVALS`, with its own trigger), gets a `remove-access` job, at most one
/// per request and `retry_every` period (the idempotency key names the period): a removal
/// that keeps failing is tried again once per period, never forgotten and never hammered.
/// Returns how many removals it enqueued.
pub async fn sweep_expired(
    queue: &Queue,
    now_ms: u64,
    grace: Duration,
    retry_every: Duration,
) -> Result<usize, QueueError> {
    let cutoff = now_ms.saturating_sub(u64::try_from(grace.as_millis()).unwrap_or(0));
    let period = now_ms / u64::try_from(retry_every.as_millis()).unwrap_or(1).max(1);
    let mut conn = queue.connection();
    let mut due: Vec<(String, RemovalTrigger, bool)> = Vec::new();
    let mut offset = 0;
    loop {
        let page: Vec<String> =
            conn.zrangebyscore_limit(queue.namespace().key(keys::EXPIRING), "-inf", cutoff, offset, PAGE).await?;
        let n = page.len();
        due.extend(page.into_iter().map(|id| (id, RemovalTrigger::Expiry, false)));
        if n < PAGE as usize {
            break;
        }
        offset += PAGE;
    }
    let failed: std::collections::HashMap<String, String> =
        conn.hgetall(queue.namespace().key(keys::FAILED_REMOVALS)).await?;
    for (id, raw) in failed {
        let trigger = serde_json::from_str::<FailedRemoval>(&raw).map(|f| f.trigger).unwrap_or(RemovalTrigger::Expiry);
        match due.iter_mut().find(|(d, _, _)| *d == id) {
            // the failed removal's own trigger (an operator's revoke is not an expiry)
            Some(d) => *d = (id, trigger, true),
            None => due.push((id, trigger, true)),
        }
    }
    let mut enqueued = 0;
    for (request_id, trigger, retry) in due {
        // the removal joins the request's trace
        let next = Next::RemoveAccess { trigger, at_ms: None };
        let job = grantline_store::job(&request_id, &traceparent(queue, &request_id).await?, next, now_ms)
            .map_err(|e| QueueError::InvalidJob(e.to_string()))?
            .idempotency_key(format!("sweep:{request_id}:{period}"));
        if let PushOutcome::Enqueued { .. } = queue.push(job).await? {
            if retry {
                tracing::warn!(request_id, trigger = trigger.as_str(), "a removal that failed for good is tried again");
            } else {
                tracing::warn!(request_id, "expired grant had no removal; enqueued one");
            }
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Enqueues the periodic job of `kind` for the period `now_ms` falls in: one job per period
/// however many schedulers run (its idempotency key names the period). Returns whether it
/// enqueued one.
pub async fn periodic(queue: &Queue, kind: JobKind, now_ms: u64, every: Duration) -> Result<bool, QueueError> {
    use grantline_shared::jobs::{Reconcile, SweepDirectory};
    let period = now_ms / u64::try_from(every.as_millis()).unwrap_or(1).max(1);
    let job = match kind {
        JobKind::SweepDirectory => grantline_queue::NewJob::new(kind.as_str(), &SweepDirectory { period })?,
        JobKind::Reconcile => grantline_queue::NewJob::new(kind.as_str(), &Reconcile { period })?,
        other => return Err(QueueError::InvalidJob(format!("{other} is not a periodic job"))),
    }
    .idempotency_key(format!("{kind}:{period}"));
    Ok(matches!(queue.push(job).await?, PushOutcome::Enqueued { .. }))
}

/// Runs until `shutdown` resolves.
pub async fn run(queue: Queue, opts: SchedulerOptions, shutdown: impl Future<Output = ()>) -> Result<(), QueueError> {
    for kind in JobKind::ALL {
        queue.watch(kind.as_str()).await?;
    }
    tokio::pin!(shutdown);
    let mut last_poll: Option<u64> = None;
    loop {
        let now = opts.clock.now_ms();
        if let Err(e) = sweep_expired(&queue, now, opts.grace, opts.removal_retry_every).await {
            tracing::warn!(error = %e, "expired-grant sweep failed; will retry");
        }
        if let Err(e) = sweep_approvals(&queue, now).await {
            tracing::warn!(error = %e, "approval sweep failed; will retry");
        }
        for (kind, every) in
            [(JobKind::SweepDirectory, opts.directory_sweep_every), (JobKind::Reconcile, opts.reconcile_every)]
        {
            if let Some(every) = every
                && let Err(e) = periodic(&queue, kind, now, every).await
            {
                tracing::warn!(error = %e, kind = %kind, "periodic job not enqueued; will retry");
            }
        }
        let poll_ms = u64::try_from(opts.approval_poll_every.as_millis()).unwrap_or(u64::MAX);
        if last_poll.is_none_or(|at| now.saturating_sub(at) >= poll_ms) {
            match poll_approvals(&queue, now, opts.approval_poll_every, opts.approval_poll_batch).await {
                Ok(_) => last_poll = Some(now),
                Err(e) => tracing::warn!(error = %e, "approval poll failed; will retry"),
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(opts.sweep_every) => {}
        }
    }
}
