//! A controllable clock shared by the simulators of one [`crate::Sims`].
//!
//! Time is the wall clock plus an offset that tests advance. Token expiry, `Retry-After`, throttling
//! windows, rate-limit hours and replication delays all read this clock, so a test can move past an
//! expiry without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Wall-clock time plus an adjustable offset. Cloning shares the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// A clock with no offset.
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated current time.
    pub fn now(&self) -> Timestamp {
        let real = Timestamp::now();
        let offset = SignedDuration::from_millis(self.offset_ms.load(Ordering::SeqCst));
        real.checked_add(offset).unwrap_or(real)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the offset from the wall clock (may be negative).
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
}
