//! A shared rate budget in Redis: every process that calls one upstream on behalf of one
//! tenant draws from the same budget, so the upstream's limit is respected by the fleet, not
//! by each caller on its own.
//!
//! - [`Queue::admit`] asks for `cost` units of one or more budgets at once (for example the
//!   app's share of a tenant and the tenant's total). It either grants now, or reserves the
//!   caller's slot and says how long to wait: the caller reschedules its job for then (the job
//!   waits in Redis, never in a worker slot) and is granted on its reservation when it comes
//!   back, without spending the budget twice. Waiting callers are spread over the budget, not
//!   retrying all at once.
//! - [`Queue::throttled`] is what a caller reports when the upstream refused a call anyway (429,
//!   or 503 with Retry-After): every caller of the budget pauses until the time it names, and
//!   the budget's rate is lowered (multiplicatively, once per pause); it climbs back slowly
//!   (additively) once no refusal has come for a while.
//!
//! The queue knows nothing of what the budgets are for: keys and rates are the caller's.

use std::time::Duration;

use crate::QueueError;
use crate::queue::{Queue, ints};
use crate::scripts::SCRIPTS;

/// One budget: its key (relative to the namespace) and how it behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub key: String,
    /// The rate it starts from and never exceeds, in units per second.
    pub rate: f64,
    /// The floor the rate never drops below.
    pub min_rate: f64,
    /// Units that may be spent at once after an idle period.
    pub burst: f64,
    /// How long without a refusal before the rate starts climbing back.
    pub recover: Duration,
    /// How fast it climbs back, in units per second gained per second.
    pub step: f64,
    /// What a refusal multiplies the rate by.
    pub decrease: f64,
}

impl Limit {
    /// A budget of `rate` units per second with a burst of `burst`, learning down to a tenth of
    /// its rate on refusals and back at 1 % of it per second after 30 s without one.
    pub fn new(key: impl Into<String>, rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.001);
        Self {
            key: key.into(),
            rate,
            min_rate: (rate / 10.0).max(0.001),
            burst: burst.max(1.0),
            recover: Duration::from_secs(30),
            step: rate / 100.0,
            decrease: 0.7,
        }
    }
}

/// The answer to [`Queue::admit`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    /// Go ahead now.
    Granted { rate: f64 },
    /// A slot is reserved for the caller this far ahead: come back then.
    Wait { after: Duration, rate: f64 },
}

/// What a budget looks like now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitState {
    /// The learned rate, units per second (the configured rate before any refusal).
    pub rate: Option<f64>,
    /// Callers are paused until this time (ms since the epoch, Redis clock), if in the future.
    pub paused_until_ms: Option<u64>,
}

impl Queue {
    /// Asks for `cost` units of every budget in `limits` for `holder` (a stable name of the
    /// caller's piece of work, so that its reservation is found when it comes back).
    pub async fn admit(&self, holder: &str, cost: u32, limits: &[Limit]) -> Result<Admission, QueueError> {
        let Some(first) = limits.first() else { return Ok(Admission::Granted { rate: f64::INFINITY }) };
        let ns = self.namespace();
        let mut keys: Vec<String> = limits.iter().map(|l| ns.key(&l.key)).collect();
        keys.push(ns.key(&format!("{}:resv", first.key)));
        let mut args = vec![holder.to_owned(), cost.max(1).to_string(), limits.len().to_string()];
        for l in limits {
            args.extend([
                l.rate.to_string(),
                l.min_rate.to_string(),
                l.burst.to_string(),
                crate::queue::ms(l.recover).to_string(),
                l.step.to_string(),
            ]);
        }
        let v = self.invoke(&SCRIPTS.admit, &keys, &args).await?;
        let n = ints(&v);
        let rate = n.get(2).copied().unwrap_or(0) as f64 / 1000.0;
        match n.first() {
            Some(1) => Ok(Admission::Granted { rate }),
            Some(0) => {
                Ok(Admission::Wait { after: Duration::from_millis(n.get(1).copied().unwrap_or(1).max(1)), rate })
            }
            _ => Err(QueueError::Protocol(format!("unexpected reply from admit: {v:?}"))),
        }
    }

    /// Reports that the upstream refused a call of `limit`'s budget and asked to wait
    /// `retry_after`: pauses every caller until then and lowers the rate. Returns when the pause
    /// ends (ms, Redis clock) and the new rate.
    pub async fn throttled(&self, limit: &Limit, retry_after: Duration) -> Result<(u64, f64), QueueError> {
        let key = self.namespace().key(&limit.key);
        let args = [
            crate::queue::ms(retry_after).to_string(),
            limit.min_rate.to_string(),
            limit.decrease.to_string(),
            limit.rate.to_string(),
        ];
        let v = self.invoke(&SCRIPTS.throttle, &[key], &args).await?;
        let n = ints(&v);
        Ok((n.first().copied().unwrap_or(0), n.get(1).copied().unwrap_or(0) as f64 / 1000.0))
    }

    /// The learned rate and pause of a budget.
    pub async fn limit_state(&self, key: &str) -> Result<LimitState, QueueError> {
        let mut conn = self.connection();
        let (rate, paused): (Option<f64>, Option<f64>) =
            redis::cmd("HMGET").arg(self.namespace().key(key)).arg("rate").arg("paused").query_async(&mut conn).await?;
        Ok(LimitState { rate, paused_until_ms: paused.map(|p| p as u64) })
    }
}
