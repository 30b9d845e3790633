//! The scheduler: time. Its output is always jobs. It watches every queue (reaping expired
//! leases and applying retention even when no worker of a kind runs), and runs the safety
//! net for time-bound grants: any grant past its end without a removal gets one. Several
//! schedulers may run at once: every job it enqueues carries an idempotency key.

use std::future::Future;
use std::time::Duration;

use grantline_queue::{PushOutcome, Queue, QueueError};
use grantline_shared::JobKind;
use grantline_shared::flow::Next;
use grantline_shared::jobs::RemovalTrigger;
use grantline_shared::request::{fields, keys};
use redis::AsyncCommands;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub sweep_every: Duration,
    /// A grant this long past its end without a removal is swept (the delayed removal job
    /// normally fires first; the grace keeps the sweep from racing it).
    pub grace: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self { sweep_every: Duration::from_secs(30), grace: Duration::from_secs(60) }
    }
}

/// One pass of the expired-grant safety net. Returns how many removals it enqueued.
pub async fn sweep_expired(queue: &Queue, now_ms: u64, grace: Duration) -> Result<usize, QueueError> {
    let cutoff = now_ms.saturating_sub(u64::try_from(grace.as_millis()).unwrap_or(0));
    let mut conn = queue.connection();
    let due: Vec<String> =
        conn.zrangebyscore_limit(queue.namespace().key(keys::EXPIRING), "-inf", cutoff, 0, 1000).await?;
    let mut enqueued = 0;
    for request_id in due {
        // the removal joins the request's trace
        let traceparent: Option<String> =
            conn.hget(queue.namespace().key(&keys::request(&request_id)), fields::TRACEPARENT).await?;
        let next = Next::RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: None };
        let job = grantline_store::job(&request_id, traceparent.as_deref().unwrap_or_default(), next, now_ms)
            .map_err(|e| QueueError::InvalidJob(e.to_string()))?
            .idempotency_key(format!("sweep:{request_id}"));
        if let PushOutcome::Enqueued { .. } = queue.push(job).await? {
            tracing::warn!(request_id, "expired grant had no removal; enqueued one");
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Runs until `shutdown` resolves.
pub async fn run(queue: Queue, opts: SchedulerOptions, shutdown: impl Future<Output = ()>) -> Result<(), QueueError> {
    for kind in JobKind::ALL {
        queue.watch(kind.as_str()).await?;
    }
    tokio::pin!(shutdown);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Err(e) = sweep_expired(&queue, now, opts.grace).await {
            tracing::warn!(error = %e, "expired-grant sweep failed; will retry");
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(opts.sweep_every) => {}
        }
    }
}
