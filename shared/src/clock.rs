//! The one clock of a grantline process: the workers, the scheduler, the HTTP edge and policy
//! evaluation all read it, so a test or the demo can move time forward for all of them at once
//! (approval deadlines, reminders, expiry) without waiting.
//!
//! A clock is a time source plus an offset. The source is the wall clock, or any function (the
//! simulators' clock in tests, so the directory, the ticket system and grantline agree on the
//! time). Cloning shares the offset: advancing one clone advances them all.
//!
//! Work that the queue times by itself (delayed jobs, leases) runs on the Redis server's clock;
//! callers hand it delays relative to this clock's "now" ([`Clock::until`]), and the scheduler's
//! sweeps, which read this clock, catch anything whose time came while the clock was moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

type Source = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A controllable clock. Cheap to clone; clones share the offset.
#[derive(Clone)]
pub struct Clock {
    source: Source,
    offset_ms: Arc<AtomicI64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").field("now", &self.now()).field("offset_ms", &self.offset_ms()).finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self::from_fn(Timestamp::now)
    }

    /// A clock that reads `source` (plus this clock's own offset).
    pub fn from_fn(source: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self { source: Arc::new(source), offset_ms: Arc::new(AtomicI64::new(0)) }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        let base = (self.source)();
        base.checked_add(SignedDuration::from_millis(self.offset_ms())).unwrap_or(base)
    }

    /// The current time in milliseconds since the Unix epoch (0 before it).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now().as_millisecond()).unwrap_or(0)
    }

    /// Moves this clock (and every clone) forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The offset from the source, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// How long from now until `at_ms` (zero when it has passed): the delay to hand the queue
    /// for a job due at `at_ms` on this clock.
    pub fn until(&self, at_ms: u64) -> Duration {
        Duration::from_millis(at_ms.saturating_sub(self.now_ms()))
    }
}

/// Milliseconds since the epoch of a timestamp (0 before it).
pub fn ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// The timestamp of milliseconds since the epoch.
pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_offset_and_until_counts_from_now() {
        let fixed = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = Clock::from_fn(move || fixed);
        let other = clock.clone();
        assert_eq!(clock.now(), fixed);
        other.advance(Duration::from_secs(3600));
        assert_eq!(clock.now_ms(), ms(fixed) + 3_600_000);
        assert_eq!(clock.until(clock.now_ms() + 1500), Duration::from_millis(1500));
        assert_eq!(clock.until(0), Duration::ZERO);
        assert_eq!(timestamp(ms(fixed)), fixed);
    }
}
