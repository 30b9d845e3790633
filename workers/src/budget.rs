//! The shared write (and read) budgets of one upstream tenant, used by the executors before
//! every call: a call is sent only when the budget allows it, a job that must wait is
//! rescheduled in Redis (it never sleeps in a worker slot and spends no attempt), and a refusal
//! (429, or 503 with Retry-After) pauses every worker of that tenant until the time it names.
//!
//! Graph: the app's share of a tenant (3,000 writes per 150 s, about 20 per second) and the
//! tenant's total across apps (18,000 per 5 min, 60 per second), plus the app's resource units
//! for reads. A 429 names the budget it spent in `x-ms-throttle-scope`: `Tenant/...` pauses the
//! tenant's total, anything else the app's share.

use std::time::Duration;

use grantline_queue::{Admission, JobError, Limit, Queue};
use serde::Deserialize;

/// The rates a budget starts from (and never exceeds); it learns lower ones from refusals.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Writes per second for this app in one tenant.
    pub writes_per_second: f64,
    /// Writes per second for the tenant as a whole (every app); 0 for none.
    pub tenant_writes_per_second: f64,
    /// Writes that may go at once after a quiet period.
    pub write_burst: f64,
    /// Read cost units (Graph resource units) per second for this app in one tenant.
    pub reads_per_second: f64,
    pub read_burst: f64,
    /// Used when a refusal names no Retry-After.
    pub default_retry_after_ms: u64,
}

impl BudgetConfig {
    /// Microsoft Graph's documented identity write limits and a small tenant's resource units.
    pub fn graph() -> Self {
        Self {
            writes_per_second: 20.0,
            tenant_writes_per_second: 60.0,
            write_burst: 20.0,
            reads_per_second: 350.0,
            read_burst: 350.0,
            default_retry_after_ms: 2_000,
        }
    }

    /// Exchange Online REST cmdlets: undocumented; about 2 write cmdlets per second per tenant
    /// and app until measured.
    pub fn exchange() -> Self {
        Self {
            writes_per_second: 2.0,
            tenant_writes_per_second: 0.0,
            write_burst: 4.0,
            reads_per_second: 10.0,
            read_burst: 20.0,
            default_retry_after_ms: 5_000,
        }
    }

    /// Names the key at fault.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        for (k, v) in [
            ("writes_per_second", self.writes_per_second),
            ("write_burst", self.write_burst),
            ("reads_per_second", self.reads_per_second),
            ("read_burst", self.read_burst),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{section}.{k} must be a positive number, not {v}"));
            }
        }
        if !(self.tenant_writes_per_second.is_finite() && self.tenant_writes_per_second >= 0.0) {
            return Err(format!("{section}.tenant_writes_per_second must be 0 (none) or positive"));
        }
        Ok(())
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self::graph()
    }
}

/// The budgets of one (upstream, tenant, app).
#[derive(Clone)]
pub struct Budget {
    queue: Queue,
    /// The upstream's name in metrics (`graph`, `exchange`).
    upstream: String,
    app_writes: Limit,
    tenant_writes: Option<Limit>,
    reads: Limit,
    default_retry_after: Duration,
}

impl Budget {
    /// `upstream` names the service (`graph`, `exchange`); keys are
    /// `budget:{upstream}:{tenant}:{app}:writes`, `budget:{upstream}:{tenant}:writes`, ….
    pub fn new(queue: Queue, upstream: &str, tenant: &str, app: &str, cfg: &BudgetConfig) -> Self {
        let (tenant, app) = (tenant.to_ascii_lowercase(), app.to_ascii_lowercase());
        Self {
            queue,
            upstream: upstream.to_owned(),
            app_writes: Limit::new(
                format!("budget:{upstream}:{tenant}:{app}:writes"),
                cfg.writes_per_second,
                cfg.write_burst,
            ),
            tenant_writes: (cfg.tenant_writes_per_second > 0.0).then(|| {
                Limit::new(format!("budget:{upstream}:{tenant}:writes"), cfg.tenant_writes_per_second, cfg.write_burst)
            }),
            reads: Limit::new(format!("budget:{upstream}:{tenant}:{app}:reads"), cfg.reads_per_second, cfg.read_burst),
            default_retry_after: Duration::from_millis(cfg.default_retry_after_ms),
        }
    }

    /// The key of the app's write budget (for metrics and tests).
    pub fn write_key(&self) -> &str {
        &self.app_writes.key
    }

    async fn admit(&self, holder: &str, cost: u32, limits: &[Limit], what: &str) -> Result<(), JobError> {
        let label = if what == "write" { "writes" } else { "reads" };
        match self.queue.admit(holder, cost, limits).await {
            Ok(Admission::Granted { rate }) => {
                grantline_shared::metrics::budget_rate(&self.upstream, label, rate);
                Ok(())
            }
            Ok(Admission::Wait { after, rate }) => Err(JobError::wait(
                "budget.wait",
                format!("the tenant's {what} budget ({rate:.1}/s) has a slot in {} ms", after.as_millis()),
                after,
            )),
            Err(e) => Err(JobError::transient("redis.unavailable", e.to_string())),
        }
    }

    /// One write (of any size: a batch of 20 members is one write) for `holder`, a stable name
    /// of the piece of work so its reservation is found when it comes back.
    pub async fn write(&self, holder: &str) -> Result<(), JobError> {
        self.writes(holder, 1).await
    }

    /// `cost` writes at once (a `$batch` of deletes is one write per request).
    pub async fn writes(&self, holder: &str, cost: u32) -> Result<(), JobError> {
        let mut limits = vec![self.app_writes.clone()];
        limits.extend(self.tenant_writes.clone());
        self.admit(holder, cost, &limits, "write").await
    }

    /// Reads costing `cost` units.
    pub async fn read(&self, holder: &str, cost: u32) -> Result<(), JobError> {
        self.admit(holder, cost, std::slice::from_ref(&self.reads), "read").await
    }

    /// The upstream refused a call (429, or 503 with Retry-After): pause every caller of the
    /// budget it names and return the wait for the caller's job.
    pub async fn refused(&self, write: bool, scope: Option<&str>, retry_after: Option<Duration>) -> JobError {
        let after = retry_after.unwrap_or(self.default_retry_after);
        let limit = if !write {
            &self.reads
        } else {
            match (&self.tenant_writes, scope) {
                (Some(t), Some(s)) if s.starts_with("Tenant/") => t,
                _ => &self.app_writes,
            }
        };
        let label = if !write {
            "reads"
        } else if self.tenant_writes.as_ref() == Some(limit) {
            "tenant_writes"
        } else {
            "writes"
        };
        match self.queue.throttled(limit, after).await {
            Ok((until_ms, rate)) => {
                grantline_shared::metrics::budget_paused(&self.upstream, label, until_ms);
                grantline_shared::metrics::budget_rate(&self.upstream, label, rate);
            }
            Err(e) => {
                tracing::warn!(error = %e, budget = %limit.key, "could not record the pause; this job waits alone")
            }
        }
        tracing::info!(budget = %limit.key, retry_after_ms = after.as_millis() as u64, scope, "upstream refused a call; every caller pauses");
        // a little jitter, so the callers of one pause do not all return in the same millisecond
        let jitter = Duration::from_millis(u64::from(fastrand::u8(..)) * 2);
        JobError::wait(
            "upstream.throttled",
            format!("the upstream asked to wait {} ms ({})", after.as_millis(), scope.unwrap_or("no scope given")),
            after + jitter,
        )
    }
}
