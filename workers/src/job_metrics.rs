//! Counts every job attempt: its duration (`grantline_job_duration_seconds{kind}`) and how it
//! ended (`grantline_job_outcomes_total{kind,outcome}`), see [`grantline_shared::metrics`].
//! The layer sits outside `catch_panic`, so a panic is counted as `panicked`.

use std::error::Error as StdError;
use std::ops::Deref;
use std::task::{Context, Poll};
use std::time::Instant;

use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use grantline_queue::JobError;
use grantline_shared::metrics::{self, JobOutcome};

/// The outcome of an attempt that failed with `err`.
pub fn outcome_of(err: &(dyn StdError + 'static)) -> JobOutcome {
    match err.downcast_ref::<JobError>() {
        Some(JobError::Transient { .. }) => JobOutcome::Retried,
        Some(JobError::Throttled { .. }) => JobOutcome::Throttled,
        Some(JobError::Wait { .. }) => JobOutcome::Waited,
        Some(JobError::Permanent { .. }) => JobOutcome::Failed,
        None => JobOutcome::Panicked,
    }
}

/// The tower layer that counts the attempts of one kind.
#[derive(Clone, Copy, Debug)]
pub struct JobMetricsLayer {
    kind: &'static str,
}

impl JobMetricsLayer {
    pub fn new(kind: &'static str) -> Self {
        Self { kind }
    }
}

impl<S> Layer<S> for JobMetricsLayer {
    type Service = JobMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JobMetricsService { inner, kind: self.kind }
    }
}

#[derive(Clone, Debug)]
pub struct JobMetricsService<S> {
    inner: S,
    kind: &'static str,
}

impl<S, Args, R, E> Service<Task<Args>> for JobMetricsService<S>
where
    S: Service<Task<Args>, Response = R, Error = E>,
    S::Future: Send + 'static,
    R: Send + 'static,
    E: Deref<Target = dyn StdError + Send + Sync> + Send + 'static,
{
    type Response = R;
    type Error = E;
    type Future = BoxFuture<'static, Result<R, E>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let kind = self.kind;
        let fut = self.inner.call(task);
        async move {
            let started = Instant::now();
            let res = fut.await;
            let outcome = match &res {
                Ok(_) => JobOutcome::Completed,
                Err(e) => outcome_of(e.deref()),
            };
            metrics::job_finished(kind, outcome, started.elapsed());
            res
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_error_class() {
        let boxed = |e: JobError| -> Box<dyn StdError + Send + Sync> { Box::new(e) };
        assert_eq!(outcome_of(boxed(JobError::transient("c", "m")).as_ref()), JobOutcome::Retried);
        assert_eq!(outcome_of(boxed(JobError::permanent("c", "m")).as_ref()), JobOutcome::Failed);
        assert_eq!(outcome_of(boxed(JobError::throttled("c", "m", None)).as_ref()), JobOutcome::Throttled);
        assert_eq!(
            outcome_of(boxed(JobError::wait("c", "m", std::time::Duration::from_secs(1))).as_ref()),
            JobOutcome::Waited
        );
        let panic: Box<dyn StdError + Send + Sync> = "the handler panicked".into();
        assert_eq!(outcome_of(panic.as_ref()), JobOutcome::Panicked);
    }
}
