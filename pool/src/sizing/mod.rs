//! Sizing the general sub-pool: how many shell- or runtime-warm sandboxes
//! each profile holds.
//!
//! A [`PoolSizer`] watches one general pool's demand (draws from it, and the
//! cold starts it could have served) and answers a target. Three are here:
//!
//! - [`DemandForecaster`], Hearth's: Holt-Winters additive smoothing of the
//!   draws per interval — an exponentially weighted level, its linear trend,
//!   and a per-time-of-day seasonal component — holding the forecast over the
//!   refill horizon (the highest over a short look-ahead, to be ready before
//!   a predicted peak) plus a Poisson safety margin;
//! - [`EwmaSizer`], a plain exponentially weighted rate, the naive
//!   forecaster the trend and season must beat;
//! - [`ReactivePrewarm`], OpenWhisk's reactive `stemCells` prewarming, the
//!   baseline Hearth is measured against.
//!
//! Every target is bounded by the pool's min/max and by what the node's
//! memory budget can hold ([`SizeBounds`]).

mod forecast;
mod reactive;

pub use forecast::{DemandForecaster, EwmaSizer, ForecastConfig};
pub use reactive::{ReactivePrewarm, ReactivePrewarmConfig};

use crate::clock::{Millis, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What bounds a pool's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeBounds {
    pub min: u32,
    pub max: u32,
    /// The most sandboxes of this pool the memory budget can hold now
    /// (current supply plus what the free budget can build).
    pub budget_cap: u32,
}

impl SizeBounds {
    pub fn new(min: u32, max: u32) -> Self {
        Self {
            min,
            max,
            budget_cap: u32::MAX,
        }
    }

    /// `clamp(ceil(raw), min, max)`, then no more than the budget allows
    /// (the budget wins over the minimum: memory is a hard limit).
    pub fn apply(&self, raw: f64) -> u32 {
        let wanted = if raw.is_finite() && raw > 0.0 {
            raw.ceil().min(f64::from(u32::MAX)) as u32
        } else {
            0
        };
        wanted
            .clamp(self.min, self.max.max(self.min))
            .min(self.budget_cap)
    }
}

/// One interval's forecast beside what actually happened, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastSample {
    pub interval_start: Millis,
    pub interval_ms: u64,
    /// Demand forecast for the interval before it started.
    pub forecast: f64,
    /// Draws and cold starts that happened in it.
    pub actual: u32,
}

/// A general pool's sizing policy. Object-safe; chosen by [`SizerConfig`].
pub trait PoolSizer: fmt::Debug + Send {
    fn name(&self) -> String;

    /// A sandbox was drawn from the pool.
    fn record_draw(&mut self, now: Millis);

    /// A cold start happened that the pool could have served.
    fn record_cold_start(&mut self, now: Millis);

    /// The pool's target at `now`.
    fn target(&mut self, now: Millis, bounds: SizeBounds) -> u32;

    /// The last closed interval's forecast and actual demand.
    fn last_interval(&self) -> Option<ForecastSample>;

    /// Unused sandboxes of the pool expire after `ttl_ms` while the pool
    /// holds more than `floor`: `(ttl_ms, floor)`.
    fn unused_expiry(&self, target: u32, min: u32) -> (u64, u32);
}

/// How long surplus general sandboxes (above target) stay before expiring.
pub const DEFAULT_SURPLUS_TTL_MS: u64 = 2 * MS_PER_MINUTE;

/// Which sizing policy the general pools use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sizer", rename_all = "kebab-case")]
pub enum SizerConfig {
    /// Hold the pool's minimum, always.
    Fixed,
    /// Hearth's forecaster.
    Forecast(ForecastConfig),
    /// A plain EWMA of the draw rate.
    Ewma { alpha: f64, interval_ms: u64 },
    /// OpenWhisk's reactive prewarm.
    OpenwhiskReactive(ReactivePrewarmConfig),
}

impl Default for SizerConfig {
    fn default() -> Self {
        SizerConfig::Forecast(ForecastConfig::default())
    }
}

impl SizerConfig {
    pub fn build(&self, now: Millis) -> Box<dyn PoolSizer> {
        match self {
            SizerConfig::Fixed => Box::new(FixedSize),
            SizerConfig::Forecast(c) => Box::new(DemandForecaster::new(c.clone(), now)),
            SizerConfig::Ewma { alpha, interval_ms } => {
                Box::new(EwmaSizer::new(*alpha, *interval_ms, now))
            }
            SizerConfig::OpenwhiskReactive(c) => Box::new(ReactivePrewarm::new(c.clone())),
        }
    }
}

/// A pool held at its minimum.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedSize;

impl PoolSizer for FixedSize {
    fn name(&self) -> String {
        "fixed".to_owned()
    }

    fn record_draw(&mut self, _now: Millis) {}

    fn record_cold_start(&mut self, _now: Millis) {}

    fn target(&mut self, _now: Millis, bounds: SizeBounds) -> u32 {
        bounds.apply(0.0)
    }

    fn last_interval(&self) -> Option<ForecastSample> {
        None
    }

    fn unused_expiry(&self, target: u32, _min: u32) -> (u64, u32) {
        (DEFAULT_SURPLUS_TTL_MS, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_clamp_then_budget() {
        let b = SizeBounds {
            min: 2,
            max: 10,
            budget_cap: 6,
        };
        assert_eq!(b.apply(0.0), 2);
        assert_eq!(b.apply(4.2), 5);
        assert_eq!(b.apply(50.0), 6);
        assert_eq!(b.apply(f64::NAN), 2);
        let tight = SizeBounds { budget_cap: 1, ..b };
        assert_eq!(tight.apply(0.0), 1, "the budget beats the minimum");
        assert_eq!(SizeBounds::new(0, 3).apply(99.0), 3);
    }

    #[test]
    fn config_round_trips() {
        let c: SizerConfig = serde_json::from_str(r#"{"sizer":"openwhisk-reactive"}"#).unwrap();
        assert_eq!(c.build(Millis(0)).name(), "openwhisk-reactive");
        let c: SizerConfig = serde_json::from_str(r#"{"sizer":"forecast","alpha":0.3}"#).unwrap();
        assert_eq!(c.build(Millis(0)).name(), "hearth-forecast");
        assert_eq!(
            SizerConfig::Fixed
                .build(Millis(0))
                .target(Millis(0), SizeBounds::new(3, 5)),
            3
        );
    }
}
