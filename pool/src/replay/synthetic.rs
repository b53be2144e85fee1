//! A seedable synthetic trace with the published shape of the Azure
//! Functions 2019 trace (Shahrad et al., USENIX ATC 2020, section 3).
//!
//! What is taken from the paper (and the public dataset's description):
//!
//! - invocation rates span about eight orders of magnitude and most
//!   functions are rare: the daily rate is log-normal in base 10,
//!   `log10(invocations/day) ~ N(1.6, 1.6)` clipped to `[-1.2, 6.8]`, which
//!   puts about 45% of functions at once an hour or less and about 80% at
//!   once a minute or less, the paper's figures for applications;
//! - trigger shares of functions: HTTP 55%, timer 16%, queue 15%,
//!   orchestration 7%, event 2%, others (storage included) 5%; queue and
//!   event functions carry more invocations each (their rate is drawn ten
//!   times higher), timers fewer;
//! - functions per application: 1 (54%), 2 (16%), 3 (10%), 4–5 (8%), 6–10
//!   (7%), 11–20 (5%);
//! - about half the functions run for less than a second on average.
//!
//! The arrival model is Hearth's:
//!
//! - **timer** functions fire periodically, with the cron-like period
//!   (1, 2, 5, 10, 15, 30 minutes, 1, 2, 4, 6, 12, 24 hours) nearest their
//!   drawn rate, a random phase and up to 2 s of jitter;
//! - **queue, event and storage** functions are bursty: batches arrive as a
//!   Poisson process, each of 1 + geometric(mean 4) invocations spaced by
//!   exponential gaps of mean 200 ms;
//! - **HTTP, orchestration and others** are Poisson with a diurnal
//!   modulation `λ(t) = λ·(1 + 0.6·sin(2π(t/day − φ)))`, φ per function;
//! - mean durations are log-normal (median 0.7 s, σ = 2.0 in natural log,
//!   capped at 15 minutes), each invocation varying log-normally (σ = 0.5)
//!   around its function's mean;
//! - `MemorySize` per application: 128 MB (45%), 256 (30%), 512 (15%), 1024
//!   (7%), 2048 (3%); runtime per application: Python 50%, Node 35%,
//!   `provided` 15%; init time log-normal around 250 ms (Python), 150 ms
//!   (Node), 50 ms (`provided`).
//!
//! The generator is a pure function of its configuration: the same seed
//! gives the same trace on every machine (the RNG is written out in this
//! crate, not taken from a dependency whose streams may change).

use super::trace::{Trace, TraceFunction, TraceInvocation, Trigger};
use crate::clock::{MS_PER_DAY, MS_PER_MINUTE, MS_PER_SECOND};
use crate::rng::SplitMix64;

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    pub seed: u64,
    /// Number of functions.
    pub functions: u32,
    /// Trace length.
    pub duration_ms: u64,
    /// Mean and standard deviation of `log10(invocations per day)`.
    pub rate_log10_mean: f64,
    pub rate_log10_sd: f64,
    /// Clip of `log10(invocations per day)`; lower the upper clip to keep a
    /// trace small (the published range reaches 6.8, ~73 invocations/s).
    pub rate_log10_min: f64,
    pub rate_log10_max: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 2019,
            functions: 200,
            duration_ms: MS_PER_DAY,
            rate_log10_mean: 1.6,
            rate_log10_sd: 1.6,
            rate_log10_min: -1.2,
            rate_log10_max: 6.8,
        }
    }
}

const TRIGGERS: [(Trigger, f64); 6] = [
    (Trigger::Http, 55.0),
    (Trigger::Timer, 16.0),
    (Trigger::Queue, 15.0),
    (Trigger::Orchestration, 7.0),
    (Trigger::Event, 2.0),
    (Trigger::Others, 5.0),
];

const APP_SIZES: [((u32, u32), f64); 6] = [
    ((1, 1), 54.0),
    ((2, 2), 16.0),
    ((3, 3), 10.0),
    ((4, 5), 8.0),
    ((6, 10), 7.0),
    ((11, 20), 5.0),
];

const MEMORY: [(u32, f64); 5] = [
    (128, 45.0),
    (256, 30.0),
    (512, 15.0),
    (1024, 7.0),
    (2048, 3.0),
];

const RUNTIMES: [(&str, f64, f64); 3] = [
    ("python3.11", 50.0, 250.0),
    ("nodejs20.x", 35.0, 150.0),
    ("provided.al2023", 15.0, 50.0),
];

const TIMER_PERIODS_MIN: [u64; 12] = [1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440];

const MAX_DURATION_MS: f64 = 15.0 * 60.0 * 1000.0;

fn pick<T: Copy>(rng: &mut SplitMix64, table: &[(T, f64)]) -> T {
    let weights: Vec<f64> = table.iter().map(|(_, w)| *w).collect();
    table[rng.weighted(&weights)].0
}

struct Spec {
    trigger: Trigger,
    per_day: f64,
    mean_duration_ms: f64,
    phase: f64,
}

/// Generates a trace (see the module docs for the model).
pub fn synthetic_trace(cfg: &SyntheticConfig) -> Trace {
    let root = SplitMix64::new(cfg.seed);
    let mut shape = root.fork(1);
    let mut trace = Trace::default();
    let mut specs = Vec::new();
    let mut app_no = 0u32;
    let mut owner_no = 0u32;
    while trace.functions.len() < cfg.functions as usize {
        let (lo, hi) = pick(&mut shape, &APP_SIZES);
        let size = lo + shape.below(u64::from(hi - lo + 1)) as u32;
        app_no += 1;
        // One owner in five runs a second application.
        if app_no == 1 || shape.next_f64() >= 0.2 {
            owner_no += 1;
        }
        let memory_mb = pick(&mut shape, &MEMORY);
        let weights: Vec<f64> = RUNTIMES.iter().map(|r| r.1).collect();
        let (runtime, _, init_median) = RUNTIMES[shape.weighted(&weights)];
        for f in 0..size {
            if trace.functions.len() >= cfg.functions as usize {
                break;
            }
            let trigger = pick(&mut shape, &TRIGGERS);
            let mut log_rate = cfg.rate_log10_mean + cfg.rate_log10_sd * shape.normal();
            if matches!(trigger, Trigger::Queue | Trigger::Event | Trigger::Storage) {
                log_rate += 1.0;
            }
            let log_rate = log_rate.clamp(cfg.rate_log10_min, cfg.rate_log10_max);
            let mean_duration_ms = (shape.log_normal((700.0f64).ln(), 2.0)).min(MAX_DURATION_MS);
            let init_ms = shape.log_normal(init_median.ln(), 0.8).round() as u64;
            trace.functions.push(TraceFunction {
                owner: format!("owner{owner_no:05}"),
                app: format!("app{app_no:05}"),
                name: format!("fn{f:02}"),
                trigger,
                runtime: runtime.to_owned(),
                memory_mb,
                init_ms,
            });
            specs.push(Spec {
                trigger,
                per_day: 10f64.powf(log_rate),
                mean_duration_ms,
                phase: shape.next_f64(),
            });
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        let mut rng = root.fork(1_000 + i as u64);
        arrivals(
            &mut rng,
            spec,
            i as u32,
            cfg.duration_ms,
            &mut trace.invocations,
        );
    }
    trace.sort();
    trace
}

fn duration(rng: &mut SplitMix64, mean_ms: f64) -> u64 {
    // Log-normal around the function's mean, with the mean preserved.
    let sigma: f64 = 0.5;
    let d = mean_ms * rng.log_normal(-sigma * sigma / 2.0, sigma);
    d.clamp(1.0, MAX_DURATION_MS).round() as u64
}

fn arrivals(
    rng: &mut SplitMix64,
    spec: &Spec,
    function: u32,
    horizon: u64,
    out: &mut Vec<TraceInvocation>,
) {
    let day = MS_PER_DAY as f64;
    let mut push = |rng: &mut SplitMix64, t: f64| {
        if t >= 0.0 && t < horizon as f64 {
            out.push(TraceInvocation {
                start_ms: t as u64,
                function,
                duration_ms: duration(rng, spec.mean_duration_ms),
            });
        }
    };
    match spec.trigger {
        Trigger::Timer => {
            let wanted_min = 1440.0 / spec.per_day.max(1e-9);
            let period_min = TIMER_PERIODS_MIN
                .iter()
                .copied()
                .min_by(|a, b| {
                    let da = (*a as f64 / wanted_min).ln().abs();
                    let db = (*b as f64 / wanted_min).ln().abs();
                    da.total_cmp(&db)
                })
                .unwrap_or(60);
            let period = (period_min * MS_PER_MINUTE) as f64;
            let mut t = spec.phase * period;
            while t < horizon as f64 {
                let jitter = rng.next_f64() * 2.0 * MS_PER_SECOND as f64;
                push(rng, t + jitter);
                t += period;
            }
        }
        Trigger::Queue | Trigger::Event | Trigger::Storage => {
            let mean_batch = 5.0;
            let batch_rate_per_ms = spec.per_day / mean_batch / day;
            let mut t = rng.exponential(1.0 / batch_rate_per_ms);
            while t < horizon as f64 {
                // 1 + geometric with mean 4.
                let mut n = 1;
                while rng.next_f64() < 0.8 && n < 200 {
                    n += 1;
                }
                let mut s = t;
                for _ in 0..n {
                    push(rng, s);
                    s += rng.exponential(200.0);
                }
                t += rng.exponential(1.0 / batch_rate_per_ms);
            }
        }
        _ => {
            let amplitude = 0.6;
            let rate_max = spec.per_day * (1.0 + amplitude) / day;
            let mut t = rng.exponential(1.0 / rate_max);
            while t < horizon as f64 {
                let phase = std::f64::consts::TAU * (t / day - spec.phase);
                let accept = (1.0 + amplitude * phase.sin()) / (1.0 + amplitude);
                if rng.next_f64() < accept {
                    push(rng, t);
                }
                t += rng.exponential(1.0 / rate_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SyntheticConfig {
        SyntheticConfig {
            functions: 150,
            rate_log10_max: 4.0,
            ..SyntheticConfig::default()
        }
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let a = synthetic_trace(&small());
        let b = synthetic_trace(&small());
        assert_eq!(a, b);
        let c = synthetic_trace(&SyntheticConfig { seed: 7, ..small() });
        assert_ne!(a.invocations, c.invocations);
    }

    #[test]
    fn has_the_published_shape() {
        let cfg = SyntheticConfig {
            functions: 2_000,
            duration_ms: 10 * MS_PER_MINUTE,
            rate_log10_max: 3.0,
            ..SyntheticConfig::default()
        };
        let t = synthetic_trace(&cfg);
        assert_eq!(t.functions.len(), 2_000);
        let share =
            |tr: Trigger| t.functions.iter().filter(|f| f.trigger == tr).count() as f64 / 2_000.0;
        assert!((share(Trigger::Http) - 0.55).abs() < 0.04);
        assert!((share(Trigger::Timer) - 0.16).abs() < 0.03);
        // Per-application sizes: most apps have one function.
        let mut apps = std::collections::BTreeMap::<&str, u32>::new();
        for f in &t.functions {
            *apps.entry(f.app.as_str()).or_default() += 1;
        }
        let singles = apps.values().filter(|n| **n == 1).count() as f64 / apps.len() as f64;
        assert!((singles - 0.54).abs() < 0.06, "{singles}");
        assert!(t.invocations.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn rates_span_orders_of_magnitude_and_most_functions_are_rare() {
        let t = synthetic_trace(&SyntheticConfig {
            functions: 300,
            duration_ms: MS_PER_DAY,
            rate_log10_max: 4.5,
            ..SyntheticConfig::default()
        });
        let counts = t.counts();
        let rare = counts.iter().filter(|c| **c <= 24).count() as f64 / counts.len() as f64;
        assert!((0.35..0.6).contains(&rare), "at most hourly: {rare}");
        let max = *counts.iter().max().unwrap();
        assert!(max > 10_000, "a few functions are very busy: {max}");
        // Timers are periodic: their gaps are (nearly) constant.
        let timer = t
            .functions
            .iter()
            .position(|f| f.trigger == Trigger::Timer)
            .unwrap() as u32;
        let starts: Vec<u64> = t
            .invocations
            .iter()
            .filter(|i| i.function == timer)
            .map(|i| i.start_ms)
            .collect();
        if starts.len() > 2 {
            let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
            let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
            assert!(hi - lo <= 2 * MS_PER_SECOND, "{gaps:?}");
        }
    }
}
