//! `RedisBackend<T>`: the apalis `Backend` of one queue. It leases jobs in batches, blocks
//! on a wake-up list while idle (so a pushed job starts within a round trip, and a delayed
//! one at its due time), and never fails the worker on a Redis error: it backs off and
//! carries on. On shutdown it gives back jobs it fetched but never started.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use std::future::Future;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::QueueError;
use crate::ack::{AckLayer, Lease};
use crate::config::QueueConfig;
use crate::connection::Blocker;
use crate::job::{Envelope, JobError, NewJob, PushOutcome, RunAt, now_ms};
use crate::keys::QueueKeys;
use crate::queue::{Queue, ms, string};
use crate::scripts::SCRIPTS;

struct Fetched<T> {
    tasks: Vec<Task<T>>,
    server_now: u64,
    next_due: Option<u64>,
}

/// The backend of one queue, for jobs whose payload is `T`.
pub struct RedisBackend<T> {
    queue: Queue,
    keys: QueueKeys,
    batch: usize,
    buffer: VecDeque<Task<T>>,
    fetching: Option<BoxFuture<'static, Result<Fetched<T>, QueueError>>>,
    waiting: Option<BoxFuture<'static, Option<Blocker>>>,
    /// Fires at the earliest due time of the delayed set. Redis checks blocked commands'
    /// timeouts only when its event loop wakes (every 100 ms at the default `hz`), so due
    /// times are kept by a local timer while the BLPOP stays pending for wake-ups.
    due: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last fetch returned work: fetch again without waiting.
    more: bool,
    closing: Option<BoxFuture<'static, ()>>,
    /// The connection of the wake-up wait (on a cluster, to the namespace's master).
    blocker: Option<Blocker>,
    failures: u32,
    sink: Vec<NewJob>,
    sink_fut: Option<BoxFuture<'static, Result<(), QueueError>>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for RedisBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("queue", &self.keys.name).field("batch", &self.batch).finish()
    }
}

// Nothing in the backend is pinned structurally: futures are boxed and `T` is only data.
impl<T> Unpin for RedisBackend<T> {}

impl<T> Clone for RedisBackend<T> {
    fn clone(&self) -> Self {
        Self::with_keys(self.queue.clone(), self.keys.clone(), self.batch)
    }
}

impl<T> RedisBackend<T> {
    /// The backend of queue `name` (a stable kind string, never a type name).
    pub fn new(queue: &Queue, name: &str) -> Self {
        Self::with_keys(queue.clone(), queue.keys(name), queue.config().fetch_batch)
    }

    fn with_keys(queue: Queue, keys: QueueKeys, batch: usize) -> Self {
        Self {
            queue,
            keys,
            batch,
            buffer: VecDeque::new(),
            fetching: None,
            waiting: None,
            due: None,
            more: false,
            closing: None,
            blocker: None,
            failures: 0,
            sink: Vec::new(),
            sink_fut: None,
            _t: PhantomData,
        }
    }

    /// Jobs leased per fetch. Keep it near the worker's concurrency: fetched jobs wait in
    /// this process (leased, renewed) until a slot is free.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    pub fn queue_name(&self) -> &str {
        &self.keys.name
    }

    fn start_wait(&mut self, timeout: Duration) {
        let connector = self.queue.inner.connector.clone();
        let conn = self.blocker.take();
        let signal = self.keys.signal.clone();
        let response_timeout = self.queue.config().response_timeout;
        self.waiting = Some(
            async move {
                let conn = match conn {
                    Some(c) => c,
                    None => match connector.blocker(timeout, response_timeout).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "wake-up connection unavailable; polling instead");
                            tokio::time::sleep(timeout.min(Duration::from_millis(250))).await;
                            return None;
                        }
                    },
                };
                conn.wait(&signal, timeout).await
            }
            .boxed(),
        );
    }

    fn start_backoff(&mut self) {
        let exp = self.failures.min(6);
        let base = Duration::from_millis(25u64 << exp).min(Duration::from_secs(1));
        let delay = base + Duration::from_millis(fastrand::u64(0..=25));
        let conn = self.blocker.take();
        self.waiting = Some(
            async move {
                tokio::time::sleep(delay).await;
                conn
            }
            .boxed(),
        );
    }
}

impl<T: DeserializeOwned + Send + 'static> RedisBackend<T> {
    fn start_fetch(&mut self) {
        let (queue, keys, batch) = (self.queue.clone(), self.keys.clone(), self.batch);
        self.fetching = Some(fetch::<T>(queue, keys, batch).boxed());
    }
}

async fn fetch<T: DeserializeOwned>(queue: Queue, keys: QueueKeys, batch: usize) -> Result<Fetched<T>, QueueError> {
    queue.serve(&keys.name).await?;
    let cfg = queue.config();
    let v = queue
        .invoke(
            &SCRIPTS.fetch,
            &[keys.ready.clone(), keys.inflight.clone(), keys.jobs.clone(), keys.delayed.clone(), keys.signal.clone()],
            &[
                batch.to_string(),
                ms(cfg.lease).to_string(),
                queue.worker_id().to_owned(),
                cfg.promote_batch.to_string(),
            ],
        )
        .await?;
    let items = match v {
        redis::Value::Array(items) => items,
        other => return Err(QueueError::Protocol(format!("unexpected reply from fetch: {other:?}"))),
    };
    let num = |i: usize| -> i64 { items.get(i).and_then(string).and_then(|s| s.parse().ok()).unwrap_or(-1) };
    let server_now = u64::try_from(num(0)).unwrap_or_else(|_| now_ms());
    let next_due = u64::try_from(num(1)).ok();
    let mut tasks = Vec::new();
    for chunk in items.get(2..).unwrap_or_default().chunks_exact(4) {
        let (Some(id), Some(attempt), Some(env)) = (string(&chunk[0]), string(&chunk[1]), string(&chunk[2])) else {
            continue;
        };
        let attempt: u32 = attempt.parse().unwrap_or(1);
        let member = format!("{id}|{attempt}|{}", queue.worker_id());
        queue.hold_lease(&keys.name, &member);
        let decoded = serde_json::from_str::<Envelope<'_>>(&env)
            .map_err(|e| e.to_string())
            .and_then(|e| serde_json::from_str::<T>(e.p.get()).map(|args| (args, e.m)).map_err(|e| e.to_string()));
        match decoded {
            Ok((args, meta)) => {
                let lease = Lease { member, id: id.clone(), attempt };
                let task = TaskBuilder::new(args)
                    .task_id(TaskId::from_string(id))
                    .attempt(usize::try_from(attempt.saturating_sub(1)).unwrap_or(0))
                    .with_metadata(MetadataStore::from_map(meta.into_iter().collect()))
                    .data(lease)
                    .build();
                tasks.push(task);
            }
            Err(reason) => {
                // a body this worker cannot read will not improve with retries
                let err = JobError::permanent("queue.undecodable", format!("job body does not decode: {reason}"));
                let r = queue.fail(&keys, &member, &id, attempt, &err, err.class()).await;
                queue.forget_lease(&keys.name, &member);
                if let Err(e) = r {
                    tracing::warn!(queue = %keys, job = %id, error = %e, "could not bury an undecodable job; its lease will expire");
                }
            }
        }
    }
    Ok(Fetched { tasks, server_now, next_due })
}

async fn release(queue: Queue, keys: QueueKeys, members: Vec<String>) {
    for attempt in 0..5u32 {
        let r = queue
            .invoke(&SCRIPTS.release, &[keys.inflight.clone(), keys.ready.clone(), keys.signal.clone()], &members)
            .await;
        match r {
            Ok(_) => {
                tracing::info!(queue = %keys, returned = members.len(), "returned unstarted jobs to the queue");
                break;
            }
            Err(e) => {
                tracing::warn!(queue = %keys, error = %e, "could not return unstarted jobs; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    for m in &members {
        queue.forget_lease(&keys.name, m);
    }
}

impl<T: DeserializeOwned + Send + 'static> Backend for RedisBackend<T> {
    type Task = Task<T>;
    type Error = QueueError;

    fn poll_ready(&mut self, _cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            if let Some(task) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(task)));
            }
            if let Some(f) = self.fetching.as_mut() {
                let r = match f.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                self.fetching = None;
                match r {
                    Ok(fetched) => {
                        self.failures = 0;
                        if fetched.tasks.is_empty() {
                            let idle = self.queue.config().idle_wait;
                            self.due = fetched
                                .next_due
                                .map(|due| Duration::from_millis(due.saturating_sub(fetched.server_now)))
                                .filter(|d| *d < idle)
                                .map(|d| Box::pin(tokio::time::sleep(d)));
                            if self.waiting.is_none() {
                                self.start_wait(idle);
                            }
                        } else {
                            // there may be more: fetch again as soon as these are handed out
                            self.more = true;
                            self.buffer.extend(fetched.tasks);
                        }
                    }
                    Err(e) => {
                        self.failures = self.failures.saturating_add(1);
                        if self.failures == 1 || self.failures.is_multiple_of(20) {
                            tracing::warn!(queue = %self.keys, error = %e, failures = self.failures, "fetch failed; backing off");
                        }
                        self.start_backoff();
                    }
                }
                continue;
            }
            let mut wake = std::mem::take(&mut self.more) || (self.waiting.is_none() && self.due.is_none());
            if let Some(w) = self.waiting.as_mut()
                && let Poll::Ready(conn) = w.poll_unpin(cx)
            {
                self.blocker = conn;
                self.waiting = None;
                wake = true;
            }
            if let Some(t) = self.due.as_mut()
                && t.as_mut().poll(cx).is_ready()
            {
                // the wake-up wait stays pending; the fetch promotes what fell due
                self.due = None;
                wake = true;
            }
            if !wake {
                return Poll::Pending;
            }
            self.due = None;
            self.start_fetch();
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Some(c) = self.closing.as_mut() {
                if c.poll_unpin(cx).is_pending() {
                    return Poll::Pending;
                }
                self.closing = None;
                return Poll::Ready(Ok(()));
            }
            if let Some(f) = self.fetching.as_mut() {
                // a fetch in flight may have leased jobs: they must be given back too
                match f.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => {
                        self.fetching = None;
                        if let Ok(fetched) = r {
                            self.buffer.extend(fetched.tasks);
                        }
                    }
                }
            }
            self.waiting = None;
            self.due = None;
            if self.buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let members: Vec<String> =
                self.buffer.drain(..).filter_map(|t| t.data().get::<Lease>().map(|l| l.member.clone())).collect();
            self.closing = Some(release(self.queue.clone(), self.keys.clone(), members).boxed());
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> BackendConfig for RedisBackend<T> {
    type Args = T;
    type Id = String;
    type Kind = Ephemeral;
    type Config = QueueConfig;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        self.queue.config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer::new(self.queue.clone(), self.keys.clone())
    }
}

/// Producing through apalis's `TaskSink` (push, push_bulk, push_task): a task's id, run_at,
/// idempotency key and metadata are kept. A duplicate is an error, never dropped silently.
impl<T: Serialize + Send + 'static> futures::Sink<Task<T>> for RedisBackend<T> {
    type Error = QueueError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.as_mut().poll_sink(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, task: Task<T>) -> Result<(), Self::Error> {
        let mut job = NewJob::new(self.keys.name.clone(), &task.args)?;
        if let Some(id) = task.task_id() {
            job = job.with_id(id.to_string());
        }
        if let Some(key) = task.idempotency_key() {
            job = job.idempotency_key(key);
        }
        if let Some(at) = task.run_at() {
            job = job.run_at(RunAt::At(at.saturating_mul(1000)));
        }
        for (k, v) in task.metadata().iter() {
            job.metadata.insert(k.clone(), v.clone());
        }
        self.sink.push(job);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.sink_fut.is_none() && !self.sink.is_empty() {
            let jobs = std::mem::take(&mut self.sink);
            let queue = self.queue.clone();
            self.sink_fut = Some(
                async move {
                    for outcome in queue.push_many(jobs).await? {
                        if let PushOutcome::Duplicate { id, existing } = outcome {
                            return Err(QueueError::Duplicate { id, existing });
                        }
                    }
                    Ok(())
                }
                .boxed(),
            );
        }
        self.as_mut().poll_sink(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        futures::Sink::<Task<T>>::poll_flush(self, cx)
    }
}

impl<T> RedisBackend<T> {
    fn poll_sink(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        match self.sink_fut.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(f) => {
                let r = futures::ready!(f.poll_unpin(cx));
                self.sink_fut = None;
                Poll::Ready(r)
            }
        }
    }
}
