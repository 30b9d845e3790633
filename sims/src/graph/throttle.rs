//! Token buckets for resource units and writes (throttling-limits.md): per app and tenant (RU
//! and writes), and per tenant across all apps (writes).
//!
//! Each bucket holds `capacity` units and refills continuously at `capacity / window`. A request
//! needs its resource-unit cost from its app's RU bucket and, when it writes, one unit from its
//! app's write bucket and one from the tenant's write bucket. By default usage keeps counting
//! while throttled (a throttled request still spends its units, down to minus one full bucket),
//! so retrying before `Retry-After` makes things worse.
//!
//! The bucket that runs dry names the scope of the 429 (`x-ms-throttle-scope`,
//! `<Scope>/<Limit>/<app>/<tenant>`): the app's write bucket is `Tenant_Application/Write`, the
//! tenant's write bucket `Tenant/Write`, and the RU bucket `Tenant_Application/Read` for a read
//! or `Tenant_Application/ReadWrite` for a write (the RU budget covers both).

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
    /// Writes per window per tenant across every app (default 18,000 per 5 minutes).
    pub tenant_writes: u32,
    pub tenant_write_window: Duration,
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
            tenant_writes: 18_000,
            tenant_write_window: Duration::from_secs(300),
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

/// Which limit a throttled request hit: the first two parts of `x-ms-throttle-scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The app's resource units, on a read.
    AppTenantRead,
    /// The app's resource units, on a write.
    AppTenantReadWrite,
    /// The app's writes in this tenant.
    AppTenantWrite,
    /// The tenant's writes, all apps together.
    TenantWrite,
}

impl Scope {
    /// `Tenant_Application/Write`, `Tenant/Write`, ...
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::AppTenantRead => "Tenant_Application/Read",
            Scope::AppTenantReadWrite => "Tenant_Application/ReadWrite",
            Scope::AppTenantWrite => "Tenant_Application/Write",
            Scope::TenantWrite => "Tenant/Write",
        }
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
        scope: Scope,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    pub(crate) cfg: ThrottleConfig,
    buckets: HashMap<String, (Bucket, Bucket)>,
    tenant: Option<Bucket>,
}

impl Throttle {
    pub(crate) fn new(cfg: ThrottleConfig) -> Self {
        Self { cfg, buckets: HashMap::new(), tenant: None }
    }

    pub(crate) fn set_config(&mut self, cfg: ThrottleConfig) {
        self.cfg = cfg;
        self.buckets.clear();
        self.tenant = None;
    }

    pub(crate) fn check(&mut self, app: &str, now: Timestamp, ru: u32, write: bool) -> Verdict {
        if !self.cfg.enabled {
            return Verdict::Allowed { limit_percentage: None };
        }
        let ru_cap = f64::from(self.cfg.resource_units.max(1));
        let w_cap = f64::from(self.cfg.writes.max(1));
        let t_cap = f64::from(self.cfg.tenant_writes.max(1));
        let (ru_win, w_win, t_win) =
            (self.cfg.resource_unit_window, self.cfg.write_window, self.cfg.tenant_write_window);
        let penalize = self.cfg.penalize_throttled;
        let (rb, wb) = self
            .buckets
            .entry(app.to_owned())
            .or_insert((Bucket { tokens: ru_cap, at: now }, Bucket { tokens: w_cap, at: now }));
        let tb = self.tenant.get_or_insert(Bucket { tokens: t_cap, at: now });
        rb.refill(now, ru_cap, ru_win);
        wb.refill(now, w_cap, w_win);
        tb.refill(now, t_cap, t_win);
        let need_ru = f64::from(ru);
        let verdict = if write && wb.tokens < 1.0 {
            Some(Verdict::Throttled {
                retry_after: wb.wait_for(1.0, w_cap, w_win),
                information: "WriteLimitExceeded",
                scope: Scope::AppTenantWrite,
            })
        } else if write && tb.tokens < 1.0 {
            Some(Verdict::Throttled {
                retry_after: tb.wait_for(1.0, t_cap, t_win),
                information: "WriteLimitExceeded",
                scope: Scope::TenantWrite,
            })
        } else if rb.tokens < need_ru {
            Some(Verdict::Throttled {
                retry_after: rb.wait_for(need_ru, ru_cap, ru_win),
                information: "ResourceUnitLimitExceeded",
                scope: if write { Scope::AppTenantReadWrite } else { Scope::AppTenantRead },
            })
        } else {
            None
        };
        if let Some(verdict) = verdict {
            if penalize {
                rb.tokens = (rb.tokens - need_ru).max(-ru_cap);
                if write {
                    wb.tokens = (wb.tokens - 1.0).max(-w_cap);
                    tb.tokens = (tb.tokens - 1.0).max(-t_cap);
                }
            }
            return verdict;
        }
        rb.tokens -= need_ru;
        if write {
            wb.tokens -= 1.0;
            tb.tokens -= 1.0;
        }
        let used_ru = 1.0 - rb.tokens / ru_cap;
        let used_w = if write { (1.0 - wb.tokens / w_cap).max(1.0 - tb.tokens / t_cap) } else { 0.0 };
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
            Verdict::Throttled { retry_after: 10, information: "WriteLimitExceeded", scope: Scope::AppTenantWrite }
        );
        assert!(matches!(t.check("a", now, 1, false), Verdict::Allowed { .. }));
        assert!(matches!(t.check("b", now, 1, true), Verdict::Allowed { .. }));
        let later = now.checked_add(SignedDuration::from_secs(10)).unwrap();
        assert!(matches!(t.check("a", later, 1, true), Verdict::Allowed { .. }));
    }

    #[test]
    fn the_tenant_write_bucket_spans_apps() {
        let mut t = Throttle::new(ThrottleConfig {
            tenant_writes: 3,
            tenant_write_window: Duration::from_secs(300),
            penalize_throttled: false,
            ..ThrottleConfig::default()
        });
        let now = Timestamp::UNIX_EPOCH;
        for app in ["a", "b", "a"] {
            assert!(matches!(t.check(app, now, 1, true), Verdict::Allowed { .. }));
        }
        assert_eq!(
            t.check("c", now, 1, true),
            Verdict::Throttled { retry_after: 100, information: "WriteLimitExceeded", scope: Scope::TenantWrite }
        );
        assert!(matches!(t.check("c", now, 1, false), Verdict::Allowed { .. }));
        let mut small = Throttle::new(ThrottleConfig { resource_units: 2, ..ThrottleConfig::default() });
        assert!(matches!(small.check("a", now, 2, false), Verdict::Allowed { .. }));
        assert!(matches!(
            small.check("a", now, 1, false),
            Verdict::Throttled { scope: Scope::AppTenantRead, information: "ResourceUnitLimitExceeded", .. }
        ));
        assert!(matches!(small.check("a", now, 1, true), Verdict::Throttled { scope: Scope::AppTenantReadWrite, .. }));
    }
}
