//! Token buckets per app and tenant: one for write cmdlets (`Add-*`, `Remove-*`, `Set-*`), one for
//! reads (`Get-*`). Exchange documents no budget for REST cmdlets; the defaults follow the
//! connector's design assumption (two writes a second) and are configuration.
//!
//! A bucket holds `burst` tokens and refills continuously at `per_second`. A refused call still
//! spends a token (down to minus one full bucket), as Graph's buckets do, so retrying before
//! `Retry-After` only pushes the next success further out.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Throttling settings of the Exchange simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeThrottleConfig {
    /// Off: never 429 from the buckets (the rate-limit headers are still sent).
    pub enabled: bool,
    /// Write cmdlets refilled per second per app and tenant (default 2).
    pub write_per_second: f64,
    /// Write cmdlets available at once (default 10).
    pub write_burst: u32,
    /// Read cmdlets refilled per second per app and tenant (default 10).
    pub read_per_second: f64,
    /// Read cmdlets available at once (default 50).
    pub read_burst: u32,
    /// Refused calls still spend a token (default true).
    pub penalize_refused: bool,
}

impl Default for ExchangeThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            write_per_second: 2.0,
            write_burst: 10,
            read_per_second: 10.0,
            read_burst: 50,
            penalize_refused: true,
        }
    }
}

impl ExchangeThrottleConfig {
    /// No throttling.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// The throttling decision for one cmdlet, with what the rate-limit headers report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Verdict {
    /// `None`: allowed; `Some(seconds)`: refused, retry after this many seconds.
    pub retry_after: Option<u64>,
    /// Whole tokens left in the bucket the cmdlet used (`Rate-Limit-Remaining`).
    pub remaining: u64,
    /// When that bucket is full again (`Rate-Limit-Reset`).
    pub reset_at: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    pub(crate) cfg: ExchangeThrottleConfig,
    buckets: HashMap<(String, bool), Bucket>,
}

impl Throttle {
    pub(crate) fn new(cfg: ExchangeThrottleConfig) -> Self {
        Self { cfg, buckets: HashMap::new() }
    }

    /// Replaces the settings and refills every bucket.
    pub(crate) fn set_config(&mut self, cfg: ExchangeThrottleConfig) {
        self.cfg = cfg;
        self.buckets.clear();
    }

    pub(crate) fn check(&mut self, app_and_tenant: &str, write: bool, now: Timestamp) -> Verdict {
        let (rate, burst) = if write {
            (self.cfg.write_per_second, self.cfg.write_burst)
        } else {
            (self.cfg.read_per_second, self.cfg.read_burst)
        };
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.001 };
        let cap = f64::from(burst.max(1));
        let bucket = self.buckets.entry((app_and_tenant.to_owned(), write)).or_insert(Bucket { tokens: cap, at: now });
        let elapsed = now.duration_since(bucket.at).as_secs_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * rate).min(cap);
        bucket.at = now;
        let allowed = !self.cfg.enabled || bucket.tokens >= 1.0;
        let retry_after = if allowed {
            bucket.tokens -= 1.0;
            if !self.cfg.enabled {
                bucket.tokens = cap;
            }
            None
        } else {
            // The wait is measured after the penalty: honouring Retry-After succeeds, retrying
            // sooner pushes the next success further out.
            if self.cfg.penalize_refused {
                bucket.tokens = (bucket.tokens - 1.0).max(-cap);
            }
            let wait = ((1.0 - bucket.tokens) / rate).ceil();
            Some(if wait.is_finite() && wait >= 1.0 { wait as u64 } else { 1 })
        };
        let remaining = if bucket.tokens >= 1.0 { bucket.tokens.floor() as u64 } else { 0 };
        let to_full = ((cap - bucket.tokens) / rate).clamp(0.0, 86_400.0);
        let reset_at = now
            .checked_add(SignedDuration::try_from(Duration::from_secs_f64(to_full)).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now);
        Verdict { retry_after, remaining, reset_at }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_run_out_and_refill_reads_have_their_own_bucket() {
        let mut t = Throttle::new(ExchangeThrottleConfig {
            write_per_second: 2.0,
            write_burst: 3,
            penalize_refused: false,
            ..ExchangeThrottleConfig::default()
        });
        let now = Timestamp::UNIX_EPOCH;
        for left in [2, 1, 0] {
            let v = t.check("app", true, now);
            assert_eq!((v.retry_after, v.remaining), (None, left));
        }
        let refused = t.check("app", true, now);
        assert_eq!(refused.retry_after, Some(1));
        assert_eq!(refused.reset_at, now.checked_add(SignedDuration::from_millis(1500)).unwrap());
        assert_eq!(t.check("app", false, now).retry_after, None);
        assert_eq!(t.check("other", true, now).retry_after, None);
        let later = now.checked_add(SignedDuration::from_millis(500)).unwrap();
        assert_eq!(t.check("app", true, later).retry_after, None);
    }

    #[test]
    fn refused_calls_count_when_penalized() {
        let mut t =
            Throttle::new(ExchangeThrottleConfig { write_per_second: 1.0, write_burst: 1, ..Default::default() });
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(t.check("a", true, now).retry_after, None);
        assert_eq!(t.check("a", true, now).retry_after, Some(2));
        // Retrying early is refused again and spends another token: the wait grows.
        let early = now.checked_add(SignedDuration::from_secs(1)).unwrap();
        assert_eq!(t.check("a", true, early).retry_after, Some(2));
        let after = early.checked_add(SignedDuration::from_secs(2)).unwrap();
        assert_eq!(t.check("a", true, after).retry_after, None);
    }
}
