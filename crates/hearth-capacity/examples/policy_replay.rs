//! Replays a synthetic Azure-shaped trace through each policy and prints a
//! table: `cargo run --release -p hearth-capacity --example policy_replay --
//! [functions] [hours] [max log10 daily rate] [seed]`.

use hearth_capacity::clock::MS_PER_HOUR;
use hearth_capacity::keepalive::{HybridHistogramConfig, KeepAliveConfig};
use hearth_capacity::replay::{
    replay, synthetic_trace, ReplayConfig, ReplayReport, SyntheticConfig,
};
use hearth_capacity::sizing::{ForecastConfig, SizerConfig};
use std::time::Instant;

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn row(r: &ReplayReport, secs: f64) {
    if std::env::var("VERBOSE").is_ok() {
        println!(
            "  rejected {} evictions {} expirations {} prewarms {} warm {} peak {}",
            r.rejected, r.evictions, r.expirations, r.prewarms, r.warm_starts, r.peak_memory_mb
        );
    }
    println!(
        "{:<22} {:<18} {:>9} {:>8} {:>8} {:>7.2}% {:>6.3} {:>10.1} {:>10.1} {:>9.0} {:>6.2}s",
        r.keepalive,
        r.sizer,
        r.invocations,
        r.cold_starts,
        r.general_starts,
        r.cold_start_pct,
        r.p75_function_cold_rate,
        r.idle_gb_s,
        r.idle_general_gb_s,
        r.mean_memory_mb,
        secs
    );
}

fn scan() {
    let (functions, hours, max): (u32, u64, f64) = (arg(1, 60), arg(2, 24), arg(3, 3.3));
    let warmup: u64 = arg(4, 0);
    for seed in 1..=12u64 {
        let trace = synthetic_trace(&SyntheticConfig {
            functions,
            duration_ms: hours * MS_PER_HOUR,
            rate_log10_max: max,
            seed,
            ..SyntheticConfig::default()
        });
        let ttl = |m: u64, limit: u64| ReplayConfig {
            memory_limit_mb: limit,
            warmup_ms: warmup * MS_PER_HOUR,
            ..ReplayConfig::keepalive_only(KeepAliveConfig::FixedTtl { ttl_ms: m * 60_000 })
        };
        let free = u64::MAX / 4;
        let t10 = replay(&trace, &ttl(10, free));
        let hy = replay(
            &trace,
            &ReplayConfig {
                warmup_ms: warmup * MS_PER_HOUR,
                ..ReplayConfig::keepalive_only(KeepAliveConfig::HybridHistogram(
                    HybridHistogramConfig::default(),
                ))
            },
        );
        let ladder: Vec<ReplayReport> = [15, 20, 30, 45, 60, 90, 120, 240]
            .iter()
            .map(|m| replay(&trace, &ttl(*m, free)))
            .collect();
        let matched = ladder.iter().find(|r| r.idle_gb_s >= hy.idle_gb_s);
        let limit = (t10.peak_memory_mb as f64 * 0.6) as u64;
        let tl = replay(&trace, &ttl(10, limit));
        let gd = replay(
            &trace,
            &ReplayConfig {
                memory_limit_mb: limit,
                warmup_ms: warmup * MS_PER_HOUR,
                ..ReplayConfig::keepalive_only(KeepAliveConfig::GreedyDual)
            },
        );
        println!(
            "seed {seed:>2} n {:>6} | ttl10 {:>5} p75 {:.3} idle {:>9.0} | hy {:>5} p75 {:.3} idle {:>9.0} | matched {:?} | lim ttl {:>5} {:>9.0} gd {:>5} {:>9.0}",
            trace.len(), t10.cold_starts, t10.p75_function_cold_rate, t10.idle_gb_s,
            hy.cold_starts, hy.p75_function_cold_rate, hy.idle_gb_s,
            matched.map(|m| (m.keepalive.clone(), m.cold_starts, (m.p75_function_cold_rate * 1000.0).round() / 1000.0)),
            tl.cold_starts, tl.idle_gb_s, gd.cold_starts, gd.idle_gb_s
        );
    }
}

fn main() {
    if std::env::var("SCAN").is_ok() {
        scan();
        return;
    }
    let cfg = SyntheticConfig {
        functions: arg(1, 400),
        duration_ms: arg(2, 48u64) * MS_PER_HOUR,
        rate_log10_max: arg(3, 5.0),
        seed: arg(4, 2019),
        ..SyntheticConfig::default()
    };
    let t0 = Instant::now();
    let trace = synthetic_trace(&cfg);
    println!(
        "{} functions, {} invocations, generated in {:.2}s",
        trace.functions.len(),
        trace.len(),
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:<22} {:<18} {:>9} {:>8} {:>8} {:>8} {:>6} {:>10} {:>10} {:>9}",
        "keep-alive",
        "sizer",
        "invoc",
        "cold",
        "general",
        "cold%",
        "p75",
        "idle GB·s",
        "gen GB·s",
        "mean MB"
    );
    let run = |c: &ReplayConfig| {
        let t = Instant::now();
        let r = replay(&trace, c);
        row(&r, t.elapsed().as_secs_f64());
        r
    };
    let ttl =
        |m: u64| ReplayConfig::keepalive_only(KeepAliveConfig::FixedTtl { ttl_ms: m * 60_000 });
    let fixed = run(&ttl(10));
    for m in [5, 20, 30, 60, 120] {
        run(&ttl(m));
    }
    let hy = run(&ReplayConfig::keepalive_only(
        KeepAliveConfig::HybridHistogram(HybridHistogramConfig::default()),
    ));
    if std::env::var("BREAKDOWN").is_ok() {
        breakdown(&trace, &fixed, &hy);
        return;
    }
    if std::env::var("LIMITS").is_ok() {
        for f in [0.3, 0.4, 0.5, 0.6, 0.8, 1.0] {
            let limit = (fixed.peak_memory_mb as f64 * f) as u64;
            for ka in [
                KeepAliveConfig::FixedTtl { ttl_ms: 600_000 },
                KeepAliveConfig::GreedyDual,
                KeepAliveConfig::HybridHistogram(HybridHistogramConfig::default()),
            ] {
                print!("limit {limit:>8} ");
                run(&ReplayConfig {
                    memory_limit_mb: limit,
                    ..ReplayConfig::keepalive_only(ka)
                });
            }
        }
        return;
    }
    if std::env::var("MINOBS").is_ok() {
        for m in [1u32, 2, 3, 5, 10, 20] {
            print!("min_obs {m:>3} ");
            run(&ReplayConfig::keepalive_only(
                KeepAliveConfig::HybridHistogram(HybridHistogramConfig {
                    min_observations: m,
                    ..HybridHistogramConfig::default()
                }),
            ));
        }
        return;
    }
    if std::env::var("CLASSES").is_ok() {
        by_class(
            &trace,
            &[
                ttl(10),
                ReplayConfig::keepalive_only(KeepAliveConfig::HybridHistogram(
                    HybridHistogramConfig::default(),
                )),
            ],
        );
        return;
    }
    for h in [1u64, 2, 3] {
        run(&ReplayConfig::keepalive_only(
            KeepAliveConfig::HybridHistogram(HybridHistogramConfig {
                range_ms: h * MS_PER_HOUR,
                ..HybridHistogramConfig::default()
            }),
        ));
    }
    let mean = fixed.mean_memory_mb.ceil() as u64;
    for f in [0.5, 0.75, 1.0, 1.5] {
        run(&ReplayConfig {
            memory_limit_mb: (mean as f64 * f) as u64,
            ..ReplayConfig::keepalive_only(KeepAliveConfig::GreedyDual)
        });
    }
    run(&ReplayConfig::openwhisk(&trace));
    run(&ReplayConfig {
        keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig::default()),
        general: ReplayConfig::general_pools_for(&trace, 0, 32),
        sizer: SizerConfig::Forecast(ForecastConfig::default()),
        ..ReplayConfig::default()
    });
}

#[allow(dead_code)]
fn breakdown(trace: &hearth_capacity::replay::Trace, a: &ReplayReport, b: &ReplayReport) {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(String, i32), (u64, u64, u64, u64)> = BTreeMap::new();
    for (i, f) in trace.functions.iter().enumerate() {
        let (n, ca) = a.per_function[i];
        let (_, cb) = b.per_function[i];
        let class = if n == 0 {
            -9
        } else {
            (n as f64).log10().floor() as i32
        };
        let e = by.entry((f.trigger.label().to_owned(), class)).or_default();
        e.0 += 1;
        e.1 += n;
        e.2 += ca;
        e.3 += cb;
    }
    for ((t, c), (nf, n, ca, cb)) in by {
        println!("{t:<14} 1e{c:<3} fns {nf:>4} inv {n:>9} cold {ca:>7} vs {cb:>7}");
    }
}

/// Replays each rate class of functions on its own (memory is unlimited,
/// so classes do not interact) and prints cold starts and idle GB·s.
#[allow(dead_code)]
fn by_class(trace: &hearth_capacity::replay::Trace, configs: &[ReplayConfig]) {
    use hearth_capacity::replay::Trace;
    let counts = trace.counts();
    for class in -1..6 {
        let keep: Vec<bool> = counts
            .iter()
            .map(|n| *n > 0 && (*n as f64).log10().floor() as i32 == class)
            .collect();
        let sub = Trace {
            functions: trace.functions.clone(),
            invocations: trace
                .invocations
                .iter()
                .filter(|i| keep[i.function as usize])
                .copied()
                .collect(),
        };
        if sub.is_empty() {
            continue;
        }
        let mut line = format!("1e{class:<3} n={:<9}", sub.len());
        for c in configs {
            let r = replay(&sub, c);
            line.push_str(&format!(" | {:>7} {:>11.0}", r.cold_starts, r.idle_gb_s));
        }
        println!("{line}");
    }
}
