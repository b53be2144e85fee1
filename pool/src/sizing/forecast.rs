//! Hearth's demand forecaster and the plain-EWMA baseline.
//!
//! Demand is counted per interval (default one minute): each draw from the
//! pool and each cold start it could have served. At every interval boundary
//! the forecaster updates additive Holt-Winters state:
//!
//! ```text
//! s      = season[slot(t)]
//! level' = α·(y − s) + (1 − α)·(level + trend)
//! trend' = β·(level' − level) + (1 − β)·trend
//! season[slot(t)] = γ·(y − level') + (1 − γ)·s
//! ŷ(t+k) = max(0, level' + k·trend' + season[slot(t+k)])
//! ```
//!
//! The season is one day, cut into slots (default five minutes) so each slot
//! learns from several intervals a day; its phase is the wall-clock time of
//! the clock's epoch (`season_offset_ms`). The target covers the draws
//! expected over the refill horizon at the level plus one step of trend plus
//! the highest seasonal component within the look-ahead (so the pool fills
//! *before* a predicted peak), plus a safety margin of `safety_z` Poisson
//! standard deviations:
//! `E = max(0, level + trend + max_{k < lookahead} season[slot(t+k)]) ×
//! horizon / interval`, target `= ceil(E + safety_z·√E)`, bounded by
//! min/max/budget.

use super::{ForecastSample, PoolSizer, SizeBounds, DEFAULT_SURPLUS_TTL_MS};
use crate::clock::{Millis, MS_PER_DAY, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForecastConfig {
    /// Demand is counted per interval.
    pub interval_ms: u64,
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing.
    pub beta: f64,
    /// Seasonal smoothing (zero disables the time-of-day component).
    pub gamma: f64,
    /// Length of the season: one day.
    pub season_ms: u64,
    /// Width of a seasonal slot.
    pub season_slot_ms: u64,
    /// Wall-clock time of day (ms) at the clock's epoch.
    pub season_offset_ms: u64,
    /// How long a refill takes to land: the pool must absorb this long of
    /// draws.
    pub refill_horizon_ms: u64,
    /// How far ahead a predicted rise is prepared for.
    pub lookahead_ms: u64,
    /// Safety margin in Poisson standard deviations.
    pub safety_z: f64,
    /// Surplus above target expires after this long unused.
    pub surplus_ttl_ms: u64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            interval_ms: MS_PER_MINUTE,
            alpha: 0.5,
            beta: 0.2,
            gamma: 0.3,
            season_ms: MS_PER_DAY,
            season_slot_ms: 5 * MS_PER_MINUTE,
            season_offset_ms: 0,
            refill_horizon_ms: MS_PER_MINUTE,
            lookahead_ms: 5 * MS_PER_MINUTE,
            safety_z: 1.0,
            surplus_ttl_ms: DEFAULT_SURPLUS_TTL_MS,
        }
    }
}

/// More closed intervals than this in one step are treated as a restart
/// (the node slept): the state is kept, only the current interval moves.
const MAX_CATCH_UP_INTERVALS: u64 = 4 * 24 * 60;

/// Hearth's forecaster for one general pool.
#[derive(Debug, Clone)]
pub struct DemandForecaster {
    cfg: ForecastConfig,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    initialized: bool,
    interval_start: Millis,
    count: u32,
    /// The forecast made for the current interval when it opened.
    current_forecast: f64,
    last: Option<ForecastSample>,
}

impl DemandForecaster {
    pub fn new(cfg: ForecastConfig, now: Millis) -> Self {
        let interval = cfg.interval_ms.max(1);
        let slots = usize::try_from(cfg.season_ms / cfg.season_slot_ms.max(1))
            .unwrap_or(1)
            .max(1);
        Self {
            level: 0.0,
            trend: 0.0,
            season: vec![0.0; slots],
            initialized: false,
            interval_start: Millis(now.0 - now.0 % interval),
            count: 0,
            current_forecast: 0.0,
            last: None,
            cfg,
        }
    }

    fn interval(&self) -> u64 {
        self.cfg.interval_ms.max(1)
    }

    fn slot(&self, t: Millis) -> usize {
        let season = self.cfg.season_ms.max(1);
        let in_season = (t.0 % season + self.cfg.season_offset_ms % season) % season;
        let slot = usize::try_from(in_season / self.cfg.season_slot_ms.max(1)).unwrap_or(0);
        slot.min(self.season.len() - 1)
    }

    /// Counts `n` units of demand at `now`.
    pub fn record(&mut self, now: Millis, n: u32) {
        self.advance(now);
        self.count = self.count.saturating_add(n);
    }

    /// Closes every interval that ended by `now`.
    pub fn advance(&mut self, now: Millis) {
        let interval = self.interval();
        let elapsed = now.since(self.interval_start) / interval;
        if elapsed > MAX_CATCH_UP_INTERVALS {
            self.close_interval();
            self.interval_start = Millis(now.0 - now.0 % interval);
            self.current_forecast = self.forecast_ahead(0);
            return;
        }
        for _ in 0..elapsed {
            self.close_interval();
        }
    }

    fn close_interval(&mut self) {
        let y = f64::from(self.count);
        let slot = self.slot(self.interval_start);
        let s = self.season[slot];
        if self.initialized {
            let prev = self.level;
            self.level =
                self.cfg.alpha * (y - s) + (1.0 - self.cfg.alpha) * (self.level + self.trend);
            self.trend = self.cfg.beta * (self.level - prev) + (1.0 - self.cfg.beta) * self.trend;
        } else {
            self.level = y - s;
            self.initialized = true;
        }
        self.season[slot] = self.cfg.gamma * (y - self.level) + (1.0 - self.cfg.gamma) * s;
        self.last = Some(ForecastSample {
            interval_start: self.interval_start,
            interval_ms: self.interval(),
            forecast: self.current_forecast,
            actual: self.count,
        });
        self.interval_start = self.interval_start.plus(self.interval());
        self.count = 0;
        self.current_forecast = self.forecast_ahead(0);
    }

    /// Forecast demand in the interval `k` intervals after the current one
    /// (`0`: the current interval).
    pub fn forecast_ahead(&self, k: u64) -> f64 {
        let t = self.interval_start.plus(k * self.interval());
        let steps = (k + 1) as f64;
        (self.level + steps * self.trend + self.season[self.slot(t)]).max(0.0)
    }

    /// Demand expected over the refill horizon: the level and one step of
    /// trend, plus the highest seasonal component within the look-ahead
    /// (the trend is not extrapolated over the look-ahead: after a step it
    /// would overshoot; the season is what predicts a coming peak).
    pub fn expected_demand(&self) -> f64 {
        let interval = self.interval();
        let lookahead = (self.cfg.lookahead_ms / interval).max(1);
        let season_peak = (0..lookahead)
            .map(|k| self.season[self.slot(self.interval_start.plus(k * interval))])
            .fold(f64::NEG_INFINITY, f64::max);
        let rate = (self.level + self.trend + season_peak).max(0.0);
        rate * self.cfg.refill_horizon_ms as f64 / interval as f64
    }
}

impl PoolSizer for DemandForecaster {
    fn name(&self) -> String {
        "hearth-forecast".to_owned()
    }

    fn record_draw(&mut self, now: Millis) {
        self.record(now, 1);
    }

    fn record_cold_start(&mut self, now: Millis) {
        self.record(now, 1);
    }

    fn target(&mut self, now: Millis, bounds: SizeBounds) -> u32 {
        self.advance(now);
        let e = self.expected_demand();
        bounds.apply(e + self.cfg.safety_z * e.sqrt())
    }

    fn last_interval(&self) -> Option<ForecastSample> {
        self.last
    }

    fn unused_expiry(&self, target: u32, _min: u32) -> (u64, u32) {
        (self.cfg.surplus_ttl_ms, target)
    }
}

/// The naive forecaster: an exponentially weighted moving average of the
/// draws per interval, no trend, no season.
#[derive(Debug, Clone)]
pub struct EwmaSizer {
    alpha: f64,
    interval_ms: u64,
    rate: f64,
    initialized: bool,
    interval_start: Millis,
    count: u32,
    last: Option<ForecastSample>,
}

impl EwmaSizer {
    pub fn new(alpha: f64, interval_ms: u64, now: Millis) -> Self {
        let interval_ms = interval_ms.max(1);
        Self {
            alpha,
            interval_ms,
            rate: 0.0,
            initialized: false,
            interval_start: Millis(now.0 - now.0 % interval_ms),
            count: 0,
            last: None,
        }
    }

    pub fn advance(&mut self, now: Millis) {
        let elapsed =
            (now.since(self.interval_start) / self.interval_ms).min(MAX_CATCH_UP_INTERVALS);
        for _ in 0..elapsed {
            let y = f64::from(self.count);
            self.last = Some(ForecastSample {
                interval_start: self.interval_start,
                interval_ms: self.interval_ms,
                forecast: self.rate,
                actual: self.count,
            });
            self.rate = if self.initialized {
                self.alpha * y + (1.0 - self.alpha) * self.rate
            } else {
                y
            };
            self.initialized = true;
            self.count = 0;
            self.interval_start = self.interval_start.plus(self.interval_ms);
        }
        if now.since(self.interval_start) >= self.interval_ms {
            self.interval_start = Millis(now.0 - now.0 % self.interval_ms);
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl PoolSizer for EwmaSizer {
    fn name(&self) -> String {
        "ewma".to_owned()
    }

    fn record_draw(&mut self, now: Millis) {
        self.advance(now);
        self.count = self.count.saturating_add(1);
    }

    fn record_cold_start(&mut self, now: Millis) {
        self.record_draw(now);
    }

    fn target(&mut self, now: Millis, bounds: SizeBounds) -> u32 {
        self.advance(now);
        bounds.apply(self.rate + self.rate.sqrt())
    }

    fn last_interval(&self) -> Option<ForecastSample> {
        self.last
    }

    fn unused_expiry(&self, target: u32, _min: u32) -> (u64, u32) {
        (DEFAULT_SURPLUS_TTL_MS, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MS_PER_HOUR;

    const MIN: u64 = MS_PER_MINUTE;

    /// Feeds `per_minute(minute)` draws spread over each minute, calling
    /// `each(minute)` at each minute boundary before the draws.
    fn drive(
        sizers: &mut [&mut dyn PoolSizer],
        minutes: std::ops::Range<u64>,
        per_minute: impl Fn(u64) -> u32,
        mut each: impl FnMut(u64, &mut [&mut dyn PoolSizer]),
    ) {
        for m in minutes {
            each(m, sizers);
            let n = per_minute(m);
            for i in 0..n {
                let t = Millis(m * MIN + u64::from(i) * MIN / u64::from(n.max(1)));
                for s in sizers.iter_mut() {
                    s.record_draw(t);
                }
            }
        }
    }

    fn unbounded() -> SizeBounds {
        SizeBounds::new(0, 10_000)
    }

    #[test]
    fn follows_a_step() {
        let mut h = DemandForecaster::new(ForecastConfig::default(), Millis(0));
        drive(
            &mut [&mut h],
            0..30,
            |m| if m < 20 { 2 } else { 20 },
            |_, _| {},
        );
        let t = h.target(Millis(30 * MIN), unbounded());
        // 20 a minute expected, plus about one standard deviation.
        assert!((20..=30).contains(&t), "target {t}");
        let last = h.last_interval().unwrap();
        assert_eq!(last.actual, 20);
        assert!(last.forecast > 15.0, "{last:?}");
    }

    #[test]
    fn trend_keeps_up_with_a_ramp_where_ewma_lags() {
        let cfg = ForecastConfig {
            gamma: 0.0,
            ..ForecastConfig::default()
        };
        let mut h = DemandForecaster::new(cfg, Millis(0));
        let mut e = EwmaSizer::new(0.5, MIN, Millis(0));
        // Demand rises by 2 a minute.
        drive(&mut [&mut h, &mut e], 0..40, |m| (2 * m) as u32, |_, _| {});
        let next = 80.0;
        h.advance(Millis(40 * MIN));
        e.advance(Millis(40 * MIN));
        let holt = h.forecast_ahead(0);
        assert!((holt - next).abs() < 3.0, "holt {holt}");
        assert!(e.rate() < next - 2.0, "ewma lags: {}", e.rate());
        assert!(h.target(Millis(40 * MIN), unbounded()) > e.target(Millis(40 * MIN), unbounded()));
    }

    #[test]
    fn daily_peak_is_prepared_for_before_it_comes() {
        // Quiet (1 a minute) except 09:00-10:00 (30 a minute), for 4 days.
        let peak = |m: u64| {
            let in_day = m % (24 * 60);
            if (9 * 60..10 * 60).contains(&in_day) {
                30
            } else {
                1
            }
        };
        let mut h = DemandForecaster::new(ForecastConfig::default(), Millis(0));
        let mut e = EwmaSizer::new(0.5, MIN, Millis(0));
        let day = 24 * 60;
        drive(
            &mut [&mut h, &mut e],
            0..3 * day + 8 * 60 + 57,
            peak,
            |_, _| {},
        );
        // 08:57 on day four: both have seen a quiet hour.
        let now = Millis((3 * day + 8 * 60 + 57) * MIN);
        let th = h.target(now, unbounded());
        let te = e.target(now, unbounded());
        assert!(te <= 3, "ewma sees only the quiet morning: {te}");
        assert!(th >= 15, "the season predicts the 09:00 peak: {th}");
        // And in the quiet of the night it holds little.
        let mut h2 = h.clone();
        let night = Millis((3 * day + 9 * 60) * MIN + 14 * MS_PER_HOUR);
        h2.record(night, 0);
        assert!(h2.target(night, unbounded()) <= 4);
    }

    #[test]
    fn targets_are_bounded() {
        let mut h = DemandForecaster::new(ForecastConfig::default(), Millis(0));
        drive(&mut [&mut h], 0..10, |_| 100, |_, _| {});
        let now = Millis(10 * MIN);
        assert_eq!(h.target(now, SizeBounds::new(0, 40)), 40);
        assert_eq!(
            h.target(
                now,
                SizeBounds {
                    min: 0,
                    max: 1_000,
                    budget_cap: 12
                }
            ),
            12
        );
        let mut idle = DemandForecaster::new(ForecastConfig::default(), Millis(0));
        assert_eq!(idle.target(Millis(5 * MIN), SizeBounds::new(3, 10)), 3);
    }

    #[test]
    fn long_sleep_does_not_loop_forever() {
        let mut h = DemandForecaster::new(ForecastConfig::default(), Millis(0));
        h.record(Millis(0), 5);
        h.record(Millis(365 * MS_PER_DAY), 1);
        assert!(h.target(Millis(365 * MS_PER_DAY + 1), unbounded()) < 20);
    }
}
