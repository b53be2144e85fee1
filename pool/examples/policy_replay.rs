//! Replays a synthetic Azure-shaped trace through each keep-alive and
//! sizing policy and prints one row per run — the trade-off curves of
//! POLICIES.md as each policy's main parameter varies.
//!
//! ```text
//! cargo run --release -p hearth-pool --example policy_replay -- \
//!     [functions=200] [hours=48] [max log10 daily rate=4] [warm-up hours=24] [seed=2019]
//! ```

use hearth_pool::clock::{MS_PER_HOUR, MS_PER_MINUTE};
use hearth_pool::keepalive::{HybridHistogramConfig, KeepAliveConfig};
use hearth_pool::replay::{
    replay, synthetic_trace, ReplayConfig, ReplayReport, SyntheticConfig, Trace,
};
use hearth_pool::sizing::{ForecastConfig, SizerConfig};
use std::time::Instant;

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn run(trace: &Trace, label: &str, cfg: &ReplayConfig) -> ReplayReport {
    let t = Instant::now();
    let r = replay(trace, cfg);
    println!(
        "{:<30} {:<20} {:>8} {:>7} {:>7.2}% {:>6.3} {:>9.0} {:>11.0} {:>10.0} {:>6.2}s",
        label,
        r.sizer,
        r.cold_starts,
        r.general_starts,
        r.cold_start_pct,
        r.p75_function_cold_rate,
        r.cold_start_seconds,
        r.idle_gb_s,
        r.idle_general_gb_s,
        t.elapsed().as_secs_f64()
    );
    r
}

fn main() {
    let warmup_ms = arg(4, 24u64) * MS_PER_HOUR;
    let trace = synthetic_trace(&SyntheticConfig {
        functions: arg(1, 200),
        duration_ms: arg(2, 48u64) * MS_PER_HOUR,
        rate_log10_max: arg(3, 4.0),
        seed: arg(5, 2019),
        ..SyntheticConfig::default()
    });
    println!(
        "{} functions, {} invocations; the first {} h are warm-up",
        trace.functions.len(),
        trace.len(),
        warmup_ms / MS_PER_HOUR
    );
    println!(
        "{:<30} {:<20} {:>8} {:>7} {:>8} {:>6} {:>9} {:>11} {:>10}",
        "keep-alive", "sizer", "cold", "general", "cold%", "p75", "cold s", "idle GB·s", "general"
    );
    let base = ReplayConfig {
        warmup_ms,
        ..ReplayConfig::default()
    };
    let mut fixed10 = None;
    for m in [2u64, 5, 10, 20, 30, 60, 120] {
        let cfg = ReplayConfig {
            keepalive: KeepAliveConfig::FixedTtl {
                ttl_ms: m * MS_PER_MINUTE,
            },
            ..base.clone()
        };
        let r = run(&trace, &format!("fixed-ttl {m}m"), &cfg);
        if m == 10 {
            fixed10 = Some(r);
        }
    }
    for h in [15u64, 30, 60, 120, 240] {
        let cfg = ReplayConfig {
            keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig {
                range_ms: h * MS_PER_MINUTE,
                ..HybridHistogramConfig::default()
            }),
            ..base.clone()
        };
        run(&trace, &format!("hybrid-histogram range {h}m"), &cfg);
    }
    let peak = fixed10.map_or(u64::MAX / 4, |r| r.peak_memory_mb);
    for f in [4u64, 6, 8, 10] {
        let limit = peak * f / 10;
        for keepalive in [
            KeepAliveConfig::FixedTtl {
                ttl_ms: 10 * MS_PER_MINUTE,
            },
            KeepAliveConfig::GreedyDual,
        ] {
            let name = keepalive.build().name();
            let cfg = ReplayConfig {
                keepalive,
                memory_limit_mb: limit,
                ..base.clone()
            };
            run(&trace, &format!("{name} in {limit} MB"), &cfg);
        }
    }
    let openwhisk = ReplayConfig {
        warmup_ms,
        ..ReplayConfig::openwhisk(&trace)
    };
    run(&trace, "fixed-ttl 10m (openwhisk)", &openwhisk);
    let forecast = ReplayConfig {
        general: ReplayConfig::general_pools_for(&trace, 1, 4),
        sizer: SizerConfig::Forecast(ForecastConfig::default()),
        ..openwhisk.clone()
    };
    run(&trace, "fixed-ttl 10m", &forecast);
    let hybrid_openwhisk = ReplayConfig {
        keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig::default()),
        ..openwhisk.clone()
    };
    run(&trace, "hybrid-histogram", &hybrid_openwhisk);
    for max in [4u32, 16] {
        let hearth = ReplayConfig {
            keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig::default()),
            general: ReplayConfig::general_pools_for(&trace, 1, max),
            sizer: SizerConfig::Forecast(ForecastConfig::default()),
            ..base.clone()
        };
        run(&trace, &format!("hybrid (hearth, max {max})"), &hearth);
    }
}
