//! The queue client: producers, the atomic commit and hand-off, dead-letter
//! administration and metrics. Cheap to clone; one per process is enough.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::{AsyncCommands, Value};
use serde::Serialize;

use crate::QueueError;
use crate::config::QueueConfig;
use crate::connection::{Connector, QueueConnection, Target};
use crate::job::{
    AttemptError, CommitOutcome, Envelope, Guard, Handoff, JobError, NewJob, PushOutcome, RunAt, new_id, now_ms,
    successor_id, validate_id,
};
use crate::keys::{Namespace, QueueKeys};
use crate::scripts::SCRIPTS;

/// A handle on one namespace of queues in one Redis or one Redis Cluster (where the
/// namespace is one hash slot, so one master carries it).
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("namespace", &self.inner.cfg.namespace)
            .field("worker", &self.inner.worker_id)
            .finish()
    }
}

pub(crate) struct Inner {
    pub conn: QueueConnection,
    /// Opens the idle consumers' connections for their blocking waits.
    pub connector: Connector,
    pub cfg: QueueConfig,
    pub ns: Namespace,
    pub worker_id: String,
    /// Lease members this process holds, per queue; renewed by one timer.
    pub leases: Mutex<HashMap<String, HashSet<String>>>,
    /// Queues this process consumes: the maintenance loop reaps and trims them.
    pub served: Mutex<BTreeSet<String>>,
    /// Queue names already recorded in the namespace's registry.
    pub registered: Mutex<HashSet<String>>,
    pub maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut m) = self.maintenance.lock()
            && let Some(h) = m.take()
        {
            h.abort();
        }
    }
}

/// The outcome of acknowledging a leased job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    Done,
    /// The lease was gone (reaped after a stall): the job is another worker's now.
    Stale,
    GuardFailed(usize),
}

/// What happened to a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    Retry { due_ms: u64 },
    Dead { dead_letter_id: String },
    Stale,
}

/// Point-in-time figures of one queue, each read in O(1).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueMetrics {
    pub queue: String,
    pub ready: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead: u64,
    /// Age of the oldest ready job, ms (0 when none is ready).
    pub oldest_ready_age_ms: u64,
    pub enqueued_total: u64,
    pub completed_total: u64,
    pub retried_total: u64,
    pub throttled_total: u64,
    /// Waits for a shared budget or a busy lock (no attempt spent).
    pub waited_total: u64,
    /// Hand-offs that found the state they were based on changed by a concurrent commit: run
    /// again on fresh state, no attempt spent.
    pub conflicted_total: u64,
    pub recovered_total: u64,
    pub dead_total: u64,
    pub redriven_total: u64,
}

/// A dead letter as stored in the queue's dead-letter stream.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// Stream entry id (used to redrive or discard).
    pub id: String,
    pub queue: String,
    pub job_id: String,
    pub attempts: u32,
    pub reason: String,
    pub errors: Vec<AttemptError>,
    pub payload: serde_json::Value,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// ms since the epoch
    pub at: u64,
}

impl Queue {
    /// Connects to one Redis (`redis://host:port/db`) or to a Redis Cluster
    /// (`redis+cluster://host1:port1,host2:port2/`, any reachable subset of its nodes as
    /// seeds). The first connection must succeed; afterwards the client reconnects by
    /// itself, and on a cluster follows redirects and failovers.
    pub async fn connect(url: &str, cfg: QueueConfig) -> Result<Queue, QueueError> {
        Self::open(&Target::parse(url)?, cfg).await
    }

    /// Connects to a Redis Cluster through its seed nodes, each `redis://[user:password@]host:port`
    /// (the same as [`Queue::connect`] with a `redis+cluster://` URL).
    pub async fn connect_cluster<S: AsRef<str>>(seeds: &[S], cfg: QueueConfig) -> Result<Queue, QueueError> {
        if seeds.is_empty() {
            return Err(QueueError::Config("a cluster needs at least one seed node".into()));
        }
        Self::open(&Target::Cluster(seeds.iter().map(|s| s.as_ref().to_owned()).collect()), cfg).await
    }

    async fn open(target: &Target, cfg: QueueConfig) -> Result<Queue, QueueError> {
        cfg.validate().map_err(QueueError::Config)?;
        let (conn, connector) = crate::connection::open(target, &cfg).await?;
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty() && h.len() <= 40);
        let worker_id = match host {
            Some(h) => format!("{h}-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            None => format!("{}-{:08x}", std::process::id(), fastrand::u32(..)),
        };
        let worker_id = worker_id.replace(|c: char| c == '|' || c.is_whitespace(), "_");
        Ok(Queue {
            inner: Arc::new(Inner {
                conn,
                connector,
                ns: Namespace::new(&cfg.namespace),
                cfg,
                worker_id,
                leases: Mutex::default(),
                served: Mutex::default(),
                registered: Mutex::default(),
                maintenance: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.inner.cfg
    }

    pub fn namespace(&self) -> &Namespace {
        &self.inner.ns
    }

    /// This process's worker identity: new at every start, part of every lease it takes.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// A multiplexed connection for the caller's own reads and writes in the namespace (on a
    /// cluster, commands go to the master of the namespace's slot).
    pub fn connection(&self) -> QueueConnection {
        self.inner.conn.clone()
    }

    /// Whether this queue runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.is_cluster()
    }

    /// Waits until `replicas` replicas of the namespace's master have every write this
    /// process sent it so far, or `timeout` passes; returns how many have them. A producer
    /// that tells someone outside "accepted" (a webhook's 202, a decision's 200) can call it
    /// after its commit, so that a failover right after cannot take back what it confirmed:
    /// replication is asynchronous, and a write not yet on a replica is gone when that replica
    /// takes over. It blocks this process's connection to the master meanwhile, so keep
    /// `timeout` short (tens of milliseconds: a healthy replica answers within a round trip).
    pub async fn wait_replicated(&self, replicas: u32, timeout: Duration) -> Result<u32, QueueError> {
        let mut conn = self.inner.conn.clone();
        Ok(conn.wait_replicas(self.inner.ns.slot(), replicas, timeout).await?)
    }

    pub fn keys(&self, queue: &str) -> QueueKeys {
        self.inner.ns.queue(queue)
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// Enqueues one job. A taken idempotency key or id is reported, not dropped silently.
    pub async fn push(&self, job: NewJob) -> Result<PushOutcome, QueueError> {
        self.push_many(vec![job]).await?.pop().ok_or_else(|| QueueError::Protocol("a push got no outcome".into()))
    }

    /// Enqueues many jobs, each atomic on its own with its own outcome, in one pipelined
    /// round trip: one script call per queue and chunk of jobs.
    pub async fn push_many(&self, jobs: Vec<NewJob>) -> Result<Vec<PushOutcome>, QueueError> {
        const CHUNK: usize = 500;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // group by queue, keeping each job's position for its outcome
        let mut by_queue: BTreeMap<String, Vec<(usize, NewJob)>> = BTreeMap::new();
        for (i, job) in jobs.into_iter().enumerate() {
            by_queue.entry(job.queue.clone()).or_default().push((i, job));
        }
        let total = by_queue.values().map(Vec::len).sum();
        let ttl = ms(self.inner.cfg.idempotency_ttl).max(1).to_string();
        let mut pipe = redis::pipe();
        let mut calls: Vec<Vec<(usize, String)>> = Vec::new();
        for (queue, entries) in &by_queue {
            self.register(queue).await?;
            let q = self.inner.ns.queue(queue);
            for chunk in entries.chunks(CHUNK) {
                let mut keys =
                    vec![q.ready.clone(), q.delayed.clone(), q.jobs.clone(), q.signal.clone(), q.stats.clone()];
                let mut args = Vec::with_capacity(1 + chunk.len() * 5);
                args.push(ttl.clone());
                let mut ids = Vec::with_capacity(chunk.len());
                for (pos, job) in chunk {
                    let id = job.id.clone().unwrap_or_else(new_id);
                    validate_id(&id)?;
                    let (due, delay) = match job.run_at {
                        RunAt::Now => (0, 0),
                        RunAt::After(d) => (0, ms(d).max(1)),
                        RunAt::At(t) => (t, 0),
                    };
                    let idem = match &job.idempotency_key {
                        Some(k) if k.is_empty() || k.len() > 512 => {
                            return Err(QueueError::InvalidJob("idempotency key must be 1-512 bytes".into()));
                        }
                        Some(k) => {
                            keys.push(q.idempotency(k));
                            keys.len().to_string()
                        }
                        None => "0".to_owned(),
                    };
                    args.extend([id.clone(), job.envelope()?, due.to_string(), delay.to_string(), idem]);
                    ids.push((*pos, id));
                }
                let mut inv = SCRIPTS.push.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                pipe.invoke_script(&inv);
                calls.push(ids);
            }
        }
        let mut conn = self.inner.conn.clone();
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                SCRIPTS.push.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<Option<PushOutcome>> = vec![None; total];
        for (reply, ids) in replies.into_iter().zip(calls) {
            let results = match reply {
                Value::Array(items) => items,
                other => return Err(QueueError::Protocol(format!("unexpected reply from push: {other:?}"))),
            };
            for ((pos, id), r) in ids.into_iter().zip(results) {
                let existing = string(&r).unwrap_or_default();
                out[pos] = Some(if existing.is_empty() {
                    PushOutcome::Enqueued { id }
                } else {
                    PushOutcome::Duplicate { id, existing }
                });
            }
        }
        out.into_iter().map(|o| o.ok_or_else(|| QueueError::Protocol("a job got no outcome".into()))).collect()
    }

    /// Applies jobs, writes and guards as one atomic step (for example: a request record,
    /// its audit entry and its first job). Nothing is written when a guard fails or an
    /// idempotency key is taken.
    pub async fn commit(&self, h: Handoff) -> Result<CommitOutcome, QueueError> {
        for j in &h.jobs {
            self.register(&j.queue).await?;
        }
        let (keys, args, ids) = self.build_exec(None, &h)?;
        let v = self.invoke(&SCRIPTS.exec, &keys, &args).await?;
        parse_commit(v, ids)
    }

    pub(crate) async fn ack(
        &self,
        keys: &QueueKeys,
        member: &str,
        id: &str,
        h: &Handoff,
    ) -> Result<AckOutcome, QueueError> {
        for j in &h.jobs {
            self.register(&j.queue).await?;
        }
        let (k, args, ids) = self.build_exec(Some((keys, member, id)), h)?;
        let v = self.invoke(&SCRIPTS.exec, &k, &args).await?;
        Ok(match parse_commit(v, ids)? {
            CommitOutcome::Applied { .. } => AckOutcome::Done,
            CommitOutcome::GuardFailed { index } => AckOutcome::GuardFailed(index),
            CommitOutcome::Duplicate { .. } => AckOutcome::Stale,
        })
    }

    /// Records a failed attempt of a leased job: retry per the queue's policy, or bury it.
    /// `class` is the error's own (`JobError::class`), or `conflict` for a hand-off whose guard
    /// did not hold: waited out like a `wait` (no attempt spent), counted apart (`conflicted`).
    pub(crate) async fn fail(
        &self,
        keys: &QueueKeys,
        member: &str,
        id: &str,
        attempt: u32,
        err: &JobError,
        class: &str,
    ) -> Result<FailOutcome, QueueError> {
        let policy = self.inner.cfg.retry_policy(&keys.name);
        let delay = match err {
            JobError::Throttled { retry_after, .. } => retry_after.unwrap_or(policy.base).max(Duration::from_millis(1)),
            JobError::Wait { after, .. } => (*after).max(Duration::from_millis(1)),
            other => policy.delay(attempt, other.retry_after()),
        };
        let line = serde_json::to_string(&AttemptError {
            attempt,
            at: now_ms(),
            class: err.class().to_owned(),
            code: err.code().to_owned(),
            message: err.message().to_owned(),
            worker: self.inner.worker_id.clone(),
        })
        .map_err(QueueError::Encode)?;
        let mut k = vec![
            keys.inflight.clone(),
            keys.jobs.clone(),
            keys.delayed.clone(),
            keys.errors.clone(),
            keys.dead.clone(),
            keys.stats.clone(),
            keys.signal.clone(),
        ];
        let tmpl = self.alert_keys(&keys.name, &mut k).await?;
        let args = vec![
            member.to_owned(),
            id.to_owned(),
            attempt.to_string(),
            class.to_owned(),
            ms(delay).to_string(),
            policy.max_attempts.to_string(),
            ms(policy.max_wait).to_string(),
            line,
            keys.name.clone(),
            tmpl,
        ];
        let v = self.invoke(&SCRIPTS.fail, &k, &args).await?;
        let parts = strings(&v);
        match parts.first().map(String::as_str) {
            Some("retry") => Ok(FailOutcome::Retry { due_ms: parts.get(1).and_then(|s| s.parse().ok()).unwrap_or(0) }),
            Some("dead") => Ok(FailOutcome::Dead { dead_letter_id: parts.get(1).cloned().unwrap_or_default() }),
            Some("stale") => Ok(FailOutcome::Stale),
            _ => Err(QueueError::Protocol(format!("unexpected reply from fail: {v:?}"))),
        }
    }

    /// When a dead-letter queue is configured (and is not this queue), appends its keys and
    /// returns the alert payload template the scripts fill in.
    async fn alert_keys(&self, queue: &str, keys: &mut Vec<String>) -> Result<String, QueueError> {
        match &self.inner.cfg.dead_letter_queue {
            Some(dlq) if dlq != queue => {
                self.register(dlq).await?;
                let a = self.inner.ns.queue(dlq);
                keys.extend([a.ready, a.jobs, a.signal, a.stats]);
                let payload = format!(r#"{{"queue":"{queue}","job_id":"__JOB__","dead_letter_id":"__XID__"}}"#);
                Ok(format!(r#"{{"p":{payload},"c":{}}}"#, now_ms()))
            }
            _ => Ok(String::new()),
        }
    }

    /// Returns expired leases of a queue to its ready list (or buries jobs whose last
    /// attempt expired). Returns (requeued, buried).
    pub async fn reap(&self, queue: &str) -> Result<(u64, u64), QueueError> {
        let keys = self.inner.ns.queue(queue);
        let policy = self.inner.cfg.retry_policy(queue);
        let mut k = vec![
            keys.inflight.clone(),
            keys.jobs.clone(),
            keys.ready.clone(),
            keys.errors.clone(),
            keys.dead.clone(),
            keys.stats.clone(),
            keys.signal.clone(),
        ];
        let tmpl = self.alert_keys(queue, &mut k).await?;
        let (mut requeued, mut buried) = (0, 0);
        loop {
            let args = vec![policy.max_attempts.to_string(), "500".to_owned(), queue.to_owned(), tmpl.clone()];
            let v = self.invoke(&SCRIPTS.reap, &k, &args).await?;
            let n = ints(&v);
            let (r, b) = (n.first().copied().unwrap_or(0), n.get(1).copied().unwrap_or(0));
            requeued += r;
            buried += b;
            if r + b < 500 {
                break;
            }
        }
        if requeued + buried > 0 {
            tracing::warn!(queue, requeued, buried, "recovered jobs whose lease expired");
        }
        Ok((requeued, buried))
    }

    /// Applies retention to one queue: completed jobs past `completed_retention` and dead
    /// letters past `dead_retention`. Returns (completed forgotten, dead letters trimmed).
    pub async fn apply_retention(&self, queue: &str) -> Result<(u64, u64), QueueError> {
        let keys = self.inner.ns.queue(queue);
        let now = now_ms();
        let cutoff = now.saturating_sub(ms(self.inner.cfg.completed_retention));
        let dead_cutoff = self.inner.cfg.dead_retention.map(|d| now.saturating_sub(ms(d))).unwrap_or(0);
        let (mut forgotten, mut trimmed) = (0, 0);
        loop {
            let v = self
                .invoke(
                    &SCRIPTS.janitor,
                    &[keys.done.clone(), keys.jobs.clone(), keys.dead.clone()],
                    &[cutoff.to_string(), "1000".into(), dead_cutoff.to_string()],
                )
                .await?;
            let n = ints(&v);
            let f = n.first().copied().unwrap_or(0);
            forgotten += f;
            trimmed += n.get(1).copied().unwrap_or(0);
            if f < 1000 {
                break;
            }
        }
        if trimmed > 0 {
            tracing::warn!(queue, trimmed, "dead letters older than the dead-letter retention were removed");
        }
        Ok((forgotten, trimmed))
    }

    /// Figures of one queue, read in O(1).
    pub async fn metrics(&self, queue: &str) -> Result<QueueMetrics, QueueError> {
        let k = self.inner.ns.queue(queue);
        let mut conn = self.inner.conn.clone();
        let (ready, in_flight, delayed, dead, oldest, stats, time): MetricsReply = redis::pipe()
            .llen(&k.ready)
            .zcard(&k.inflight)
            .zcard(&k.delayed)
            .xlen(&k.dead)
            .lindex(&k.ready, -1)
            .hgetall(&k.stats)
            .cmd("TIME")
            .query_async(&mut conn)
            .await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let oldest_ms = oldest.and_then(|e| e.split('|').next().and_then(|s| s.parse::<u64>().ok()));
        let s = |name: &str| stats.get(name).copied().unwrap_or(0);
        Ok(QueueMetrics {
            queue: queue.to_owned(),
            ready,
            in_flight,
            delayed,
            dead,
            oldest_ready_age_ms: oldest_ms.map(|t| now.saturating_sub(t)).unwrap_or(0),
            enqueued_total: s("enqueued"),
            completed_total: s("completed"),
            retried_total: s("retried"),
            throttled_total: s("throttled"),
            waited_total: s("waited"),
            conflicted_total: s("conflicted"),
            recovered_total: s("recovered"),
            dead_total: s("dead"),
            redriven_total: s("redriven"),
        })
    }

    /// Every queue name used in this namespace.
    pub async fn queues(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.inner.conn.clone();
        let mut v: Vec<String> = conn.smembers(self.inner.ns.queues()).await?;
        v.sort();
        Ok(v)
    }

    /// Dead letters of a queue, oldest first, starting after `after` (a stream id) or at
    /// the beginning.
    pub async fn dead_letters(
        &self,
        queue: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let k = self.inner.ns.queue(queue);
        let mut conn = self.inner.conn.clone();
        let start = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&k.dead)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(reply.ids.into_iter().map(|e| dead_letter(queue, e)).collect())
    }

    /// The newest `count` dead letters of a queue, newest first.
    pub async fn newest_dead_letters(&self, queue: &str, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let k = self.inner.ns.queue(queue);
        let mut conn = self.inner.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&k.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(reply.ids.into_iter().map(|e| dead_letter(queue, e)).collect())
    }

    /// One dead letter, looked up by its stream id.
    pub async fn dead_letter(&self, queue: &str, dead_letter_id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let k = self.inner.ns.queue(queue);
        let mut conn = self.inner.conn.clone();
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(&k.dead).arg(dead_letter_id).arg(dead_letter_id).query_async(&mut conn).await?;
        Ok(reply.ids.into_iter().next().map(|e| dead_letter(queue, e)))
    }

    /// Puts one dead letter back on its queue with a fresh attempt budget.
    pub async fn redrive(&self, queue: &str, dead_letter_id: &str) -> Result<Option<String>, QueueError> {
        let k = self.inner.ns.queue(queue);
        let v = self
            .invoke(
                &SCRIPTS.redrive,
                &[k.dead.clone(), k.jobs.clone(), k.ready.clone(), k.signal.clone(), k.stats.clone()],
                &[dead_letter_id.to_owned()],
            )
            .await?;
        Ok(strings(&v).into_iter().next())
    }

    /// Redrives every dead letter of a queue; returns how many.
    pub async fn redrive_all(&self, queue: &str) -> Result<usize, QueueError> {
        let mut n = 0;
        loop {
            let batch = self.dead_letters(queue, None, 500).await?;
            if batch.is_empty() {
                return Ok(n);
            }
            for d in batch {
                if self.redrive(queue, &d.id).await?.is_some() {
                    n += 1;
                }
            }
        }
    }

    /// Deletes one dead letter for good.
    pub async fn discard(&self, queue: &str, dead_letter_id: &str) -> Result<bool, QueueError> {
        let k = self.inner.ns.queue(queue);
        let mut conn = self.inner.conn.clone();
        let n: u64 = conn.xdel(&k.dead, &[dead_letter_id]).await?;
        Ok(n > 0)
    }

    /// Records the queue name in the namespace registry, once per process.
    pub(crate) async fn register(&self, queue: &str) -> Result<(), QueueError> {
        if self.inner.registered.lock().map(|r| r.contains(queue)).unwrap_or(false) {
            return Ok(());
        }
        let mut conn = self.inner.conn.clone();
        let _: u64 = conn.sadd(self.inner.ns.queues(), queue).await?;
        if let Ok(mut r) = self.inner.registered.lock() {
            r.insert(queue.to_owned());
        }
        Ok(())
    }

    pub(crate) async fn invoke(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, QueueError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.inner.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// Builds KEYS and ARGV for exec.lua; returns them with the ids of the jobs it enqueues.
    fn build_exec(&self, ack: Option<(&QueueKeys, &str, &str)>, h: &Handoff) -> Result<ExecCall, QueueError> {
        let ns = &self.inner.ns;
        let mut keys = KeyIndex::default();
        let mut args = Vec::new();
        match ack {
            Some((q, member, id)) => {
                for k in [&q.inflight, &q.jobs, &q.errors, &q.stats, &q.done] {
                    keys.idx(k.clone());
                }
                args.extend([member.to_owned(), id.to_owned(), ms(self.inner.cfg.completed_retention).to_string()]);
            }
            None => {
                // unused by a plain commit, but declared so that every key is on one slot
                let registry = ns.queues();
                keys.idx(registry.clone());
                keys.keys.extend(std::iter::repeat_n(registry, 4));
                args.extend([String::new(), String::new(), "0".to_owned()]);
            }
        }
        for g in &h.guards {
            let (key, op, field, values) = match g {
                Guard::FieldEquals { key, field, value } => (key, "heq", field.as_str(), vec![value.clone()]),
                Guard::FieldIn { key, field, values } => (key, "hin", field.as_str(), values.clone()),
                Guard::FieldAbsent { key, field } => (key, "habs", field.as_str(), vec![]),
                Guard::KeyAbsent { key } => (key, "kabs", "", vec![]),
                Guard::KeyEquals { key, value } => (key, "keq", "", vec![value.clone()]),
            };
            args.push("G".into());
            args.push(keys.idx(ns.key(key)));
            args.push(op.into());
            args.push(field.to_owned());
            args.push(values.len().to_string());
            args.extend(values);
        }
        let mut ids = Vec::new();
        for (n, job) in h.jobs.iter().enumerate() {
            let id = match (&job.id, ack) {
                (Some(id), _) => id.clone(),
                (None, Some((_, _, parent))) => successor_id(parent, &job.queue, n),
                (None, None) => new_id(),
            };
            validate_id(&id)?;
            let q = ns.queue(&job.queue);
            let (due, delay) = match job.run_at {
                RunAt::Now => (0, 0),
                RunAt::After(d) => (0, ms(d).max(1)),
                RunAt::At(t) => (t, 0),
            };
            args.push("J".into());
            args.push(keys.idx(q.ready.clone()));
            args.push(keys.idx(q.delayed.clone()));
            args.push(keys.idx(q.jobs.clone()));
            args.push(keys.idx(q.signal.clone()));
            args.push(keys.idx(q.stats.clone()));
            match &job.idempotency_key {
                Some(key) => {
                    if key.is_empty() || key.len() > 512 {
                        return Err(QueueError::InvalidJob("idempotency key must be 1-512 bytes".into()));
                    }
                    args.push(keys.idx(q.idempotency(key)));
                }
                None => args.push("0".into()),
            }
            args.push(id.clone());
            args.push(job.envelope()?);
            args.push(due.to_string());
            args.push(delay.to_string());
            args.push(ms(self.inner.cfg.idempotency_ttl).max(1).to_string());
            ids.push(id);
        }
        for w in &h.writes {
            args.push("W".into());
            args.push(w.cmd.as_str().into());
            args.push(keys.idx(ns.key(&w.key)));
            args.push(w.args.len().to_string());
            args.extend(w.args.iter().cloned());
        }
        Ok((keys.keys, args, ids))
    }
}

/// KEYS of a script call: each distinct key once, referred to by its 1-based index.
#[derive(Default)]
struct KeyIndex {
    keys: Vec<String>,
    index: HashMap<String, usize>,
}

impl KeyIndex {
    fn idx(&mut self, k: String) -> String {
        if let Some(i) = self.index.get(&k) {
            return i.to_string();
        }
        self.keys.push(k.clone());
        self.index.insert(k, self.keys.len());
        self.keys.len().to_string()
    }
}

/// LLEN ready, ZCARD in-flight, ZCARD delayed, XLEN dead, the oldest ready element, the
/// counters, and the server's TIME.
type MetricsReply = (u64, u64, u64, u64, Option<String>, HashMap<String, u64>, (u64, u64));

/// KEYS, ARGV and the ids of the jobs of one exec.lua call.
type ExecCall = (Vec<String>, Vec<String>, Vec<String>);

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_commit(v: Value, ids: Vec<String>) -> Result<CommitOutcome, QueueError> {
    let parts = strings(&v);
    match parts.first().map(String::as_str) {
        Some("ok") => Ok(CommitOutcome::Applied { ids }),
        Some("stale") => Ok(CommitOutcome::Duplicate { id: String::new(), existing: String::new() }),
        Some("guard") => {
            let n: usize = parts.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            Ok(CommitOutcome::GuardFailed { index: n.saturating_sub(1) })
        }
        Some("dup") => Ok(CommitOutcome::Duplicate {
            id: parts.get(1).cloned().unwrap_or_default(),
            existing: parts.get(2).cloned().unwrap_or_default(),
        }),
        _ => Err(QueueError::Protocol(format!("unexpected reply from commit: {v:?}"))),
    }
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(string).collect(),
        other => string(other).into_iter().collect(),
    }
}

pub(crate) fn string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

pub(crate) fn ints(v: &Value) -> Vec<u64> {
    strings(v).iter().filter_map(|s| s.parse().ok()).collect()
}

fn dead_letter(queue: &str, e: redis::streams::StreamId) -> DeadLetter {
    let get = |k: &str| -> String { e.map.get(k).and_then(string).unwrap_or_default() };
    let errors = get("errors").lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let job = get("job");
    let (payload, metadata) = match serde_json::from_str::<Envelope<'_>>(&job) {
        Ok(env) => (serde_json::from_str(env.p.get()).unwrap_or(serde_json::Value::Null), env.m),
        Err(_) => (serde_json::Value::Null, Default::default()),
    };
    DeadLetter {
        id: e.id.clone(),
        queue: if get("queue").is_empty() { queue.to_owned() } else { get("queue") },
        job_id: get("id"),
        attempts: get("attempts").parse().unwrap_or(0),
        reason: get("reason"),
        errors,
        payload,
        metadata,
        at: get("at").parse().unwrap_or(0),
    }
}
