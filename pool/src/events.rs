//! The asynchronous-event scheduler's decisions, pure and clock-injected.
//!
//! An accepted event waits in a durable queue (`hearth-store`); the
//! dispatcher (`hearth-exec`) asks [`decide`] what to do with each due
//! event, runs it as told, and asks [`after_attempt`] what follows. Times
//! are wall-clock milliseconds since the Unix epoch (events outlive the
//! process), passed in, so a test steps through hours of retries at once.
//!
//! - **Retries** (AWS's documented behaviour): a function error is retried
//!   after about one minute, then two ([`EventSchedulerConfig::retry_delays_ms`]),
//!   at most `MaximumRetryAttempts` times; then the event fails with
//!   `RetriesExhausted`.
//! - **Throttles** (no concurrency, no capacity) are not attempts: the event
//!   waits with an exponential back-off (1 s doubling to 5 minutes, taken
//!   from its age so no state is kept) until `MaximumEventAgeInSeconds`,
//!   then fails with `EventAgeExceeded`.
//! - **Reserve**: async work may acquire new capacity only while the memory
//!   budget keeps [`EventSchedulerConfig::reserve_mb`] free for synchronous
//!   requests; an idle function-warm sandbox is always fair game.
//! - **Deferral**: an event with an execution window runs early only while
//!   the node is below its load threshold *and* an idle function-warm
//!   sandbox of its function exists ([`RunMode::WarmOnly`]: nothing new is
//!   acquired for it); in the window's last stretch it runs like any event.

/// Tunables of the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchedulerConfig {
    /// Back-off before retry *n* after a function error (the last entry
    /// repeats). AWS: about one minute, then two.
    pub retry_delays_ms: Vec<u64>,
    /// Throttle back-off bounds.
    pub throttle_min_ms: u64,
    pub throttle_max_ms: u64,
    /// Memory (MiB of the node's budget) that async work leaves free for
    /// synchronous requests when it acquires new capacity.
    pub reserve_mb: u64,
    /// Deferred events run early only while the node's budget use is at or
    /// below this share.
    pub defer_load_threshold: f64,
    /// The window's final stretch, as a share of the window (at least
    /// [`window_close_min_ms`](Self::window_close_min_ms)), in which a
    /// deferred event runs whatever the load.
    pub window_close_share: f64,
    pub window_close_min_ms: u64,
}

impl Default for EventSchedulerConfig {
    fn default() -> Self {
        Self {
            retry_delays_ms: vec![60_000, 120_000],
            throttle_min_ms: 1_000,
            throttle_max_ms: 300_000,
            reserve_mb: 512,
            defer_load_threshold: 0.5,
            window_close_share: 0.1,
            window_close_min_ms: 2_000,
        }
    }
}

/// When an event was accepted and, if deferred, when its window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTiming {
    pub received_ms: i64,
    pub window_end_ms: Option<i64>,
}

/// The event's function's retry settings (its event-invoke config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimits {
    pub max_retry_attempts: u32,
    pub max_event_age_ms: i64,
}

/// What the node looks like to one event, when it is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeLoad {
    /// The memory budget and the sum of live sandboxes' limits, MiB.
    pub budget_limit_mb: u64,
    pub budget_used_mb: u64,
    /// Idle function-warm sandboxes of this event's function.
    pub idle_function_warm: u32,
    /// Synchronous invocations waiting for capacity anywhere on the node.
    pub sync_waiting: u32,
}

impl NodeLoad {
    /// Below the load threshold: free budget, nobody waiting.
    pub fn is_quiet(&self, cfg: &EventSchedulerConfig) -> bool {
        let limit = self.budget_limit_mb.max(1) as f64;
        self.sync_waiting == 0 && (self.budget_used_mb as f64) / limit <= cfg.defer_load_threshold
    }

    /// Whether acquiring `memory_mb` more keeps the reserve free.
    pub fn fits_with_reserve(&self, memory_mb: u64, cfg: &EventSchedulerConfig) -> bool {
        self.budget_used_mb
            .saturating_add(memory_mb)
            .saturating_add(cfg.reserve_mb)
            <= self.budget_limit_mb
    }
}

/// What capacity an attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Anything placement offers, as long as the reserve stays free (an
    /// idle function-warm sandbox always qualifies).
    Normal,
    /// Only an idle function-warm sandbox of the event's function.
    WarmOnly,
}

/// What to do with a due event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    Run(RunMode),
    /// Leave it waiting (deferred; the node is busy or nothing is warm).
    Hold,
    /// Older than `MaximumEventAgeInSeconds`: fail it with `EventAgeExceeded`.
    Expire,
}

/// Where a deferred event's window enters its final stretch. A window
/// never outlasts the event's maximum age: it closes by then, so a deferred
/// event runs before it would expire.
pub fn window_closing_at(
    t: &EventTiming,
    limits: &RetryLimits,
    cfg: &EventSchedulerConfig,
) -> Option<i64> {
    let end = t
        .window_end_ms?
        .min(t.received_ms.saturating_add(limits.max_event_age_ms));
    let window = (end - t.received_ms).max(0) as f64;
    let stretch = ((window * cfg.window_close_share) as i64).max(cfg.window_close_min_ms as i64);
    Some(end - stretch)
}

/// Decides what to do with one due event.
pub fn decide(
    t: &EventTiming,
    limits: &RetryLimits,
    load: &NodeLoad,
    cfg: &EventSchedulerConfig,
    now_ms: i64,
) -> Dispatch {
    if now_ms - t.received_ms > limits.max_event_age_ms {
        return Dispatch::Expire;
    }
    match window_closing_at(t, limits, cfg) {
        None => Dispatch::Run(RunMode::Normal),
        Some(closing) if now_ms >= closing => Dispatch::Run(RunMode::Normal),
        Some(_) if load.is_quiet(cfg) && load.idle_function_warm > 0 => {
            Dispatch::Run(RunMode::WarmOnly)
        }
        Some(_) => Dispatch::Hold,
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// The function ran and failed (error, timeout, crash, out of memory).
    FunctionError,
    /// Not run: no concurrency or capacity (not counted as an attempt).
    Throttled,
    /// Not run: a warm-only attempt found no idle function-warm sandbox.
    NoWarmSandbox,
}

/// Why an event failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    RetriesExhausted,
    EventAgeExceeded,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Done,
    /// Wait again until `not_before_ms`, having made `attempts` failed
    /// attempts; `ran` says whether this attempt ran the function.
    Retry {
        not_before_ms: i64,
        attempts: u32,
        ran: bool,
    },
    Fail(Failure),
}

/// The throttle back-off for an event of this age: half its age, within the
/// configured bounds — doubling from attempt to attempt without state.
pub fn throttle_delay_ms(age_ms: i64, cfg: &EventSchedulerConfig) -> u64 {
    (age_ms.max(0) as u64 / 2).clamp(cfg.throttle_min_ms, cfg.throttle_max_ms)
}

/// The back-off before the retry that follows `failed` failed attempts.
pub fn retry_delay_ms(failed: u32, cfg: &EventSchedulerConfig) -> u64 {
    let i = (failed.max(1) - 1) as usize;
    cfg.retry_delays_ms
        .get(i)
        .or(cfg.retry_delays_ms.last())
        .copied()
        .unwrap_or(0)
}

/// Decides what follows an attempt that ended with `outcome`, the event
/// having failed `attempts` times before it.
pub fn after_attempt(
    t: &EventTiming,
    attempts: u32,
    outcome: AttemptOutcome,
    limits: &RetryLimits,
    cfg: &EventSchedulerConfig,
    now_ms: i64,
) -> AfterAttempt {
    let age = now_ms - t.received_ms;
    match outcome {
        AttemptOutcome::Succeeded => AfterAttempt::Done,
        AttemptOutcome::FunctionError => {
            let failed = attempts + 1;
            if failed > limits.max_retry_attempts {
                AfterAttempt::Fail(Failure::RetriesExhausted)
            } else {
                AfterAttempt::Retry {
                    not_before_ms: now_ms + retry_delay_ms(failed, cfg) as i64,
                    attempts: failed,
                    ran: true,
                }
            }
        }
        AttemptOutcome::Throttled if age > limits.max_event_age_ms => {
            AfterAttempt::Fail(Failure::EventAgeExceeded)
        }
        AttemptOutcome::Throttled => AfterAttempt::Retry {
            not_before_ms: now_ms + throttle_delay_ms(age, cfg) as i64,
            attempts,
            ran: false,
        },
        AttemptOutcome::NoWarmSandbox => AfterAttempt::Retry {
            // Not at once: the sandbox the scheduler saw went elsewhere (or
            // is warm for another version); look again a little later.
            not_before_ms: now_ms + cfg.throttle_min_ms as i64,
            attempts,
            ran: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn limits(retries: u32, age_s: i64) -> RetryLimits {
        RetryLimits {
            max_retry_attempts: retries,
            max_event_age_ms: age_s * 1000,
        }
    }

    fn quiet_with_warm() -> NodeLoad {
        NodeLoad {
            budget_limit_mb: 4096,
            budget_used_mb: 512,
            idle_function_warm: 1,
            sync_waiting: 0,
        }
    }

    /// Drives one event through the scheduler with a fake clock, the
    /// function failing every time; returns the attempt times and the end.
    fn run_failing(retries: u32, age_s: i64) -> (Vec<i64>, AfterAttempt) {
        let cfg = EventSchedulerConfig::default();
        let t = EventTiming {
            received_ms: 1_000_000,
            window_end_ms: None,
        };
        let lim = limits(retries, age_s);
        let mut now = t.received_ms;
        let mut attempts = 0;
        let mut times = Vec::new();
        // Bounded: at most 10 passes.
        for _ in 0..10 {
            match decide(&t, &lim, &quiet_with_warm(), &cfg, now) {
                Dispatch::Expire => return (times, AfterAttempt::Fail(Failure::EventAgeExceeded)),
                Dispatch::Hold => unreachable!("not deferred"),
                Dispatch::Run(mode) => assert_eq!(mode, RunMode::Normal),
            }
            times.push(now - t.received_ms);
            now += 50; // the attempt's duration
            match after_attempt(&t, attempts, AttemptOutcome::FunctionError, &lim, &cfg, now) {
                AfterAttempt::Retry {
                    not_before_ms,
                    attempts: a,
                    ran,
                } => {
                    assert!(ran);
                    attempts = a;
                    now = not_before_ms;
                }
                end => return (times, end),
            }
        }
        panic!("no end after 10 passes");
    }

    #[test]
    fn a_failing_event_is_attempted_one_plus_retries_times_a_minute_then_two_apart() {
        let (times, end) = run_failing(2, 21_600);
        assert_eq!(times, vec![0, 50 + MIN, 100 + 3 * MIN]);
        assert_eq!(end, AfterAttempt::Fail(Failure::RetriesExhausted));
        let (times, end) = run_failing(0, 21_600);
        assert_eq!(times, vec![0]);
        assert_eq!(end, AfterAttempt::Fail(Failure::RetriesExhausted));
        let (times, _) = run_failing(1, 21_600);
        assert_eq!(times.len(), 2);
    }

    #[test]
    fn an_event_too_old_for_its_next_retry_expires_instead() {
        // Age limit 100 s: the first retry (after 60 s) fits, the second
        // (120 s later) does not.
        let (times, end) = run_failing(2, 100);
        assert_eq!(times.len(), 2);
        assert_eq!(end, AfterAttempt::Fail(Failure::EventAgeExceeded));
    }

    #[test]
    fn throttled_events_back_off_exponentially_until_their_age_runs_out() {
        let cfg = EventSchedulerConfig::default();
        let t = EventTiming {
            received_ms: 0,
            window_end_ms: None,
        };
        let lim = limits(2, 600);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..100 {
            match after_attempt(&t, 0, AttemptOutcome::Throttled, &lim, &cfg, now) {
                AfterAttempt::Retry {
                    not_before_ms,
                    attempts,
                    ran,
                } => {
                    assert_eq!(attempts, 0, "throttles are not attempts");
                    assert!(!ran);
                    delays.push(not_before_ms - now);
                    now = not_before_ms;
                }
                AfterAttempt::Fail(f) => {
                    assert_eq!(f, Failure::EventAgeExceeded);
                    assert!(now > 600_000);
                    break;
                }
                AfterAttempt::Done => unreachable!(),
            }
        }
        assert_eq!(&delays[..4], &[1_000, 1_000, 1_000, 1_500]);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert!(delays.iter().all(|&d| d <= 300_000));
    }

    #[test]
    fn success_is_done_whatever_came_before() {
        let cfg = EventSchedulerConfig::default();
        let t = EventTiming {
            received_ms: 0,
            window_end_ms: None,
        };
        let r = after_attempt(
            &t,
            2,
            AttemptOutcome::Succeeded,
            &limits(2, 60),
            &cfg,
            59_000,
        );
        assert_eq!(r, AfterAttempt::Done);
    }

    #[test]
    fn deferred_events_run_early_only_on_a_quiet_node_with_a_warm_sandbox() {
        let cfg = EventSchedulerConfig::default();
        // A 100 s window from t = 0: its last 10 s is the closing stretch.
        let t = EventTiming {
            received_ms: 0,
            window_end_ms: Some(100_000),
        };
        let lim = limits(2, 21_600);
        assert_eq!(window_closing_at(&t, &lim, &cfg), Some(90_000));
        let quiet = quiet_with_warm();
        assert_eq!(
            decide(&t, &lim, &quiet, &cfg, 10),
            Dispatch::Run(RunMode::WarmOnly)
        );
        let busy = NodeLoad {
            budget_used_mb: 3000,
            ..quiet
        };
        assert_eq!(decide(&t, &lim, &busy, &cfg, 10), Dispatch::Hold);
        let waiting = NodeLoad {
            sync_waiting: 1,
            ..quiet
        };
        assert_eq!(decide(&t, &lim, &waiting, &cfg, 10), Dispatch::Hold);
        let nothing_warm = NodeLoad {
            idle_function_warm: 0,
            ..quiet
        };
        assert_eq!(
            decide(&t, &lim, &nothing_warm, &cfg, 89_999),
            Dispatch::Hold
        );
        // The window closes: it runs anyway, and may acquire capacity.
        assert_eq!(
            decide(&t, &lim, &busy, &cfg, 90_000),
            Dispatch::Run(RunMode::Normal)
        );
        assert_eq!(
            decide(&t, &lim, &nothing_warm, &cfg, 95_000),
            Dispatch::Run(RunMode::Normal)
        );
    }

    #[test]
    fn a_short_window_still_gets_the_minimum_closing_stretch() {
        let cfg = EventSchedulerConfig::default();
        let t = EventTiming {
            received_ms: 1_000,
            window_end_ms: Some(6_000),
        };
        assert_eq!(window_closing_at(&t, &limits(2, 21_600), &cfg), Some(4_000));
    }

    #[test]
    fn a_window_longer_than_the_event_may_live_closes_before_it_expires() {
        let cfg = EventSchedulerConfig::default();
        // A day's window, a 60 s maximum age: it closes at 60 s, its last
        // 10% (6 s) is the closing stretch, and it runs there, not expires.
        let t = EventTiming {
            received_ms: 0,
            window_end_ms: Some(86_400_000),
        };
        let lim = limits(2, 60);
        assert_eq!(window_closing_at(&t, &lim, &cfg), Some(54_000));
        let nothing_warm = NodeLoad {
            budget_limit_mb: 4096,
            ..NodeLoad::default()
        };
        assert_eq!(
            decide(&t, &lim, &nothing_warm, &cfg, 53_999),
            Dispatch::Hold
        );
        assert_eq!(
            decide(&t, &lim, &nothing_warm, &cfg, 54_000),
            Dispatch::Run(RunMode::Normal)
        );
    }

    #[test]
    fn a_warm_only_miss_waits_a_moment_and_costs_no_attempt() {
        let cfg = EventSchedulerConfig::default();
        let t = EventTiming {
            received_ms: 0,
            window_end_ms: Some(100_000),
        };
        let r = after_attempt(
            &t,
            1,
            AttemptOutcome::NoWarmSandbox,
            &limits(2, 600),
            &cfg,
            500,
        );
        assert_eq!(
            r,
            AfterAttempt::Retry {
                not_before_ms: 1_500,
                attempts: 1,
                ran: false
            }
        );
    }

    #[test]
    fn the_reserve_is_kept_free_for_synchronous_requests() {
        let cfg = EventSchedulerConfig {
            reserve_mb: 512,
            ..EventSchedulerConfig::default()
        };
        let load = NodeLoad {
            budget_limit_mb: 2048,
            budget_used_mb: 1280,
            ..NodeLoad::default()
        };
        assert!(load.fits_with_reserve(256, &cfg));
        assert!(!load.fits_with_reserve(257, &cfg));
    }

    #[test]
    fn retry_delays_repeat_their_last_entry() {
        let cfg = EventSchedulerConfig {
            retry_delays_ms: vec![1_000, 2_000],
            ..EventSchedulerConfig::default()
        };
        assert_eq!(retry_delay_ms(1, &cfg), 1_000);
        assert_eq!(retry_delay_ms(2, &cfg), 2_000);
        assert_eq!(retry_delay_ms(5, &cfg), 2_000);
    }
}
