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

    /// The Redis Cluster hash slot of every key of this namespace (what `CLUSTER KEYSLOT
    /// {namespace}` answers): the master that owns it carries the whole namespace.
    pub fn slot(&self) -> u16 {
        key_slot(self.tag.as_bytes())
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

/// The Redis Cluster hash slot of a key: the CRC-16 of its hash tag (the bytes between the
/// first `{` and the next `}`, when not empty) or else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|b| *b == b'}').filter(|close| *close > 0).map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the hash of Redis Cluster key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in bytes {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
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

    #[test]
    fn the_slot_is_the_cluster_hash_of_the_namespace() {
        // the check value of CRC-16/XMODEM, and slots Redis computes for these names
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(Namespace::new("foo").slot(), 12182);
        assert_eq!(Namespace::new("grantline").slot(), crc16(b"grantline") % 16384);
        assert_eq!(key_slot(b"{foo}:q:validate:ready"), 12182);
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
    }
}
