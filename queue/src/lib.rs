//! grantline-queue: a durable job queue on Redis that plugs into apalis 1.0 as a backend,
//! so ordinary apalis workers (`WorkerBuilder::new(..).backend(storage)`, tower layers,
//! handler extractors, the Monitor) run on it.
//!
//! What it guarantees, and how (the keys and scripts are described in ARCHITECTURE.md):
//! - a fetched job is leased (an in-flight sorted set scored by lease expiry); one timer
//!   per process renews the leases it holds, and a reaper that any process may run returns
//!   expired leases to the ready list, counting the attempt;
//! - acknowledging job k and enqueuing its successors (with ids derived from k), plus any
//!   writes and guards the caller adds, is one Lua script: a chain is never lost or forked;
//! - failures are retried per kind with exponential backoff and full jitter, never sooner
//!   than Retry-After; throttling does not consume attempts; permanent failures and
//!   exhausted jobs go to a dead-letter stream that is never capped silently;
//! - delayed jobs live in a sorted set, promoted in bounded batches, never in memory;
//! - completed jobs, dead letters and idempotency keys expire; metrics are O(1);
//! - a shared rate budget ([`Queue::admit`], [`Queue::throttled`]) lets every process that calls
//!   one upstream keep to that upstream's limit together;
//! - Redis errors never stop a worker: it backs off and carries on when Redis is back;
//! - it runs on one Redis (`redis://`) or a Redis Cluster (`redis+cluster://` seeds), where a
//!   namespace is one hash slot on one master, and rides out a master's restart or failover
//!   (CLUSTER.md).
//!
//! The queue knows nothing of access requests: queue names are the caller's stable kind
//! strings, payloads are JSON.

mod ack;
mod backend;
mod config;
mod connection;
mod job;
mod keys;
mod limiter;
mod maintenance;
mod queue;
mod scripts;
pub mod server;

pub use ack::{AckLayer, AckService};
pub use backend::RedisBackend;
pub use config::{QueueConfig, RetryPolicy};
pub use connection::{CLUSTER_SCHEME, QueueConnection};
pub use job::{
    AttemptError, CommitOutcome, Guard, Handoff, IntoHandoff, JobError, NewJob, PushOutcome, RunAt, Write, WriteCmd,
    new_id, successor_id, validate_id,
};
pub use keys::{Namespace, QueueKeys, key_slot};
pub use limiter::{Admission, Limit, LimitState};
pub use queue::{DeadLetter, FailOutcome, Queue, QueueMetrics};

/// Errors of the queue client. Workers never see these as fatal: the backend logs them,
/// backs off and retries.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding a job: {0}")]
    Encode(serde_json::Error),
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("invalid queue configuration: {0}")]
    Config(String),
    #[error("duplicate job {id}: idempotency key or id already taken by {existing}")]
    Duplicate { id: String, existing: String },
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
}
