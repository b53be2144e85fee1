//! Time as the capacity logic sees it: milliseconds on an injected clock.
//!
//! Every decision in this crate takes `now` as an argument or reads it from a
//! [`Clock`], so that a replay can run a day of trace in milliseconds and a
//! test can step over an expiry boundary exactly.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// An instant: milliseconds since the clock's epoch (for [`MonotonicClock`],
/// its creation; for a replay, the start of the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

pub const MS_PER_SECOND: u64 = 1_000;
pub const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

impl Millis {
    pub const ZERO: Millis = Millis(0);

    pub const fn from_secs(s: u64) -> Self {
        Millis(s * MS_PER_SECOND)
    }

    pub const fn from_mins(m: u64) -> Self {
        Millis(m * MS_PER_MINUTE)
    }

    pub const fn as_ms(self) -> u64 {
        self.0
    }

    /// This instant moved `ms` later (saturating: far future, not a wrap).
    #[must_use]
    pub const fn plus(self, ms: u64) -> Self {
        Millis(self.0.saturating_add(ms))
    }

    /// This instant moved `ms` earlier, not before the epoch.
    #[must_use]
    pub const fn minus(self, ms: u64) -> Self {
        Millis(self.0.saturating_sub(ms))
    }

    /// Milliseconds elapsed since `earlier` (zero if `earlier` is later).
    pub const fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The source of `now`. Object-safe so the supervisor can hold a
/// `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Millis;
}

/// A clock that only moves when told to: tests and replays.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self {
            now: AtomicU64::new(start.0),
        }
    }

    pub fn set(&self, t: Millis) {
        self.now.store(t.0, Ordering::Relaxed);
    }

    pub fn advance(&self, ms: u64) -> Millis {
        Millis(self.now.fetch_add(ms, Ordering::Relaxed).saturating_add(ms))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.now.load(Ordering::Relaxed))
    }
}

/// The real clock: monotonic milliseconds since this value was created.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Millis {
        // u64 milliseconds cover 584 million years of uptime.
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Millis(5));
        assert_eq!(c.now(), Millis(5));
        assert_eq!(c.advance(10), Millis(15));
        c.set(Millis::from_mins(2));
        assert_eq!(c.now(), Millis(120_000));
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(3).since(Millis(5)), 0);
        assert_eq!(Millis(u64::MAX).plus(1), Millis(u64::MAX));
        assert_eq!(Millis(3).minus(5), Millis::ZERO);
    }

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let c = MonotonicClock::new();
        let a = c.now();
        assert!(c.now() >= a);
    }
}
