//! The policy-replay suite: the capacity policies of `POLICIES.md`, each
//! swept over its main parameter, replayed over one trace on a simulated
//! clock ([`hearth_pool::replay`]).
//!
//! Each replay gives one [`CurvePoint`]: cold starts (percentage of
//! invocations, and the 75th percentile of per-function cold-start rate)
//! against idle memory-time (GB·s held by sandboxes not running code). A
//! policy whose curve lies below and left of another's dominates it.
//!
//! The trace is either synthetic, with the published shape of the Azure
//! Functions 2019 trace ([`hearth_pool::replay::synthetic_trace`]
//! documents the model), or one day of the Azure 2019 files
//! ([`TraceSource::Azure`]).

use crate::report::{ChartSpec, Curve, CurvePoint, Section};
use hearth_pool::clock::{MS_PER_HOUR, MS_PER_MINUTE};
use hearth_pool::keepalive::{HybridHistogramConfig, KeepAliveConfig};
use hearth_pool::replay::{
    replay, AzureOptions, AzureTraceBuilder, ReplayConfig, ReplayReport, SyntheticConfig, Trace,
    TraceError,
};
use hearth_pool::sizing::{ForecastConfig, SizerConfig};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Why a trace could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("Azure trace day {0} does not exist (days are 1 to 14)")]
    BadDay(u32),
    #[error("{} is missing: it holds the day's invocation counts, without which there is nothing to replay", .0.display())]
    MissingInvocations(PathBuf),
    #[error("opening {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Trace { path: PathBuf, source: TraceError },
    #[error("the trace ({0}) has no invocations")]
    EmptyTrace(String),
}

/// Where the suite's trace comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceSource {
    /// A generated trace (see [`default_synthetic`]).
    Synthetic(SyntheticConfig),
    /// One day of the Azure Functions 2019 trace, from the dataset's CSV
    /// files in `dir`.
    Azure {
        dir: PathBuf,
        /// 1 to 14 (the `dNN` of the file names).
        day: u32,
        /// Keep only the first N functions of the invocations file.
        max_functions: Option<usize>,
    },
}

impl TraceSource {
    /// A one-line description for the report.
    pub fn describe(&self) -> String {
        match self {
            TraceSource::Synthetic(c) => format!(
                "synthetic Azure-shaped trace: {} functions over {} h, log10 daily rate clipped at {}, seed {}",
                c.functions,
                c.duration_ms / MS_PER_HOUR,
                c.rate_log10_max,
                c.seed
            ),
            TraceSource::Azure {
                dir,
                day,
                max_functions,
            } => format!(
                "Azure Functions 2019 trace, day {day} ({}){}",
                dir.display(),
                max_functions.map_or(String::new(), |n| format!(", first {n} functions"))
            ),
        }
    }
}

/// A loaded trace, with remarks about how it was built (e.g. defaults used
/// for files that were missing).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedTrace {
    pub trace: Trace,
    pub notes: Vec<String>,
}

/// Generates or reads the trace. For Azure, the invocations file is
/// required; the durations and memory files are optional (the release has
/// no memory files for days 13 and 14) and defaults are noted when absent.
pub fn load_trace(source: &TraceSource) -> Result<LoadedTrace, ReplayError> {
    let loaded = match source {
        TraceSource::Synthetic(c) => LoadedTrace {
            trace: hearth_pool::replay::synthetic_trace(c),
            notes: Vec::new(),
        },
        TraceSource::Azure {
            dir,
            day,
            max_functions,
        } => load_azure(dir, *day, *max_functions)?,
    };
    if loaded.trace.is_empty() {
        return Err(ReplayError::EmptyTrace(source.describe()));
    }
    Ok(loaded)
}

fn load_azure(
    dir: &Path,
    day: u32,
    max_functions: Option<usize>,
) -> Result<LoadedTrace, ReplayError> {
    if !(1..=14).contains(&day) {
        return Err(ReplayError::BadDay(day));
    }
    let file = |stem: &str| dir.join(format!("{stem}.anon.d{day:02}.csv"));
    let invocations = file("invocations_per_function_md");
    if !invocations.is_file() {
        return Err(ReplayError::MissingInvocations(invocations));
    }
    let opts = AzureOptions {
        max_functions,
        ..AzureOptions::default()
    };
    let mut notes = Vec::new();
    let mut builder = AzureTraceBuilder::new(opts.clone());
    let durations = file("function_durations_percentiles");
    if durations.is_file() {
        let r = open(&durations)?;
        builder
            .add_durations(r)
            .map_err(|source| trace_err(&durations, source))?;
    } else {
        notes.push(format!(
            "{} is missing: every invocation runs {} ms",
            durations.display(),
            opts.default_duration_ms
        ));
    }
    let memory = file("app_memory_percentiles");
    if memory.is_file() {
        let r = open(&memory)?;
        builder
            .add_memory(r)
            .map_err(|source| trace_err(&memory, source))?;
    } else {
        notes.push(format!(
            "{} is missing: every function gets {} MB",
            memory.display(),
            opts.default_memory_mb
        ));
    }
    let r = open(&invocations)?;
    // Day 0 of the built trace: the replay starts at the day's first minute.
    builder
        .add_invocations(r, 0)
        .map_err(|source| trace_err(&invocations, source))?;
    Ok(LoadedTrace {
        trace: builder.finish(),
        notes,
    })
}

fn open(path: &Path) -> Result<BufReader<File>, ReplayError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| ReplayError::Io {
            path: path.to_owned(),
            source,
        })
}

fn trace_err(path: &Path, source: TraceError) -> ReplayError {
    ReplayError::Trace {
        path: path.to_owned(),
        source,
    }
}

/// How the suite runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteOptions {
    /// Policies learn during this first part of the trace; its invocations
    /// and memory are not counted.
    pub warmup_ms: u64,
    /// Fewer points per curve.
    pub quick: bool,
}

impl SuiteOptions {
    /// Half the trace (at most 24 h) as warm-up.
    pub fn for_trace(trace: &Trace, quick: bool) -> Self {
        Self {
            warmup_ms: (trace.span_ms() / 2).min(24 * MS_PER_HOUR),
            quick,
        }
    }
}

/// The synthetic trace the bench replays. Full: 300 functions over 48 h
/// (about 720 000 invocations), daily rates clipped at 10^4 (one
/// invocation every 9 s) to bound the replay's size; the suite takes about
/// 25 s in release mode on 2 idle cores. Quick: 80 functions over 24 h, clipped
/// at 10^3.5 (about 56 000 invocations), about 1 s (10 s unoptimised). Use
/// [`SuiteOptions::for_trace`] for the warm-up (24 h and 12 h). The shape
/// of the generated functions (rates, triggers, durations, memory,
/// runtimes) is documented at [`hearth_pool::replay::synthetic_trace`].
pub fn default_synthetic(quick: bool) -> SyntheticConfig {
    if quick {
        SyntheticConfig {
            functions: 80,
            duration_ms: 24 * MS_PER_HOUR,
            rate_log10_max: 3.5,
            ..SyntheticConfig::default()
        }
    } else {
        SyntheticConfig {
            functions: 300,
            duration_ms: 48 * MS_PER_HOUR,
            rate_log10_max: 4.0,
            ..SyntheticConfig::default()
        }
    }
}

/// The policies' names, as [`Curve::policy`].
pub mod policy {
    /// Fixed keep-alive TTL.
    pub const FIXED_TTL: &str = "fixed-ttl";
    /// OpenWhisk's reactive prewarm with a 10-minute TTL.
    pub const OPENWHISK: &str = "openwhisk-reactive-prewarm";
    /// Shahrad et al.'s hybrid histogram keep-alive.
    pub const HYBRID: &str = "hybrid-histogram";
    /// FaasCache's Greedy-Dual keep-alive.
    pub const GREEDY_DUAL: &str = "greedy-dual";
    /// Hybrid histogram keep-alive with forecast-sized general pools.
    pub const HEARTH: &str = "hearth";
}

/// One replay to run: which curve, at which parameter value.
struct Job {
    curve: usize,
    value: f64,
    label: String,
    cfg: ReplayConfig,
}

/// The full sweep, or the quick one.
fn pick<T>(quick: bool, full: &'static [T], fast: &'static [T]) -> &'static [T] {
    if quick {
        fast
    } else {
        full
    }
}

/// The general pools' max in Hearth's curve.
const HEARTH_POOL_MAX: u32 = 32;

/// The histogram range of Hearth's keep-alive, minutes. The paper's 4 hours
/// makes every function whose histogram is not yet representative (most
/// rare ones) stay loaded for 4 hours, the costliest part of its idle
/// memory; with forecast-sized general pools absorbing the starts of rare
/// functions (a general start is a few milliseconds, not a cold start), a
/// 15-minute range holds far less memory for the same cold starts. Measured
/// on the default synthetic trace: range 15 min and pool min 1 gives 0.20 %
/// cold starts at 10.5M GB·s, against 0.16 % at 14.4M GB·s with 2 hours.
const HEARTH_HISTOGRAM_RANGE_MIN: u64 = 15;

fn ttl(minutes: u64) -> KeepAliveConfig {
    KeepAliveConfig::FixedTtl {
        ttl_ms: minutes * MS_PER_MINUTE,
    }
}

/// Runs every policy over `trace` and returns one curve per policy, in
/// this order:
///
/// 1. fixed TTL, swept over the TTL;
/// 2. OpenWhisk: reactive prewarm of a general pool per profile with a
///    10-minute TTL, swept over the stem cells held per profile
///    (`minCount`; `maxCount` is 4 or `minCount` if larger; OpenWhisk ships
///    1 and 4). Its other knobs barely move the trade-off on these traces:
///    neither the prewarms' unused `ttl` nor `maxCount` changes cold starts
///    by more than a few hundredths of a percent;
/// 3. hybrid histogram (Shahrad et al.), swept over the histogram range;
/// 4. Greedy-Dual (FaasCache), swept over the node's memory, as fractions
///    of the peak memory of a 10-minute fixed TTL;
/// 5. Hearth: hybrid histogram keep-alive (a 15-minute range, see
///    [`HEARTH_HISTOGRAM_RANGE_MIN`]) and the forecast sizer for general
///    pools, swept over the pools' floor
///    (`min`, with room to grow to 32): the forecaster seldom asks for more
///    than one or two sandboxes per profile, so sweeping `max` gives a
///    nearly flat curve.
///
/// Replays run in parallel on the available cores; the result is
/// deterministic.
pub fn run_suite(trace: &Trace, opts: &SuiteOptions) -> Vec<Curve> {
    let quick = opts.quick;
    let base = ReplayConfig {
        warmup_ms: opts.warmup_ms,
        ..ReplayConfig::default()
    };
    let mut curves = vec![
        Curve {
            policy: policy::FIXED_TTL.to_owned(),
            parameter: "ttl (min)".to_owned(),
            points: Vec::new(),
        },
        Curve {
            policy: policy::OPENWHISK.to_owned(),
            parameter: "stem cells per profile (minCount)".to_owned(),
            points: Vec::new(),
        },
        Curve {
            policy: policy::HYBRID.to_owned(),
            parameter: "histogram range (min)".to_owned(),
            points: Vec::new(),
        },
        Curve {
            policy: policy::GREEDY_DUAL.to_owned(),
            parameter: "memory (× fixed-ttl 10 min peak)".to_owned(),
            points: Vec::new(),
        },
        Curve {
            policy: policy::HEARTH.to_owned(),
            parameter: "general pool min".to_owned(),
            points: Vec::new(),
        },
    ];

    let mut jobs = Vec::new();
    // The 10-minute TTL is always in the sweep: Greedy-Dual's memory is
    // sized from its peak.
    for &m in pick(quick, &[1, 2, 5, 10, 20, 30, 60, 120], &[1, 5, 10, 30, 120]) {
        jobs.push(Job {
            curve: 0,
            value: m as f64,
            label: format!("ttl {m} min"),
            cfg: ReplayConfig {
                keepalive: ttl(m),
                ..base.clone()
            },
        });
    }
    let openwhisk = ReplayConfig {
        warmup_ms: opts.warmup_ms,
        ..ReplayConfig::openwhisk(trace)
    };
    for &min in pick::<u32>(quick, &[0, 1, 2, 3, 4], &[0, 1, 2]) {
        jobs.push(Job {
            curve: 1,
            value: f64::from(min),
            label: format!("min {min}, max {}", min.max(4)),
            cfg: ReplayConfig {
                general: ReplayConfig::general_pools_for(trace, min, min.max(4)),
                ..openwhisk.clone()
            },
        });
    }
    for &m in pick(quick, &[15, 30, 60, 120, 240], &[30, 120, 240]) {
        jobs.push(Job {
            curve: 2,
            value: m as f64,
            label: format!("range {m} min"),
            cfg: ReplayConfig {
                keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig {
                    range_ms: m * MS_PER_MINUTE,
                    ..HybridHistogramConfig::default()
                }),
                ..base.clone()
            },
        });
    }
    for &min in pick::<u32>(quick, &[0, 1, 2, 3, 4], &[0, 1, 2]) {
        jobs.push(Job {
            curve: 4,
            value: f64::from(min),
            label: format!("min {min}, max {HEARTH_POOL_MAX}"),
            cfg: ReplayConfig {
                keepalive: KeepAliveConfig::HybridHistogram(HybridHistogramConfig {
                    range_ms: HEARTH_HISTOGRAM_RANGE_MIN * MS_PER_MINUTE,
                    ..HybridHistogramConfig::default()
                }),
                general: ReplayConfig::general_pools_for(trace, min, HEARTH_POOL_MAX),
                sizer: SizerConfig::Forecast(ForecastConfig::default()),
                ..base.clone()
            },
        });
    }
    let reports = run_jobs(trace, &jobs);
    let fixed10_peak = jobs
        .iter()
        .zip(&reports)
        .find(|(j, _)| j.curve == 0 && j.value == 10.0)
        .map_or(0, |(_, r)| r.peak_memory_mb);

    let mut gd_jobs = Vec::new();
    for &tenths in pick(quick, &[2, 4, 6, 8, 10, 15], &[4, 8, 15]) {
        let limit = (fixed10_peak * tenths / 10).max(1);
        let fraction = tenths as f64 / 10.0;
        gd_jobs.push(Job {
            curve: 3,
            value: fraction,
            label: format!("{fraction}× peak ({limit} MB)"),
            cfg: ReplayConfig {
                keepalive: KeepAliveConfig::GreedyDual,
                memory_limit_mb: limit,
                ..base.clone()
            },
        });
    }
    let gd_reports = run_jobs(trace, &gd_jobs);

    for (job, r) in jobs
        .iter()
        .zip(&reports)
        .chain(gd_jobs.iter().zip(&gd_reports))
    {
        curves[job.curve].points.push(point(job, r));
    }
    curves
}

fn point(job: &Job, r: &ReplayReport) -> CurvePoint {
    CurvePoint {
        parameter_value: job.value,
        label: job.label.clone(),
        cold_start_pct: r.cold_start_pct,
        p75_function_cold_rate: r.p75_function_cold_rate,
        idle_gb_s: r.idle_gb_s,
        cold_starts: r.cold_starts,
        invocations: r.invocations,
    }
}

/// Replays every job, spread over the available cores; reports come back
/// in job order.
fn run_jobs(trace: &Trace, jobs: &[Job]) -> Vec<ReplayReport> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, ReplayReport)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = replay(trace, &job.cfg);
                // A poisoned lock means another worker panicked; the scope
                // re-raises that panic, so the data here no longer matters.
                if let Ok(mut d) = done.lock() {
                    d.push((i, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The report section for a suite's curves, with its chart
/// (`charts/policy-replay.svg`); the trace's notes join the description.
pub fn section(
    loaded: &LoadedTrace,
    source: &TraceSource,
    opts: &SuiteOptions,
    curves: Vec<Curve>,
) -> Section {
    let mut description = format!(
        "Each policy replayed over the {} ({} functions, {} invocations; the first {} h are warm-up, not counted) as its main parameter varies. \
         Lower and further left is better: fewer cold starts (share of invocations; 75th percentile of per-function cold-start rate) for less idle memory-time (GB·s held by sandboxes not running code).",
        source.describe(),
        loaded.trace.functions.len(),
        loaded.trace.len(),
        opts.warmup_ms as f64 / MS_PER_HOUR as f64,
    );
    for note in &loaded.notes {
        description.push_str(&format!(" Note: {note}."));
    }
    Section::new(
        "policy-replay",
        "Capacity policies on a trace",
        &description,
    )
    .curves(curves)
    .chart(ChartSpec::replay_curves(
        "policy-replay.svg",
        "Cold starts against idle memory-time",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn tiny() -> SyntheticConfig {
        SyntheticConfig {
            functions: 30,
            duration_ms: 8 * MS_PER_HOUR,
            rate_log10_max: 3.0,
            ..SyntheticConfig::default()
        }
    }

    fn tiny_suite() -> (Trace, Vec<Curve>) {
        let t = load_trace(&TraceSource::Synthetic(tiny())).unwrap().trace;
        let opts = SuiteOptions {
            warmup_ms: 2 * MS_PER_HOUR,
            quick: true,
        };
        let curves = run_suite(&t, &opts);
        (t, curves)
    }

    #[test]
    fn every_policy_gives_a_curve_of_finite_points() {
        let (_, curves) = tiny_suite();
        let names: Vec<&str> = curves.iter().map(|c| c.policy.as_str()).collect();
        assert_eq!(
            names,
            [
                policy::FIXED_TTL,
                policy::OPENWHISK,
                policy::HYBRID,
                policy::GREEDY_DUAL,
                policy::HEARTH
            ]
        );
        for c in &curves {
            assert!(c.points.len() >= 2, "{}", c.policy);
            for p in &c.points {
                assert!(p.invocations > 0, "{}", c.policy);
                assert!(p.cold_starts <= p.invocations);
                for v in [
                    p.parameter_value,
                    p.cold_start_pct,
                    p.p75_function_cold_rate,
                    p.idle_gb_s,
                ] {
                    assert!(v.is_finite() && v >= 0.0, "{}: {p:?}", c.policy);
                }
            }
        }
        // A longer TTL never gives more cold starts nor less idle memory.
        let fixed = &curves[0].points;
        assert!(fixed
            .windows(2)
            .all(|w| w[1].cold_starts <= w[0].cold_starts && w[1].idle_gb_s >= w[0].idle_gb_s));
    }

    #[test]
    fn same_seed_same_curves() {
        let (_, a) = tiny_suite();
        let (_, b) = tiny_suite();
        assert_eq!(a, b);
        let other = load_trace(&TraceSource::Synthetic(SyntheticConfig {
            seed: 7,
            ..tiny()
        }))
        .unwrap()
        .trace;
        let c = run_suite(
            &other,
            &SuiteOptions {
                warmup_ms: 2 * MS_PER_HOUR,
                quick: true,
            },
        );
        assert_ne!(a, c);
    }

    #[test]
    fn section_charts_its_curves_and_validates() {
        let source = TraceSource::Synthetic(tiny());
        let loaded = load_trace(&source).unwrap();
        let opts = SuiteOptions::for_trace(&loaded.trace, true);
        assert_eq!(opts.warmup_ms, loaded.trace.span_ms() / 2);
        let curves = run_suite(&loaded.trace, &opts);
        let mut report = crate::report::Report::new("t", "2025-01-01T00:00:00Z", true);
        report
            .sections
            .push(section(&loaded, &source, &opts, curves));
        let dir = tempfile::tempdir().unwrap();
        report.write(dir.path()).unwrap();
        assert_eq!(crate::report::validate_dir(dir.path()), Ok(()));
        let svg = std::fs::read_to_string(dir.path().join("charts/policy-replay.svg")).unwrap();
        assert!(svg.contains(policy::GREEDY_DUAL));
    }

    /// Writes a day of the Azure 2019 files in their column format.
    fn write_azure_day(dir: &Path, day: u32, with_optional: bool) {
        let mut inv = String::from("HashOwner,HashApp,HashFunction,Trigger");
        for m in 1..=1440 {
            inv.push_str(&format!(",{m}"));
        }
        inv.push('\n');
        // f1: twice a minute for the whole day; f2: once an hour.
        for (f, trigger, every) in [("f1", "http", 1), ("f2", "timer", 60)] {
            inv.push_str(&format!("o1,a1,{f},{trigger}"));
            for m in 0..1440 {
                let c = if m % every == 0 { 2 / every.min(2) } else { 0 };
                inv.push_str(&format!(",{c}"));
            }
            inv.push('\n');
        }
        std::fs::write(
            dir.join(format!("invocations_per_function_md.anon.d{day:02}.csv")),
            inv,
        )
        .unwrap();
        if with_optional {
            std::fs::write(
                dir.join(format!("function_durations_percentiles.anon.d{day:02}.csv")),
                "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n\
                 o1,a1,f1,250,2880,100,400,100,110,200,250,300,390,400\n",
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("app_memory_percentiles.anon.d{day:02}.csv")),
                "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n\
                 o1,a1,100,400,300,310,350,400,420,450,480,500\n",
            )
            .unwrap();
        }
    }

    #[test]
    fn reads_an_azure_day() {
        let dir = tempfile::tempdir().unwrap();
        write_azure_day(dir.path(), 3, true);
        let source = TraceSource::Azure {
            dir: dir.path().to_owned(),
            day: 3,
            max_functions: None,
        };
        let loaded = load_trace(&source).unwrap();
        assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
        let t = &loaded.trace;
        assert_eq!(t.functions.len(), 2);
        assert_eq!(t.functions[0].memory_mb, 512, "400 MB rounds up to a class");
        assert_eq!(t.len(), 2 * 1440 + 24);
        assert!(
            t.invocations[0].start_ms < MS_PER_MINUTE,
            "the day starts at 0"
        );
        let f1 = t.invocations.iter().find(|i| i.function == 0).unwrap();
        assert_eq!(f1.duration_ms, 250);
        let curves = run_suite(t, &SuiteOptions::for_trace(t, true));
        assert!(curves.iter().all(|c| !c.points.is_empty()));

        let limited = load_trace(&TraceSource::Azure {
            dir: dir.path().to_owned(),
            day: 3,
            max_functions: Some(1),
        })
        .unwrap();
        assert_eq!(limited.trace.functions.len(), 1);
    }

    #[test]
    fn missing_optional_files_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        write_azure_day(dir.path(), 13, false);
        let loaded = load_trace(&TraceSource::Azure {
            dir: dir.path().to_owned(),
            day: 13,
            max_functions: None,
        })
        .unwrap();
        assert_eq!(loaded.notes.len(), 2, "{:?}", loaded.notes);
        assert!(loaded.notes[0].contains("function_durations_percentiles.anon.d13.csv"));
        assert!(loaded.notes[1].contains("app_memory_percentiles.anon.d13.csv"));
        assert_eq!(loaded.trace.functions[0].memory_mb, 256);
    }

    #[test]
    fn missing_invocations_and_bad_days_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let azure = |day| TraceSource::Azure {
            dir: dir.path().to_owned(),
            day,
            max_functions: None,
        };
        let err = load_trace(&azure(1)).unwrap_err();
        assert!(matches!(err, ReplayError::MissingInvocations(_)), "{err}");
        assert!(err
            .to_string()
            .contains("invocations_per_function_md.anon.d01.csv"));
        assert!(matches!(load_trace(&azure(0)), Err(ReplayError::BadDay(0))));
        assert!(matches!(
            load_trace(&azure(15)),
            Err(ReplayError::BadDay(15))
        ));
        std::fs::write(
            dir.path().join("invocations_per_function_md.anon.d02.csv"),
            "HashOwner,HashApp\n",
        )
        .unwrap();
        assert!(matches!(
            load_trace(&azure(2)),
            Err(ReplayError::Trace { .. })
        ));
        let empty = TraceSource::Synthetic(SyntheticConfig {
            functions: 0,
            ..tiny()
        });
        assert!(matches!(
            load_trace(&empty),
            Err(ReplayError::EmptyTrace(_))
        ));
    }

    /// Times the default suites: `cargo test --release -p hearth-bench
    /// suite_timing -- --ignored --nocapture`; set
    /// `HEARTH_BENCH_REPLAY_OUT=DIR` to keep the reports.
    #[test]
    #[ignore]
    fn suite_timing() {
        for quick in [true, false] {
            let t0 = Instant::now();
            let loaded = load_trace(&TraceSource::Synthetic(default_synthetic(quick))).unwrap();
            let opts = SuiteOptions::for_trace(&loaded.trace, quick);
            let curves = run_suite(&loaded.trace, &opts);
            println!(
                "quick={quick}: {} functions, {} invocations, {:.1} s",
                loaded.trace.functions.len(),
                loaded.trace.len(),
                t0.elapsed().as_secs_f64()
            );
            let mut r = crate::report::Report::new("timing", "", quick);
            let source = TraceSource::Synthetic(default_synthetic(quick));
            r.sections.push(section(&loaded, &source, &opts, curves));
            r.print_table(&mut std::io::stdout()).unwrap();
            if let Some(dir) = std::env::var_os("HEARTH_BENCH_REPLAY_OUT") {
                r.write(&Path::new(&dir).join(if quick { "quick" } else { "full" }))
                    .unwrap();
            }
        }
    }
}
