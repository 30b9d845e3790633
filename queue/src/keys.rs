//! Redis key names. Every key of a namespace carries the same hash tag (`{namespace}`), so
//! every script, including the hand-off that touches two queues plus caller-given keys,
//! is valid on Redis Cluster. Scaling across Cluster slots means running several
//! namespaces (shards), not splitting one.

use std::fmt;

/// The key layout of one namespace.
#[derive(Clone, Debug)]
pub struct Namespace {
    tag: String,
}

impl Namespace {
    pub fn new(name: &str) -> Self {
        Self { tag: format!("{{{name}}}") }
    }

    /// A caller-owned key inside the namespace (request records, audit streams, ...).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{}", self.tag, suffix)
    }

    /// The set of queue names that have been used in this namespace.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.tag)
    }

    pub fn queue(&self, name: &str) -> QueueKeys {
        let base = format!("{}:q:{}", self.tag, name);
        QueueKeys {
            name: name.to_owned(),
            ready: format!("{base}:ready"),
            inflight: format!("{base}:inflight"),
            delayed: format!("{base}:delayed"),
            jobs: format!("{base}:jobs"),
            errors: format!("{base}:errors"),
            dead: format!("{base}:dead"),
            done: format!("{base}:done"),
            stats: format!("{base}:stats"),
            signal: format!("{base}:signal"),
            idem_prefix: format!("{base}:idem:"),
        }
    }
}

/// The keys of one queue. A job's body lives in `jobs` (one hash field per job, so scripts
/// declare every key they touch); lists and sorted sets hold compact references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueKeys {
    pub name: String,
    /// LIST of `ready_ms|id|attempts_used`, pushed left, popped right (FIFO).
    pub ready: String,
    /// ZSET of `id|attempt|worker` scored by lease expiry (ms).
    pub inflight: String,
    /// ZSET of `id|attempts_used` scored by due time (ms).
    pub delayed: String,
    /// HASH id -> envelope (payload, metadata, creation time).
    pub jobs: String,
    /// HASH id -> JSON lines, one per failed attempt.
    pub errors: String,
    /// STREAM of dead letters.
    pub dead: String,
    /// ZSET id -> completion time, for retention of completed jobs.
    pub done: String,
    /// HASH of counters (enqueued, completed, retried, throttled, recovered, dead, redriven).
    pub stats: String,
    /// LIST used as a wake-up for idle consumers (holds at most one token).
    pub signal: String,
    idem_prefix: String,
}

impl QueueKeys {
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}{}", self.idem_prefix, key)
    }
}

impl fmt::Display for QueueKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_namespace_tag() {
        let ns = Namespace::new("gl");
        let q = ns.queue("execute-grant");
        for k in [&q.ready, &q.inflight, &q.delayed, &q.jobs, &q.errors, &q.dead, &q.done, &q.stats, &q.signal] {
            assert!(k.starts_with("{gl}:q:execute-grant:"), "{k}");
        }
        assert_eq!(q.idempotency("sn:RITM1"), "{gl}:q:execute-grant:idem:sn:RITM1");
        assert_eq!(ns.key("req:1"), "{gl}:req:1");
    }
}
