//! Token buckets per app and tenant, for resource units and for writes (throttling-limits.md).
//!
//! Each bucket holds `capacity` units and refills continuously at `capacity / window`. A request
//! needs its resource-unit cost from the RU bucket and, when it writes, one unit from the write
//! bucket. By default usage keeps counting while throttled (a throttled request still spends its
//! units, down to minus one full bucket), so retrying before `Retry-After` makes things worse.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// Throttling settings of the Graph simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// Off: never 429 from the buckets (headers are still sent).
    pub enabled: bool,
    /// Resource units per window per app and tenant (default 3,500 per 10 s, a small tenant).
    pub resource_units: u32,
    pub resource_unit_window: Duration,
    /// Writes per window per app and tenant (default 3,000 per 150 s).
    pub writes: u32,
    pub write_window: Duration,
    /// Throttled requests still consume units (the documented behaviour).
    pub penalize_throttled: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            resource_units: 3_500,
            resource_unit_window: Duration::from_secs(10),
            writes: 3_000,
            write_window: Duration::from_secs(150),
            penalize_throttled: true,
        }
    }
}

impl ThrottleConfig {
    /// No throttling.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }

    /// The documented RU quota for a tenant of this many users (S < 50, M 50–500, L > 500).
    pub fn for_tenant_size(users: usize) -> Self {
        let resource_units = match users {
            0..50 => 3_500,
            50..=500 => 5_000,
            _ => 8_000,
        };
        Self { resource_units, ..Self::default() }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    fn refill(&mut self, now: Timestamp, capacity: f64, window: Duration) {
        let elapsed = now.duration_since(self.at).as_secs_f64().max(0.0);
        let rate = capacity / window.as_secs_f64().max(0.001);
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
    }

    fn wait_for(&self, need: f64, capacity: f64, window: Duration) -> u64 {
        let rate = capacity / window.as_secs_f64().max(0.001);
        let secs = ((need - self.tokens) / rate).ceil();
        if secs.is_finite() && secs > 1.0 { secs as u64 } else { 1 }
    }
}

/// The throttling decision for one request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    Allowed {
        /// Fraction of a limit in use when above 0.8 (for `x-ms-throttle-limit-percentage`).
        limit_percentage: Option<f64>,
    },
    Throttled {
        retry_after: u64,
        information: &'static str,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    pub(crate) cfg: ThrottleConfig,
    buckets: HashMap<String, (Bucket, Bucket)>,
}

impl Throttle {
    pub(crate) fn new(cfg: ThrottleConfig) -> Self {
        Self { cfg, buckets: HashMap::new() }
    }

    pub(crate) fn set_config(&mut self, cfg: ThrottleConfig) {
        self.cfg = cfg;
        self.buckets.clear();
    }

    pub(crate) fn check(&mut self, app: &str, now: Timestamp, ru: u32, write: bool) -> Verdict {
        if !self.cfg.enabled {
            return Verdict::Allowed { limit_percentage: None };
        }
        let ru_cap = f64::from(self.cfg.resource_units.max(1));
        let w_cap = f64::from(self.cfg.writes.max(1));
        let (ru_win, w_win) = (self.cfg.resource_unit_window, self.cfg.write_window);
        let penalize = self.cfg.penalize_throttled;
        let (rb, wb) = self
            .buckets
            .entry(app.to_owned())
            .or_insert((Bucket { tokens: ru_cap, at: now }, Bucket { tokens: w_cap, at: now }));
        rb.refill(now, ru_cap, ru_win);
        wb.refill(now, w_cap, w_win);
        let need_ru = f64::from(ru);
        let write_short = write && wb.tokens < 1.0;
        let ru_short = rb.tokens < need_ru;
        if write_short || ru_short {
            let verdict = if write_short {
                Verdict::Throttled { retry_after: wb.wait_for(1.0, w_cap, w_win), information: "WriteLimitExceeded" }
            } else {
                Verdict::Throttled {
                    retry_after: rb.wait_for(need_ru, ru_cap, ru_win),
                    information: "ResourceUnitLimitExceeded",
                }
            };
            if penalize {
                rb.tokens = (rb.tokens - need_ru).max(-ru_cap);
                if write {
                    wb.tokens = (wb.tokens - 1.0).max(-w_cap);
                }
            }
            return verdict;
        }
        rb.tokens -= need_ru;
        if write {
            wb.tokens -= 1.0;
        }
        let used_ru = 1.0 - rb.tokens / ru_cap;
        let used_w = if write { 1.0 - wb.tokens / w_cap } else { 0.0 };
        let used = used_ru.max(used_w);
        Verdict::Allowed { limit_percentage: (used > 0.8).then_some(used) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn write_bucket_empties_and_refills() {
        let mut t = Throttle::new(ThrottleConfig {
            writes: 3,
            write_window: Duration::from_secs(30),
            penalize_throttled: false,
            ..ThrottleConfig::default()
        });
        let now = Timestamp::UNIX_EPOCH;
        for _ in 0..3 {
            assert!(matches!(t.check("a", now, 1, true), Verdict::Allowed { .. }));
        }
        assert_eq!(
            t.check("a", now, 1, true),
            Verdict::Throttled { retry_after: 10, information: "WriteLimitExceeded" }
        );
        assert!(matches!(t.check("a", now, 1, false), Verdict::Allowed { .. }));
        assert!(matches!(t.check("b", now, 1, true), Verdict::Allowed { .. }));
        let later = now.checked_add(SignedDuration::from_secs(10)).unwrap();
        assert!(matches!(t.check("a", later, 1, true), Verdict::Allowed { .. }));
    }
}
