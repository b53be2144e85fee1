//! OpenWhisk's reactive prewarm (`stemCells` with a `reactive` block), the
//! sizing baseline.
//!
//! Every minute, per (runtime, memory): `target = min(max(minCount,
//! coldStarts / threshold × increment), maxCount)`, counting the cold starts
//! of the previous minute (integer division, as OpenWhisk's Scala `Int`
//! arithmetic); until the first minute has passed, `initialCount`. Unused
//! prewarms expire after `ttl` while more than `minCount` remain.
//!
//! Defaults are OpenWhisk's shipped `runtimes.json` stem cell (nodejs:14,
//! 256 MB): initialCount 2, minCount 1, maxCount 4, ttl 2 minutes,
//! threshold 1, increment 1. `minCount`/`maxCount` come from the pool's
//! [`SizeBounds`] so one pool configuration serves every sizer. OpenWhisk
//! matches prewarms on exact (kind, memory); Hearth matches on memory class.

use super::{ForecastSample, PoolSizer, SizeBounds};
use crate::clock::{Millis, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReactivePrewarmConfig {
    pub initial_count: u32,
    pub ttl_ms: u64,
    pub threshold: u32,
    pub increment: u32,
    /// How often the target is recomputed (OpenWhisk: every minute).
    pub check_interval_ms: u64,
}

impl Default for ReactivePrewarmConfig {
    fn default() -> Self {
        Self {
            initial_count: 2,
            ttl_ms: 2 * MS_PER_MINUTE,
            threshold: 1,
            increment: 1,
            check_interval_ms: MS_PER_MINUTE,
        }
    }
}

/// OpenWhisk's reactive prewarm for one pool.
#[derive(Debug, Clone)]
pub struct ReactivePrewarm {
    cfg: ReactivePrewarmConfig,
    cold_starts: VecDeque<Millis>,
    desired: Option<u32>,
    next_check: Option<Millis>,
    last: Option<ForecastSample>,
}

impl ReactivePrewarm {
    pub fn new(cfg: ReactivePrewarmConfig) -> Self {
        Self {
            cfg,
            cold_starts: VecDeque::new(),
            desired: None,
            next_check: None,
            last: None,
        }
    }

    /// The formula, on its own.
    pub fn formula(cold_starts: u32, threshold: u32, increment: u32, min: u32, max: u32) -> u32 {
        let computed = (cold_starts / threshold.max(1)).saturating_mul(increment);
        computed.max(min).min(max)
    }
}

impl PoolSizer for ReactivePrewarm {
    fn name(&self) -> String {
        "openwhisk-reactive".to_owned()
    }

    fn record_draw(&mut self, _now: Millis) {}

    fn record_cold_start(&mut self, now: Millis) {
        self.cold_starts.push_back(now);
    }

    fn target(&mut self, now: Millis, bounds: SizeBounds) -> u32 {
        let interval = self.cfg.check_interval_ms.max(1);
        let mut check = *self.next_check.get_or_insert(now.plus(interval));
        while now >= check {
            let window_start = check.minus(MS_PER_MINUTE);
            while self.cold_starts.front().is_some_and(|t| *t < window_start) {
                self.cold_starts.pop_front();
            }
            let n = self.cold_starts.iter().take_while(|t| **t < check).count();
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let desired = Self::formula(
                n,
                self.cfg.threshold,
                self.cfg.increment,
                bounds.min,
                bounds.max,
            );
            self.last = Some(ForecastSample {
                interval_start: window_start,
                interval_ms: MS_PER_MINUTE,
                forecast: f64::from(self.desired.unwrap_or(self.cfg.initial_count)),
                actual: n,
            });
            self.desired = Some(desired);
            check = check.plus(interval);
        }
        self.next_check = Some(check);
        let desired = self.desired.unwrap_or(self.cfg.initial_count);
        desired
            .min(bounds.max.max(bounds.min))
            .min(bounds.budget_cap)
    }

    fn last_interval(&self) -> Option<ForecastSample> {
        self.last
    }

    fn unused_expiry(&self, _target: u32, min: u32) -> (u64, u32) {
        (self.cfg.ttl_ms, min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formula_with_openwhisk_defaults() {
        // min 1, max 4, threshold 1, increment 1.
        assert_eq!(ReactivePrewarm::formula(0, 1, 1, 1, 4), 1);
        assert_eq!(ReactivePrewarm::formula(2, 1, 1, 1, 4), 2);
        assert_eq!(ReactivePrewarm::formula(9, 1, 1, 1, 4), 4);
        // OpenWhisk's documented example: 2 cold starts, threshold 2,
        // increment 1 -> 1.
        assert_eq!(ReactivePrewarm::formula(2, 2, 1, 0, 4), 1);
        // Integer division: 3 / 2 × 3 = 3.
        assert_eq!(ReactivePrewarm::formula(3, 2, 3, 0, 10), 3);
    }

    #[test]
    fn reacts_to_the_previous_minutes_cold_starts() {
        let mut s = ReactivePrewarm::new(ReactivePrewarmConfig::default());
        let b = SizeBounds::new(1, 4);
        assert_eq!(
            s.target(Millis(0), b),
            2,
            "initial count until the first check"
        );
        for t in [10_000, 20_000, 30_000] {
            s.record_cold_start(Millis(t));
        }
        assert_eq!(s.target(Millis(59_999), b), 2);
        assert_eq!(s.target(Millis(60_000), b), 3);
        // A quiet minute brings it back to the minimum.
        assert_eq!(s.target(Millis(120_000), b), 1);
        for i in 0..10 {
            s.record_cold_start(Millis(130_000 + i));
        }
        assert_eq!(s.target(Millis(180_000), b), 4, "capped at maxCount");
        let tight = SizeBounds { budget_cap: 2, ..b };
        assert_eq!(s.target(Millis(180_001), tight), 2, "and by the budget");
        assert_eq!(s.unused_expiry(4, 1), (120_000, 1));
        let sample = s.last_interval().unwrap();
        assert_eq!(sample.actual, 10);
    }
}
