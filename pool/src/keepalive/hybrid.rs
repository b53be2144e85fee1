//! The hybrid histogram policy of Shahrad et al., "Serverless in the Wild"
//! (USENIX ATC 2020).
//!
//! Per function, the idle times (IT) between the end of one execution and
//! the start of the next go into a histogram of 1-minute bins covering 4
//! hours. After each execution the policy picks one of three behaviours:
//!
//! - **representative** histogram (at least `min_observations` in-range ITs
//!   and a coefficient of variation of the bin counts of at least
//!   `cv_threshold` = 2, i.e. the ITs concentrate): head = 5th percentile,
//!   tail = 99th. Unload right away, pre-warm once the *pre-warm window*
//!   (head − 10%) has passed, keep that sandbox for the *keep-alive window*.
//!   If the head is in the first bin the window is zero: no unload, keep for
//!   the keep-alive window from the end of the execution.
//! - **not representative** (too few or too spread ITs): no pre-warm, a
//!   conservative keep-alive as long as the histogram's range (4 hours).
//! - **out of bounds** (at least `oob_threshold` = half of the ITs beyond the
//!   range): predict the next IT from the IT series and pre-warm at
//!   prediction − 15%, keeping for 2 × 15% of the prediction.
//!
//! Departures from the paper (also listed in the crate docs):
//!
//! - *Time-series forecaster*: the paper fits ARIMA; this uses an AR(1) model
//!   fitted by least squares on the last `history_len` ITs (the prediction is
//!   `mean + φ·(last − mean)`, φ the lag-1 autocorrelation clamped to
//!   ±0.95; the last IT when fewer than three are known). It captures the
//!   level and first-order persistence that matter for rare, regular
//!   functions without a numerical optimiser.
//! - *Margins*: head and tail are read at bin edges (the head bin's lower
//!   edge, the tail bin's upper edge) and the 10% margin is applied at both
//!   ends, so the kept interval of idle time is `[0.9·head, 1.1·tail]`:
//!   keep-alive window = `1.1·tail − 0.9·head`. Applying the margin only to
//!   `tail − head` (ending at `1.1·tail − 0.2·head`) would end before the
//!   tail whenever ITs concentrate in one bin — a perfectly periodic timer
//!   would always miss.
//! - *Concurrency*: the paper models an application as loaded or not; here a
//!   function may hold several sandboxes. An idle-time sample is the idle
//!   time of the sandbox the invocation reuses (the most recently idle one,
//!   as placement picks), or, with none idle, of the most recently idle
//!   sandbox that was unloaded (expired or evicted: a "ghost", as in shadow
//!   caches) — for a single instance that is exactly the paper's IT, the
//!   time since the last execution ended. An invocation that finds every
//!   sandbox busy and no ghost (new scale-out) adds no sample. Windows apply
//!   to each sandbox from the end of its own execution. Setting
//!   `learn_from_unloaded` to false keeps the paper's single-instance view.
//! - *Memory pressure*, which the paper does not model: least recently idle
//!   first (a pre-warmed sandbox counts from when it was built).
//! - *Enough observations*: `min_observations` (5) is Hearth's number; the
//!   paper does not give one.

use super::{IdleSandbox, KeepAlivePolicy, PrewarmRequest, RemovalCause};
use crate::clock::{Millis, MS_PER_HOUR, MS_PER_MINUTE};
use crate::ids::{FunctionVersion, SandboxId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Parameters, defaulting to the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HybridHistogramConfig {
    /// Bin width: 1 minute.
    pub bin_ms: u64,
    /// Histogram range: 4 hours (also the fallback keep-alive).
    pub range_ms: u64,
    /// Head percentile: 5th.
    pub head_percentile: f64,
    /// Tail percentile: 99th.
    pub tail_percentile: f64,
    /// Histogram margin: 10%.
    pub margin: f64,
    /// A histogram is representative when the bin counts' coefficient of
    /// variation is at least this: 2.
    pub cv_threshold: f64,
    /// In-range ITs needed before the histogram is trusted (the paper asks
    /// for "enough"; this number is Hearth's choice).
    pub min_observations: u32,
    /// Fraction of ITs beyond the range above which the time-series
    /// forecast takes over: 0.5.
    pub oob_threshold: f64,
    /// Margin around a forecast IT: 15%.
    pub oob_margin: f64,
    /// ITs kept for the forecaster.
    pub history_len: usize,
    /// With several sandboxes per function: when an invocation finds none
    /// idle, learn the idle time of the most recently unloaded one (see the
    /// module docs). Off: learn only when the function had nothing running,
    /// from its last execution's end (the paper's single-instance view).
    pub learn_from_unloaded: bool,
}

impl Default for HybridHistogramConfig {
    fn default() -> Self {
        Self {
            bin_ms: MS_PER_MINUTE,
            range_ms: 4 * MS_PER_HOUR,
            head_percentile: 0.05,
            tail_percentile: 0.99,
            margin: 0.10,
            cv_threshold: 2.0,
            min_observations: 5,
            oob_threshold: 0.5,
            oob_margin: 0.15,
            history_len: 64,
            learn_from_unloaded: true,
        }
    }
}

/// Which behaviour a function's history selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePattern {
    /// Too few or too spread ITs: fixed keep-alive of the histogram range.
    Uncertain,
    /// ITs concentrate: windows from the histogram's head and tail.
    Representative,
    /// Most ITs exceed the range: windows from the time-series forecast.
    OutOfBounds,
}

/// What the policy does after an execution of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub pattern: IdlePattern,
    /// Time after the execution ends at which to pre-warm; zero means keep
    /// the sandbox loaded instead of unloading it.
    pub prewarm_ms: u64,
    /// How long the (pre-warmed or kept) sandbox stays loaded.
    pub keep_alive_ms: u64,
}

#[derive(Debug, Clone)]
struct FunctionStats {
    bins: Vec<u32>,
    in_range: u32,
    /// Sum of squared bin counts, kept incrementally so the CV is O(1).
    sum_sq: u64,
    out_of_range: u32,
    recent: VecDeque<u64>,
    last_end: Option<Millis>,
    last_arrival: Option<Millis>,
    windows: Windows,
    pending_prewarm: Option<Millis>,
    prewarm_keep_ms: u64,
    /// Idle sandboxes of the function and the end of the execution their
    /// idle time counts from.
    idle: Vec<(SandboxId, Millis)>,
    /// Sandboxes of the function that were unloaded (expired or evicted):
    /// when their idle time began. An invocation that finds nothing idle
    /// would have reused the most recent of them.
    ghosts: Vec<Millis>,
    memory_mb: u32,
    init_cost_ms: u64,
}

/// The hybrid histogram keep-alive policy.
#[derive(Debug, Clone)]
pub struct HybridHistogram {
    cfg: HybridHistogramConfig,
    n_bins: usize,
    functions: HashMap<FunctionVersion, FunctionStats>,
    /// Tracked idle sandboxes: function, deadline, when tracking began.
    sandboxes: HashMap<SandboxId, (FunctionVersion, Millis, Millis)>,
    by_deadline: BTreeSet<(Millis, SandboxId)>,
    prewarms: BTreeSet<(Millis, FunctionVersion)>,
    /// The latest `now` seen (for when tracking began).
    clock: Millis,
}

impl HybridHistogram {
    pub fn new(cfg: HybridHistogramConfig) -> Self {
        let n_bins = usize::try_from(cfg.range_ms / cfg.bin_ms.max(1))
            .unwrap_or(1)
            .max(1);
        Self {
            cfg,
            n_bins,
            functions: HashMap::new(),
            sandboxes: HashMap::new(),
            by_deadline: BTreeSet::new(),
            prewarms: BTreeSet::new(),
            clock: Millis::ZERO,
        }
    }

    /// The windows the policy currently applies to `function`.
    pub fn windows(&self, function: &FunctionVersion) -> Windows {
        self.functions
            .get(function)
            .map_or_else(|| self.uncertain(), |s| s.windows)
    }

    fn uncertain(&self) -> Windows {
        Windows {
            pattern: IdlePattern::Uncertain,
            prewarm_ms: 0,
            keep_alive_ms: self.cfg.range_ms,
        }
    }

    fn new_stats(&self) -> FunctionStats {
        FunctionStats {
            bins: vec![0; self.n_bins],
            in_range: 0,
            sum_sq: 0,
            out_of_range: 0,
            recent: VecDeque::new(),
            last_end: None,
            last_arrival: None,
            windows: self.uncertain(),
            pending_prewarm: None,
            prewarm_keep_ms: 0,
            idle: Vec::new(),
            ghosts: Vec::new(),
            memory_mb: 0,
            init_cost_ms: 0,
        }
    }

    fn record_idle_time(
        cfg: &HybridHistogramConfig,
        n_bins: usize,
        s: &mut FunctionStats,
        it_ms: u64,
    ) {
        let bin = usize::try_from(it_ms / cfg.bin_ms.max(1)).unwrap_or(usize::MAX);
        if bin < n_bins {
            let c = u64::from(s.bins[bin]);
            s.bins[bin] += 1;
            s.sum_sq += 2 * c + 1;
            s.in_range += 1;
        } else {
            s.out_of_range += 1;
        }
        s.recent.push_back(it_ms);
        while s.recent.len() > cfg.history_len.max(1) {
            s.recent.pop_front();
        }
    }

    fn compute_windows(cfg: &HybridHistogramConfig, n_bins: usize, s: &FunctionStats) -> Windows {
        let total = s.in_range + s.out_of_range;
        if total >= cfg.min_observations
            && f64::from(s.out_of_range) >= cfg.oob_threshold * f64::from(total)
        {
            let predicted = ar1_forecast(&s.recent);
            let prewarm = predicted * (1.0 - cfg.oob_margin);
            return Windows {
                pattern: IdlePattern::OutOfBounds,
                prewarm_ms: prewarm.max(0.0) as u64,
                keep_alive_ms: (predicted * cfg.oob_margin * 2.0).max(0.0) as u64,
            };
        }
        if s.in_range >= cfg.min_observations && bin_cv(n_bins, s) >= cfg.cv_threshold {
            let head_bin = percentile_bin(&s.bins, s.in_range, cfg.head_percentile) as u64;
            let tail_bin = percentile_bin(&s.bins, s.in_range, cfg.tail_percentile) as u64;
            let head_ms = head_bin * cfg.bin_ms;
            let tail_ms = (tail_bin + 1) * cfg.bin_ms;
            let prewarm = (head_ms as f64 * (1.0 - cfg.margin)) as u64;
            let keep_until = (tail_ms as f64 * (1.0 + cfg.margin)) as u64;
            return Windows {
                pattern: IdlePattern::Representative,
                prewarm_ms: prewarm,
                keep_alive_ms: keep_until.saturating_sub(prewarm),
            };
        }
        Windows {
            pattern: IdlePattern::Uncertain,
            prewarm_ms: 0,
            keep_alive_ms: cfg.range_ms,
        }
    }

    fn track(
        &mut self,
        id: SandboxId,
        function: &FunctionVersion,
        idle_from: Millis,
        deadline: Millis,
    ) {
        self.forget(id, false);
        self.sandboxes
            .insert(id, (function.clone(), deadline, self.clock));
        self.by_deadline.insert((deadline, id));
        if let Some(s) = self.functions.get_mut(function) {
            s.idle.push((id, idle_from));
        }
    }

    /// Stops tracking a sandbox; with `unloaded`, remembers it as a ghost.
    fn forget(&mut self, id: SandboxId, unloaded: bool) {
        if let Some((f, d, _)) = self.sandboxes.remove(&id) {
            self.by_deadline.remove(&(d, id));
            if let Some(s) = self.functions.get_mut(&f) {
                if let Some(pos) = s.idle.iter().position(|(x, _)| *x == id) {
                    let (_, from) = s.idle.swap_remove(pos);
                    if unloaded {
                        if s.ghosts.len() >= MAX_GHOSTS {
                            // Drop the oldest: the least likely to be reused.
                            if let Some(oldest) = s
                                .ghosts
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, t)| **t)
                                .map(|(i, _)| i)
                            {
                                s.ghosts.swap_remove(oldest);
                            }
                        }
                        s.ghosts.push(from);
                    }
                }
            }
        }
    }

    fn cancel_prewarm(&mut self, function: &FunctionVersion) {
        if let Some(s) = self.functions.get_mut(function) {
            if let Some(at) = s.pending_prewarm.take() {
                self.prewarms.remove(&(at, function.clone()));
            }
        }
    }
}

/// Ghosts remembered per function.
const MAX_GHOSTS: usize = 64;

/// Removes and returns the latest time in `v`.
fn take_latest(v: &mut Vec<Millis>) -> Option<Millis> {
    let (i, _) = v.iter().enumerate().max_by_key(|(_, t)| **t)?;
    Some(v.swap_remove(i))
}

/// Coefficient of variation of the bin counts (population standard
/// deviation over the mean, over every bin of the range).
fn bin_cv(n_bins: usize, s: &FunctionStats) -> f64 {
    if s.in_range == 0 {
        return 0.0;
    }
    let n = n_bins as f64;
    let mean = f64::from(s.in_range) / n;
    let var = (s.sum_sq as f64 / n - mean * mean).max(0.0);
    var.sqrt() / mean
}

/// The first bin at which the cumulative count reaches `p` of `total`.
fn percentile_bin(bins: &[u32], total: u32, p: f64) -> usize {
    let need = p * f64::from(total);
    let mut cum = 0u64;
    for (i, c) in bins.iter().enumerate() {
        cum += u64::from(*c);
        if cum as f64 >= need && cum > 0 {
            return i;
        }
    }
    bins.len().saturating_sub(1)
}

/// One-step AR(1) forecast of the next value of `xs` (see the module docs).
fn ar1_forecast(xs: &VecDeque<u64>) -> f64 {
    let n = xs.len();
    let Some(&last) = xs.back() else {
        return 0.0;
    };
    if n < 3 {
        return last as f64;
    }
    let mean = xs.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
    let dev: Vec<f64> = xs.iter().map(|x| *x as f64 - mean).collect();
    let den: f64 = dev.iter().map(|d| d * d).sum();
    let num: f64 = dev.windows(2).map(|w| w[0] * w[1]).sum();
    let phi = if den > 0.0 {
        (num / den).clamp(-0.95, 0.95)
    } else {
        0.0
    };
    (mean + phi * (last as f64 - mean)).max(0.0)
}

impl KeepAlivePolicy for HybridHistogram {
    fn name(&self) -> String {
        "hybrid-histogram".to_owned()
    }

    fn on_invocation(&mut self, function: &FunctionVersion, now: Millis) {
        self.cancel_prewarm(function);
        let (cfg, n_bins) = (&self.cfg, self.n_bins);
        if !self.functions.contains_key(function) {
            let fresh = self.new_stats();
            self.functions.insert(function.clone(), fresh);
        }
        let Some(s) = self.functions.get_mut(function) else {
            return;
        };
        // The idle time of the sandbox this invocation reuses (placement
        // takes the most recently idle one), or with none idle, of the
        // unloaded sandbox it would have reused (the most recent ghost,
        // consumed). With neither, this is new scale-out: nothing to learn.
        let sample = match s.idle.iter().map(|(_, from)| *from).max() {
            Some(from) => Some(now.since(from)),
            None if cfg.learn_from_unloaded => {
                take_latest(&mut s.ghosts).map(|from| now.since(from))
            }
            // The paper's single-instance view: with nothing idle, the time
            // since the last execution ended, unless one is still running.
            None => s
                .last_end
                .filter(|end| s.last_arrival.is_none_or(|a| a <= *end))
                .map(|end| now.since(end)),
        };
        if let Some(it) = sample {
            Self::record_idle_time(cfg, n_bins, s, it);
            s.windows = Self::compute_windows(cfg, n_bins, s);
        }
        s.last_arrival = Some(now);
    }

    fn on_idle(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.clock = self.clock.max(now);
        if !self.functions.contains_key(sandbox.function) {
            let fresh = self.new_stats();
            self.functions.insert(sandbox.function.clone(), fresh);
        }
        let Some(s) = self.functions.get_mut(sandbox.function) else {
            return;
        };
        s.last_end = Some(s.last_end.map_or(now, |e| e.max(now)));
        s.memory_mb = sandbox.memory_mb;
        s.init_cost_ms = sandbox.init_cost_ms;
        let w = s.windows;
        if w.prewarm_ms > 0 {
            // Unload now; come back when the next invocation is expected.
            let at = now.plus(w.prewarm_ms);
            if let Some(old) = s.pending_prewarm.replace(at) {
                self.prewarms.remove(&(old, sandbox.function.clone()));
            }
            s.prewarm_keep_ms = w.keep_alive_ms;
            self.prewarms.insert((at, sandbox.function.clone()));
            self.track(sandbox.id, sandbox.function, now, now);
        } else {
            self.track(sandbox.id, sandbox.function, now, now.plus(w.keep_alive_ms));
        }
    }

    fn on_prewarmed(&mut self, sandbox: IdleSandbox<'_>, now: Millis) {
        self.clock = self.clock.max(now);
        // The pre-warmed sandbox stands in for the one unloaded after the
        // last execution: it takes over that ghost's idle time.
        let (keep, idle_from) =
            self.functions
                .get_mut(sandbox.function)
                .map_or((self.cfg.range_ms, now), |s| {
                    let from = take_latest(&mut s.ghosts).or(s.last_end).unwrap_or(now);
                    (s.prewarm_keep_ms, from)
                });
        self.track(sandbox.id, sandbox.function, idle_from, now.plus(keep));
    }

    fn on_busy(&mut self, id: SandboxId, _now: Millis) {
        self.forget(id, false);
    }

    fn on_removed(&mut self, id: SandboxId, cause: RemovalCause, _now: Millis) {
        self.forget(id, cause == RemovalCause::Evicted);
    }

    fn expired(&mut self, now: Millis) -> Vec<SandboxId> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.by_deadline.first() {
            if d > now {
                break;
            }
            self.forget(id, true);
            out.push(id);
        }
        out
    }

    fn prewarm_due(&mut self, now: Millis) -> Vec<PrewarmRequest> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.prewarms.first() {
            if *at > now {
                break;
            }
            let Some((at, function)) = self.prewarms.pop_first() else {
                break;
            };
            let Some(s) = self.functions.get_mut(&function) else {
                continue;
            };
            if s.pending_prewarm != Some(at) {
                continue;
            }
            s.pending_prewarm = None;
            // A sandbox still loaded (e.g. a concurrent one in keep-alive)
            // serves the next invocation already.
            if s.idle.is_empty() {
                out.push(PrewarmRequest {
                    function,
                    memory_mb: s.memory_mb,
                    init_cost_ms: s.init_cost_ms,
                });
            }
        }
        out
    }

    /// Under memory pressure (which the paper does not model): least
    /// recently idle first, ties by id. A pre-warmed sandbox counts from
    /// when it was built, so it survives until its predicted invocation.
    fn eviction_order(&self, _now: Millis) -> Vec<SandboxId> {
        let mut v: Vec<(Millis, SandboxId)> = self
            .sandboxes
            .iter()
            .map(|(id, (_, _, since))| (*since, *id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    fn next_wakeup(&self) -> Option<Millis> {
        let d = self.by_deadline.first().map(|(d, _)| *d);
        let p = self.prewarms.first().map(|(p, _)| *p);
        match (d, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn f() -> FunctionVersion {
        FunctionVersion::new(AccountId::new("a"), "f", "1")
    }

    fn sb(id: u64, f: &FunctionVersion) -> IdleSandbox<'_> {
        IdleSandbox {
            id: SandboxId(id),
            function: f,
            memory_mb: 256,
            init_cost_ms: 300,
        }
    }

    /// Feeds executions of zero length separated by the given idle times.
    fn feed(p: &mut HybridHistogram, f: &FunctionVersion, idle_minutes: &[u64]) -> Millis {
        let mut t = Millis(0);
        p.on_invocation(f, t);
        p.on_idle(sb(1, f), t);
        for m in idle_minutes {
            t = t.plus(m * MS_PER_MINUTE + 30_000);
            p.on_invocation(f, t);
            p.on_busy(SandboxId(1), t);
            p.on_idle(sb(1, f), t);
        }
        t
    }

    #[test]
    fn windows_from_a_known_sample() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        // 19 idle times in the 30-minute bin, 1 in the 90-minute bin.
        let mut its = vec![30; 19];
        its.push(90);
        feed(&mut p, &f, &its);
        let w = p.windows(&f);
        assert_eq!(w.pattern, IdlePattern::Representative);
        // Head: 5th percentile is bin 30 -> 30 min, minus 10% = 27 min.
        assert_eq!(w.prewarm_ms, 27 * MS_PER_MINUTE);
        // Tail: 99th percentile is bin 90 -> its upper edge 91 min, plus 10%
        // = 100.1 min; the window runs from the pre-warm to there.
        assert_eq!(
            w.keep_alive_ms,
            100 * MS_PER_MINUTE + 6_000 - 27 * MS_PER_MINUTE
        );
    }

    #[test]
    fn a_periodic_timer_is_prewarmed_just_in_time() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        let t = feed(&mut p, &f, &[9; 12]);
        let w = p.windows(&f);
        assert_eq!(w.prewarm_ms, 8 * MS_PER_MINUTE + 6_000);
        // Unloaded as soon as it finished.
        assert_eq!(p.expired(t), vec![SandboxId(1)]);
        let at = t.plus(w.prewarm_ms);
        assert_eq!(p.next_wakeup(), Some(at));
        assert!(p.prewarm_due(at.minus(1)).is_empty());
        let due = p.prewarm_due(at);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].function, f);
        assert_eq!(due[0].memory_mb, 256);
        p.on_prewarmed(sb(2, &f), at);
        // The next invocation, 9.5 minutes after the end, finds it loaded.
        let next = t.plus(9 * MS_PER_MINUTE + 30_000);
        assert!(p.expired(next).is_empty());
        assert!(p.eviction_order(next).contains(&SandboxId(2)));
        // It would have been kept until 1.1 × 10 min after the end.
        assert_eq!(p.expired(t.plus(11 * MS_PER_MINUTE)), vec![SandboxId(2)]);
    }

    #[test]
    fn an_early_invocation_cancels_the_prewarm() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        let t = feed(&mut p, &f, &[20; 10]);
        assert!(p.windows(&f).prewarm_ms > 0);
        p.on_invocation(&f, t.plus(MS_PER_MINUTE));
        assert!(p.prewarm_due(t.plus(MS_PER_HOUR)).is_empty());
    }

    #[test]
    fn too_few_observations_fall_back_to_the_range() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        let t = feed(&mut p, &f, &[30, 30]);
        let w = p.windows(&f);
        assert_eq!(w.pattern, IdlePattern::Uncertain);
        assert_eq!((w.prewarm_ms, w.keep_alive_ms), (0, 4 * MS_PER_HOUR));
        assert!(p.expired(t.plus(4 * MS_PER_HOUR - 1)).is_empty());
        assert_eq!(p.expired(t.plus(4 * MS_PER_HOUR)), vec![SandboxId(1)]);
        assert!(p.prewarm_due(t.plus(10 * MS_PER_HOUR)).is_empty());
    }

    #[test]
    fn spread_idle_times_are_not_representative() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        // Two idle times in every bin: CV of the bin counts is zero.
        let its: Vec<u64> = (0..240).flat_map(|m| [m, m]).collect();
        feed(&mut p, &f, &its);
        assert_eq!(p.windows(&f).pattern, IdlePattern::Uncertain);
    }

    #[test]
    fn out_of_range_idle_times_use_the_forecast() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        feed(&mut p, &f, &[360; 6]);
        let w = p.windows(&f);
        assert_eq!(w.pattern, IdlePattern::OutOfBounds);
        let it = 360 * MS_PER_MINUTE + 30_000;
        assert_eq!(w.prewarm_ms, (it as f64 * 0.85) as u64);
        assert_eq!(w.keep_alive_ms, (it as f64 * 0.30) as u64);
    }

    #[test]
    fn ar1_follows_level_and_persistence() {
        let xs: VecDeque<u64> = [100, 100, 100].into_iter().collect();
        assert_eq!(ar1_forecast(&xs), 100.0);
        let alternating: VecDeque<u64> = [10, 30, 10, 30, 10, 30, 10].into_iter().collect();
        // Negative autocorrelation: after a low value, predict a high one.
        assert!(ar1_forecast(&alternating) > 20.0);
        assert_eq!(ar1_forecast(&[7].into_iter().collect()), 7.0);
    }

    #[test]
    fn an_invocation_finding_nothing_idle_learns_from_the_unloaded_sandbox() {
        let f = f();
        for learn in [true, false] {
            let mut p = HybridHistogram::new(HybridHistogramConfig {
                range_ms: 10 * MS_PER_MINUTE,
                learn_from_unloaded: learn,
                ..HybridHistogramConfig::default()
            });
            // Two sandboxes end at 0 and 5 min and are unloaded after the
            // 10-minute fallback.
            p.on_invocation(&f, Millis(0));
            p.on_invocation(&f, Millis(0));
            p.on_idle(sb(1, &f), Millis(0));
            p.on_idle(sb(2, &f), Millis(5 * MS_PER_MINUTE));
            assert_eq!(p.expired(Millis(15 * MS_PER_MINUTE)).len(), 2);
            // At 30 min one invocation arrives, then a second while the
            // first still runs.
            p.on_invocation(&f, Millis(30 * MS_PER_MINUTE));
            p.on_invocation(&f, Millis(30 * MS_PER_MINUTE + 1_000));
            let s = &p.functions[&f];
            // Both views learn the first: 25 minutes since the last end.
            // Only with ghosts is the second learnt (sandbox 1 would have
            // served it after 30 minutes idle); the paper's single-instance
            // view sees a function still running.
            let expected = if learn { 2 } else { 1 };
            assert_eq!(s.out_of_range, expected, "learn_from_unloaded = {learn}");
        }
    }

    #[test]
    fn idle_time_is_the_reused_sandboxes_and_scale_out_adds_none() {
        let f = f();
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        p.on_invocation(&f, Millis(0));
        p.on_idle(sb(1, &f), Millis(100));
        // Reuses sandbox 1 after ~10 minutes idle.
        p.on_invocation(&f, Millis(10 * MS_PER_MINUTE));
        p.on_busy(SandboxId(1), Millis(10 * MS_PER_MINUTE));
        // Arrives while the only sandbox is busy: scale-out, no sample.
        p.on_invocation(&f, Millis(10 * MS_PER_MINUTE + 5));
        let s = &p.functions[&f];
        assert_eq!(s.bins[9], 1);
        assert_eq!(s.in_range, 1);
        // Two idle sandboxes: the sample is the most recently idle one's.
        p.on_idle(sb(1, &f), Millis(11 * MS_PER_MINUTE));
        p.on_idle(sb(2, &f), Millis(13 * MS_PER_MINUTE));
        p.on_invocation(&f, Millis(16 * MS_PER_MINUTE + 1));
        assert_eq!(p.functions[&f].bins[3], 1);
    }
}
