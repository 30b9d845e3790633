//! The backend's tower layer: it sees every result of the worker's service stack and
//! settles the job in Redis before the task counts as finished. A success is acknowledged
//! together with the hand-off the handler returned; a failure is recorded and retried or
//! buried per the queue's retry policy.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::job::{Handoff, IntoHandoff, JobError};
use crate::keys::QueueKeys;
use crate::queue::{AckOutcome, FailOutcome, Queue};

/// The lease a task was fetched under, carried in the task's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub member: String,
    pub id: String,
    pub attempt: u32,
}

#[derive(Clone, Debug)]
pub struct AckLayer {
    queue: Queue,
    keys: QueueKeys,
}

impl AckLayer {
    pub(crate) fn new(queue: Queue, keys: QueueKeys) -> Self {
        Self { queue, keys }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AckService { inner, queue: self.queue.clone(), keys: self.keys.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AckService<S> {
    inner: S,
    queue: Queue,
    keys: QueueKeys,
}

impl<S, Args, Res> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>, Response = Res>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
    Res: IntoHandoff + Send + 'static,
    Args: Send + 'static,
{
    type Response = Res;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Res, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let lease = task.data().get::<Lease>().cloned();
        let fut = self.inner.call(task);
        let (queue, keys) = (self.queue.clone(), self.keys.clone());
        async move {
            let res = fut.await.map_err(Into::into);
            if let Some(lease) = lease {
                let outcome = match &res {
                    Ok(r) => Ok(r.handoff()),
                    Err(e) => Err(classify(e.as_ref())),
                };
                settle(&queue, &keys, &lease, outcome).await;
                queue.forget_lease(&keys.name, &lease.member);
            }
            res
        }
        .boxed()
    }
}

/// Writes the outcome of one attempt, retrying while Redis is unreachable. If it cannot be
/// written in time, the lease expires and another worker runs the job again: handlers are
/// idempotent, and the lease check keeps the hand-off from being applied twice.
async fn settle(queue: &Queue, keys: &QueueKeys, lease: &Lease, outcome: Result<Handoff, JobError>) {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(25);
    loop {
        let written = match &outcome {
            Ok(handoff) => match queue.ack(keys, &lease.member, &lease.id, handoff).await {
                Ok(AckOutcome::Done) => Ok(()),
                Ok(AckOutcome::Stale) => {
                    tracing::warn!(queue = %keys, job = %lease.id, attempt = lease.attempt,
                        "lease lost before the acknowledgement; the job was handed to another worker");
                    Ok(())
                }
                Ok(AckOutcome::GuardFailed(index)) => {
                    // the state the handler acted on changed under it (a concurrent step of the
                    // same request committed first): a lost race, not a failure. It runs again
                    // on fresh state soon, with its attempt given back; a job that keeps losing
                    // for longer than the queue's max_wait is buried like any other wait
                    let err = JobError::wait(
                        "queue.guard_failed",
                        format!("guard {index} of the hand-off did not hold; the job will run again on fresh state"),
                        Duration::from_millis(fastrand::u64(10..=60)),
                    );
                    record_failure(queue, keys, lease, &err, "conflict").await
                }
                Err(e) => Err(e),
            },
            Err(err) => record_failure(queue, keys, lease, err, err.class()).await,
        };
        match written {
            Ok(()) => return,
            Err(e) if started.elapsed() < queue.config().ack_retry_for => {
                tracing::warn!(queue = %keys, job = %lease.id, error = %e, "could not record the job's outcome; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(queue = %keys, job = %lease.id, error = %e,
                    "gave up recording the job's outcome; its lease will expire and it will run again");
                return;
            }
        }
    }
}

async fn record_failure(
    queue: &Queue,
    keys: &QueueKeys,
    lease: &Lease,
    err: &JobError,
    class: &str,
) -> Result<(), crate::QueueError> {
    match queue.fail(keys, &lease.member, &lease.id, lease.attempt, err, class).await? {
        FailOutcome::Retry { .. } => {
            tracing::info!(queue = %keys, job = %lease.id, attempt = lease.attempt, code = err.code(), "attempt failed; retry scheduled")
        }
        FailOutcome::Dead { dead_letter_id } => {
            tracing::error!(queue = %keys, job = %lease.id, attempt = lease.attempt, code = err.code(), dead_letter = %dead_letter_id,
                "job moved to the dead letters")
        }
        FailOutcome::Stale => {
            tracing::warn!(queue = %keys, job = %lease.id, "lease lost before the failure was recorded")
        }
    }
    Ok(())
}

/// A `JobError` keeps its class; anything else (including a caught panic) is transient.
fn classify(e: &(dyn std::error::Error + Send + Sync + 'static)) -> JobError {
    if let Some(j) = e.downcast_ref::<JobError>() {
        return j.clone();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(j) = s.downcast_ref::<JobError>() {
            return j.clone();
        }
        source = s.source();
    }
    JobError::transient("handler.error", e.to_string())
}
