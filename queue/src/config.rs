//! Queue configuration and the per-kind retry policy.

use std::collections::HashMap;
use std::time::Duration;

/// How one kind of job is retried. Backoff is exponential with full jitter and a cap, and
/// never sooner than an upstream's Retry-After.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. A lease that expires (the worker died) counts.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles with each attempt.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
    /// Waiting (an upstream's 429, a shared budget, a busy lock) consumes no attempt and is not
    /// counted; a job is buried only once it has been waiting this long since its first wait.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
            max_wait: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows failed attempt `attempt` (1-based):
    /// uniformly random in `[0, min(cap, base * 2^(attempt-1))]`, raised to `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(fastrand::u64(0..=ceiling_ms));
        match retry_after {
            Some(floor) if floor > jittered => floor,
            _ => jittered,
        }
    }
}

/// Configuration of a queue client and the workers that use it.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// All keys live under `{namespace}`.
    pub namespace: String,
    /// How long a fetched job is reserved for its worker without a renewal.
    pub lease: Duration,
    /// How often this process renews the leases it holds.
    pub renew_every: Duration,
    /// How often this process looks for expired leases.
    pub reap_every: Duration,
    /// Jobs leased per fetch.
    pub fetch_batch: usize,
    /// Due delayed jobs promoted per fetch (bounded, so any backlog drains in steps).
    pub promote_batch: usize,
    /// The longest an idle consumer blocks before it looks again.
    pub idle_wait: Duration,
    /// How long completed jobs are kept (zero: removed at once).
    pub completed_retention: Duration,
    /// How long dead letters are kept (None: until redriven or discarded).
    pub dead_retention: Option<Duration>,
    /// How long an idempotency key blocks duplicates.
    pub idempotency_ttl: Duration,
    /// How often this process applies retention.
    pub janitor_every: Duration,
    /// The retry policy of kinds without their own.
    pub default_retry: RetryPolicy,
    /// Retry policies per kind.
    pub retry: HashMap<String, RetryPolicy>,
    /// When set, every dead letter enqueues exactly one job on this queue.
    pub dead_letter_queue: Option<String>,
    /// How long a command may wait for Redis before it is retried. Longer than any stall
    /// the workers are meant to ride out.
    pub response_timeout: Duration,
    /// How long an acknowledgement keeps retrying while Redis is unreachable.
    pub ack_retry_for: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            namespace: "grantline".into(),
            lease: Duration::from_secs(7),
            renew_every: Duration::from_millis(1750),
            reap_every: Duration::from_secs(1),
            fetch_batch: 16,
            promote_batch: 1000,
            idle_wait: Duration::from_secs(1),
            completed_retention: Duration::from_secs(3600),
            dead_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            idempotency_ttl: Duration::from_secs(7 * 24 * 3600),
            janitor_every: Duration::from_secs(30),
            default_retry: RetryPolicy::default(),
            retry: HashMap::new(),
            dead_letter_queue: None,
            response_timeout: Duration::from_secs(10),
            ack_retry_for: Duration::from_secs(120),
        }
    }
}

impl QueueConfig {
    pub fn retry_policy(&self, queue: &str) -> &RetryPolicy {
        self.retry.get(queue).unwrap_or(&self.default_retry)
    }

    /// Checks relations between the settings; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let ns_ok = !self.namespace.is_empty()
            && self.namespace.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ns_ok {
            return Err(format!(
                "queue.namespace: {:?} must be non-empty and use only letters, digits, '-', '_' or '.'",
                self.namespace
            ));
        }
        if self.renew_every.saturating_mul(2) >= self.lease {
            return Err(format!(
                "queue.renew_every ({:?}) must be less than half of queue.lease ({:?}) so a lease survives one missed renewal",
                self.renew_every, self.lease
            ));
        }
        if self.fetch_batch == 0 || self.promote_batch == 0 {
            return Err("queue.fetch_batch and queue.promote_batch must be at least 1".into());
        }
        for (kind, p) in
            std::iter::once(("default", &self.default_retry)).chain(self.retry.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if p.max_attempts == 0 {
                return Err(format!("queue.retry.{kind}.max_attempts must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_jittered_and_respects_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        };
        for attempt in 1..=12 {
            let ceiling = Duration::from_millis(100 * (1u64 << (attempt - 1).min(30))).min(Duration::from_secs(1));
            for _ in 0..200 {
                assert!(p.delay(attempt, None) <= ceiling);
            }
        }
        let distinct: std::collections::HashSet<_> = (0..100).map(|_| p.delay(4, None)).collect();
        assert!(distinct.len() > 10, "full jitter spreads retries");
        for _ in 0..100 {
            assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = QueueConfig::default();
        assert!(c.validate().is_ok());
        c.renew_every = c.lease;
        assert!(c.validate().unwrap_err().contains("queue.renew_every"));
        let c = QueueConfig { namespace: "a b".into(), ..QueueConfig::default() };
        assert!(c.validate().unwrap_err().contains("queue.namespace"));
    }
}
