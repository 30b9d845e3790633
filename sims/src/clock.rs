//! A controllable clock shared by the simulators of one [`crate::Sims`].
//!
//! Time is the wall clock plus an offset that tests advance. Token expiry, `Retry-After`, throttling
//! windows, rate-limit hours and replication delays all read this clock, so a test can move past an
//! expiry without waiting. A frozen clock ([`Clock::freeze`]) stands still until advanced, so a
//! test that counts a budget refilling by the second does not depend on how fast the machine is.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Wall-clock time (or a frozen instant) plus an adjustable offset. Cloning shares both.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// The instant the clock stands at when frozen (ms since the epoch); 0 while it runs.
    frozen_ms: Arc<AtomicI64>,
}

impl Clock {
    /// A clock with no offset.
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated current time.
    pub fn now(&self) -> Timestamp {
        let real = match self.frozen_ms.load(Ordering::SeqCst) {
            0 => Timestamp::now(),
            ms => Timestamp::from_millisecond(ms).unwrap_or_else(|_| Timestamp::now()),
        };
        let offset = SignedDuration::from_millis(self.offset_ms.load(Ordering::SeqCst));
        real.checked_add(offset).unwrap_or(real)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Stops the clock where it is now: from here on only [`Clock::advance`] and
    /// [`Clock::set_offset`] move it.
    pub fn freeze(&self) {
        let now = Timestamp::now().as_millisecond().max(1);
        // the instant the clock showed, offset included, stays what it shows
        let _ = self.frozen_ms.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Sets the offset from the wall clock, or from the instant it was frozen at (may be
    /// negative).
    pub fn set_offset(&self, offset: SignedDuration) {
        let ms = i64::try_from(offset.as_millis()).unwrap_or(0);
        self.offset_ms.store(ms, Ordering::SeqCst);
    }

    /// The current offset from the wall clock.
    pub fn offset(&self) -> SignedDuration {
        SignedDuration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Seconds since the Unix epoch, simulated.
    pub fn unix_seconds(&self) -> i64 {
        self.now().as_second()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let clock = Clock::new();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        let after = clock.now();
        assert!(after.duration_since(before) >= SignedDuration::from_secs(3600));
        let shared = clock.clone();
        shared.advance(Duration::from_secs(60));
        assert_eq!(clock.offset(), SignedDuration::from_secs(3660));
    }

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let clock = Clock::new();
        clock.advance(Duration::from_secs(60));
        clock.freeze();
        let at = clock.now();
        assert!(at.duration_since(Timestamp::now()) >= SignedDuration::from_secs(59));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), at);
        clock.clone().advance(Duration::from_millis(1500));
        assert_eq!(clock.now().duration_since(at), SignedDuration::from_millis(1500));
        // freezing again keeps the instant
        clock.freeze();
        assert_eq!(clock.now().duration_since(at), SignedDuration::from_millis(1500));
    }
}
