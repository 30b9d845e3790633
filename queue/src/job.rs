//! What producers and handlers give the queue: new jobs, hand-offs with their extra
//! writes and guards, and classified failures.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::QueueError;

/// Job ids: 1 to 128 characters of `[A-Za-z0-9._:-]` (they appear inside Redis members
/// separated by `|`, so the alphabet is closed).
pub fn validate_id(id: &str) -> Result<(), QueueError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidJob(format!("job id {id:?} must be 1-128 characters of [A-Za-z0-9._:-]")))
    }
}

/// A fresh, time-ordered job id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The deterministic id of the `index`-th successor of `parent` on queue `queue`: a retried
/// or recovered hand-off names the same successor, so it can never be enqueued twice.
pub fn successor_id(parent: &str, queue: &str, index: usize) -> String {
    let name = format!("{parent}/{queue}/{index}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).simple().to_string()
}

/// When a job becomes runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RunAt {
    #[default]
    Now,
    /// Relative to the Redis server's clock when the job is written.
    After(Duration),
    /// Absolute, in milliseconds since the Unix epoch.
    At(u64),
}

impl RunAt {
    pub fn at_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        RunAt::At(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub queue: String,
    /// None: a fresh id for a plain push, a deterministic successor id in a hand-off.
    pub id: Option<String>,
    pub payload: Box<RawValue>,
    pub metadata: BTreeMap<String, String>,
    pub run_at: RunAt,
    pub idempotency_key: Option<String>,
}

impl NewJob {
    pub fn new<T: Serialize + ?Sized>(queue: impl Into<String>, payload: &T) -> Result<Self, QueueError> {
        Ok(Self {
            queue: queue.into(),
            id: None,
            payload: serde_json::value::to_raw_value(payload).map_err(QueueError::Encode)?,
            metadata: BTreeMap::new(),
            run_at: RunAt::Now,
            idempotency_key: None,
        })
    }
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    pub fn run_at(mut self, at: RunAt) -> Self {
        self.run_at = at;
        self
    }
    pub fn delay(self, d: Duration) -> Self {
        self.run_at(RunAt::After(d))
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// The stored form of a job: payload, metadata and creation time. Scripts never parse it.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    pub p: &'a RawValue,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub m: BTreeMap<String, String>,
    /// Creation time, ms since the epoch (the producer's clock; informational).
    pub c: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

impl NewJob {
    pub(crate) fn envelope(&self) -> Result<String, QueueError> {
        serde_json::to_string(&Envelope { p: &self.payload, m: self.metadata.clone(), c: now_ms() })
            .map_err(QueueError::Encode)
    }
}

/// A write applied atomically with a commit or hand-off. Keys are relative to the
/// namespace (`Namespace::key`), which keeps every script on one Cluster slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub cmd: WriteCmd,
    pub key: String,
    pub args: Vec<String>,
}

/// The allow-listed commands a write may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCmd {
    HSet,
    HSetNx,
    HDel,
    HIncrBy,
    XAdd,
    ZAdd,
    ZRem,
    SAdd,
    SRem,
    Set,
    Del,
    PExpire,
    Persist,
    RPush,
    LPush,
    Incr,
}

impl WriteCmd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WriteCmd::HSet => "HSET",
            WriteCmd::HSetNx => "HSETNX",
            WriteCmd::HDel => "HDEL",
            WriteCmd::HIncrBy => "HINCRBY",
            WriteCmd::XAdd => "XADD",
            WriteCmd::ZAdd => "ZADD",
            WriteCmd::ZRem => "ZREM",
            WriteCmd::SAdd => "SADD",
            WriteCmd::SRem => "SREM",
            WriteCmd::Set => "SET",
            WriteCmd::Del => "DEL",
            WriteCmd::PExpire => "PEXPIRE",
            WriteCmd::Persist => "PERSIST",
            WriteCmd::RPush => "RPUSH",
            WriteCmd::LPush => "LPUSH",
            WriteCmd::Incr => "INCR",
        }
    }
}

impl Write {
    pub fn new(cmd: WriteCmd, key: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { cmd, key: key.into(), args: args.into_iter().map(Into::into).collect() }
    }
    /// HSET key f1 v1 f2 v2 ...
    pub fn hset<K: Into<String>, V: Into<String>>(
        key: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut args = Vec::new();
        for (k, v) in fields {
            args.push(k.into());
            args.push(v.into());
        }
        Self { cmd: WriteCmd::HSet, key: key.into(), args }
    }
    /// XADD key * f1 v1 ... (never capped: streams given here are audit material).
    pub fn xadd<K: Into<String>, V: Into<String>>(
        key: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut args = vec!["*".to_owned()];
        for (k, v) in fields {
            args.push(k.into());
            args.push(v.into());
        }
        Self { cmd: WriteCmd::XAdd, key: key.into(), args }
    }
}

/// A condition checked before anything of a commit is written; if one fails, nothing is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The hash field equals the value.
    FieldEquals { key: String, field: String, value: String },
    /// The hash field is one of the values.
    FieldIn { key: String, field: String, values: Vec<String> },
    /// The hash field does not exist.
    FieldAbsent { key: String, field: String },
    /// The key does not exist.
    KeyAbsent { key: String },
    /// The string key holds the value (for example: this worker still holds a lock).
    KeyEquals { key: String, value: String },
}

/// Jobs, writes and guards applied as one atomic step: by a producer (`Queue::commit`) or,
/// returned from a handler, together with the acknowledgement of the job (the hand-off).
#[derive(Clone, Debug, Default)]
pub struct Handoff {
    pub jobs: Vec<NewJob>,
    pub writes: Vec<Write>,
    pub guards: Vec<Guard>,
}

impl Handoff {
    /// Acknowledge only.
    pub fn done() -> Self {
        Self::default()
    }
    pub fn then(mut self, job: NewJob) -> Self {
        self.jobs.push(job);
        self
    }
    pub fn write(mut self, w: Write) -> Self {
        self.writes.push(w);
        self
    }
    pub fn guard(mut self, g: Guard) -> Self {
        self.guards.push(g);
        self
    }
}

/// Handler results the acknowledgement layer understands.
pub trait IntoHandoff {
    fn handoff(&self) -> Handoff;
}

impl IntoHandoff for Handoff {
    fn handoff(&self) -> Handoff {
        self.clone()
    }
}

impl IntoHandoff for () {
    fn handoff(&self) -> Handoff {
        Handoff::done()
    }
}

/// A classified handler failure. Any other error type counts as transient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("{code}: {message}")]
    Transient { code: String, message: String, retry_after: Option<Duration> },
    #[error("{code}: {message}")]
    Throttled { code: String, message: String, retry_after: Option<Duration> },
    /// Not a failure: the job waits (for a shared budget, a lock held by another job) and runs
    /// again after `after`, spending no attempt and adding nothing to its error history.
    #[error("{code}: {message}")]
    Wait { code: String, message: String, after: Duration },
    #[error("{code}: {message}")]
    Permanent { code: String, message: String },
}

impl JobError {
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError::Transient { code: code.into(), message: message.into(), retry_after: None }
    }
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError::Permanent { code: code.into(), message: message.into() }
    }
    pub fn throttled(code: impl Into<String>, message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        JobError::Throttled { code: code.into(), message: message.into(), retry_after }
    }
    pub fn wait(code: impl Into<String>, message: impl Into<String>, after: Duration) -> Self {
        JobError::Wait { code: code.into(), message: message.into(), after }
    }
    pub(crate) fn class(&self) -> &'static str {
        match self {
            JobError::Transient { .. } => "transient",
            JobError::Throttled { .. } => "throttled",
            JobError::Wait { .. } => "wait",
            JobError::Permanent { .. } => "permanent",
        }
    }
    pub fn code(&self) -> &str {
        match self {
            JobError::Transient { code, .. }
            | JobError::Throttled { code, .. }
            | JobError::Wait { code, .. }
            | JobError::Permanent { code, .. } => code,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            JobError::Transient { message, .. }
            | JobError::Throttled { message, .. }
            | JobError::Wait { message, .. }
            | JobError::Permanent { message, .. } => message,
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            JobError::Transient { retry_after, .. } | JobError::Throttled { retry_after, .. } => *retry_after,
            JobError::Wait { after, .. } => Some(*after),
            JobError::Permanent { .. } => None,
        }
    }
}

/// One failed attempt as kept with the job and, at the end, in its dead letter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttemptError {
    pub attempt: u32,
    /// ms since the epoch
    pub at: u64,
    pub class: String,
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub worker: String,
}

/// The result of a push or commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Enqueued {
        id: String,
    },
    /// The idempotency key or the id was taken: nothing was written.
    Duplicate {
        id: String,
        existing: String,
    },
}

/// The result of a commit with guards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Applied {
        ids: Vec<String>,
    },
    Duplicate {
        id: String,
        existing: String,
    },
    /// The guard at this index (0-based) did not hold: nothing was written.
    GuardFailed {
        index: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_and_successors_deterministic() {
        assert!(validate_id(&new_id()).is_ok());
        assert!(validate_id("a|b").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id(&"x".repeat(129)).is_err());
        let a = successor_id("p1", "update-ticket", 0);
        assert_eq!(a, successor_id("p1", "update-ticket", 0));
        assert_ne!(a, successor_id("p1", "update-ticket", 1));
        assert_ne!(a, successor_id("p2", "update-ticket", 0));
        assert!(validate_id(&a).is_ok());
    }

    #[test]
    fn envelope_keeps_the_payload_verbatim() {
        let j = NewJob::new("q", &serde_json::json!({"a": 1})).unwrap().meta("traceparent", "00-x");
        let env = j.envelope().unwrap();
        let e: Envelope<'_> = serde_json::from_str(&env).unwrap();
        assert_eq!(e.p.get(), r#"{"a":1}"#);
        assert_eq!(e.m.get("traceparent").map(String::as_str), Some("00-x"));
    }
}
