//! The asynchronous-event dispatcher: runs accepted events from the durable
//! queue through the same placement path as synchronous requests.
//!
//! One loop wakes when an event is accepted, when an attempt ends, when a
//! sandbox is released, or every [`EventsConfig::poll`]. It reads the due
//! events in deadline order and asks `hearth_pool::events::decide`
//! what to do with each: run it now (with the capacity it may take), hold
//! it (deferred, node busy), or fail it as too old. An attempt is recorded
//! durably as started *before* the function runs, so a crash of the node
//! re-runs it after restart (at least once) and `approximateInvokeCount`
//! counts it; an event is removed only after its function answered.
//! What follows an attempt — done, retry after a back-off, dead letter —
//! is `hearth_pool::events::after_attempt`'s decision; destination
//! records are enqueued in the same transaction that ends the event.

use crate::sqs::{parse_queue_arn, SqsHub};
use crate::{Executor, InvokeInput, InvokeMode};
use bytes::Bytes;
use hearth_pool::events::{
    after_attempt, decide, AfterAttempt, AttemptOutcome, Dispatch, EventSchedulerConfig,
    EventTiming, Failure, NodeLoad, RetryLimits, RunMode,
};
use hearth_store::sqs::{MessageAttribute, NewMessage};
use hearth_store::{EventQueue, Registry};
use hearth_types::arn::NodeIdentity;
use hearth_types::events::{
    EventInvokeConfig, FailureCondition, NewEvent, QueuedEvent, MAX_EVENT_AGE_DEFAULT_S,
    MAX_RETRY_ATTEMPTS_DEFAULT,
};
use hearth_types::ErrorKind;
use parking_lot::Mutex;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore};

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub scheduler: EventSchedulerConfig,
    /// Attempts running at once, node-wide.
    pub workers: usize,
    /// The loop also wakes this often (deferred events, back-offs).
    pub poll: Duration,
    /// Due events read per pass.
    pub batch: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            scheduler: EventSchedulerConfig::default(),
            workers: 64,
            poll: Duration::from_millis(200),
            batch: 256,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (events outlive the process).
pub fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The dispatcher's metrics, registered with the node's.
#[derive(Debug, Clone)]
struct EventMetrics {
    /// `hearth_events_accepted_total{deferred}`.
    accepted: IntCounterVec,
    /// `hearth_event_attempts_total{outcome}`.
    attempts: IntCounterVec,
    /// `hearth_event_retries_total{cause}`: function errors and throttles
    /// sent back to wait.
    retries: IntCounterVec,
    /// `hearth_events_dead_lettered_total{condition}`.
    dead_lettered: IntCounterVec,
    /// `hearth_event_sqs_deliveries_total{outcome}`: invocation records
    /// sent to SQS destinations and dead-letter queues.
    destinations: IntCounterVec,
    /// `hearth_event_deferrals_total{outcome}`: deferred events held, run
    /// early on a warm sandbox, or run as their window closed.
    deferrals: IntCounterVec,
    /// `hearth_event_queue_depth{state}`.
    depth: IntGaugeVec,
    /// `hearth_event_oldest_age_seconds`.
    oldest_age: IntGauge,
    /// `hearth_event_start_delay_seconds{attempt}`: acceptance (or the
    /// retry's due time) to the attempt's start.
    start_delay: HistogramVec,
}

impl EventMetrics {
    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let accepted = IntCounterVec::new(
            Opts::new(
                "hearth_events_accepted_total",
                "Asynchronous events accepted",
            ),
            &["deferred"],
        )?;
        let attempts = IntCounterVec::new(
            Opts::new("hearth_event_attempts_total", "Event attempts, by outcome"),
            &["outcome"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new("hearth_event_retries_total", "Events sent back to wait"),
            &["cause"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "hearth_events_dead_lettered_total",
                "Events moved to a dead-letter store",
            ),
            &["condition"],
        )?;
        let destinations = IntCounterVec::new(
            Opts::new(
                "hearth_event_sqs_deliveries_total",
                "Invocation records and dead letters sent to SQS queues",
            ),
            &["outcome"],
        )?;
        let deferrals = IntCounterVec::new(
            Opts::new(
                "hearth_event_deferrals_total",
                "Deferred events held back or run",
            ),
            &["outcome"],
        )?;
        let depth = IntGaugeVec::new(
            Opts::new("hearth_event_queue_depth", "Events in the queue, by state"),
            &["state"],
        )?;
        let oldest_age = IntGauge::new(
            "hearth_event_oldest_age_seconds",
            "Age of the oldest event in the queue",
        )?;
        let start_delay = HistogramVec::new(
            HistogramOpts::new(
                "hearth_event_start_delay_seconds",
                "From an event's acceptance (or its retry's due time) to its attempt's start",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["attempt"],
        )?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(destinations.clone()))?;
        registry.register(Box::new(deferrals.clone()))?;
        registry.register(Box::new(depth.clone()))?;
        registry.register(Box::new(oldest_age.clone()))?;
        registry.register(Box::new(start_delay.clone()))?;
        Ok(Self {
            accepted,
            attempts,
            retries,
            dead_lettered,
            destinations,
            deferrals,
            depth,
            oldest_age,
            start_delay,
        })
    }
}

#[derive(Debug)]
struct Inner {
    exec: Executor,
    queue: Arc<dyn EventQueue>,
    registry: Arc<dyn Registry>,
    node: NodeIdentity,
    config: EventsConfig,
    /// Where SQS destinations deliver.
    sqs: Arc<SqsHub>,
    wake: Notify,
    workers: Arc<Semaphore>,
    /// Events with an attempt in flight (the queue says so too; this saves
    /// a read per pass).
    running: Mutex<HashSet<String>>,
    metrics: EventMetrics,
    /// Set by [`Events::stop`]: no new attempt starts.
    stopping: std::sync::atomic::AtomicBool,
}

/// The dispatcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events(Arc<Inner>);

/// An event's effective settings: its qualifier's event-invoke config, or
/// the function's unqualified one, or Lambda's defaults.
#[derive(Debug, Clone, Default)]
struct Settings {
    limits: Option<RetryLimits>,
    on_success: Option<String>,
    on_failure: Option<String>,
}

impl Settings {
    fn from_config(c: Option<EventInvokeConfig>) -> Self {
        let retries = c
            .as_ref()
            .and_then(|c| c.maximum_retry_attempts)
            .unwrap_or(MAX_RETRY_ATTEMPTS_DEFAULT);
        let age = c
            .as_ref()
            .and_then(|c| c.maximum_event_age_seconds)
            .unwrap_or(MAX_EVENT_AGE_DEFAULT_S);
        Self {
            limits: Some(RetryLimits {
                max_retry_attempts: retries,
                max_event_age_ms: i64::from(age) * 1000,
            }),
            on_success: c.as_ref().and_then(|c| c.on_success.clone()),
            on_failure: c.and_then(|c| c.on_failure),
        }
    }

    fn limits(&self) -> RetryLimits {
        self.limits.unwrap_or(RetryLimits {
            max_retry_attempts: MAX_RETRY_ATTEMPTS_DEFAULT,
            max_event_age_ms: i64::from(MAX_EVENT_AGE_DEFAULT_S) * 1000,
        })
    }
}

/// What one attempt produced, for the record and the next decision.
struct Attempt {
    outcome: AttemptOutcome,
    executed_version: Option<String>,
    response: Option<Bytes>,
    /// The function (or its qualifier) is gone.
    not_found: bool,
}

impl Events {
    /// Recovers events a previous process left running and starts the
    /// dispatch loop on the current tokio runtime.
    pub fn start(
        exec: Executor,
        queue: Arc<dyn EventQueue>,
        registry: Arc<dyn Registry>,
        node: NodeIdentity,
        config: EventsConfig,
        sqs: Arc<SqsHub>,
    ) -> Result<Self, hearth_store::StoreError> {
        let recovered = queue.recover()?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "events left running by the previous process are due again"
            );
        }
        // Fresh, uniquely named metrics in the node's registry: registration
        // cannot collide.
        #[allow(clippy::expect_used)]
        let metrics =
            EventMetrics::new(exec.metrics().registry()).expect("event metrics register once");
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        let me = Self(Arc::new(Inner {
            exec,
            queue,
            registry,
            node,
            config,
            sqs,
            wake: Notify::new(),
            workers,
            running: Mutex::new(HashSet::new()),
            metrics,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }));
        let lp = me.clone();
        tokio::spawn(async move { lp.run().await });
        Ok(me)
    }

    /// The queue events are accepted into.
    pub fn queue(&self) -> &Arc<dyn EventQueue> {
        &self.0.queue
    }

    /// Accepts an event: returns once it is durably stored.
    pub async fn accept(&self, ev: NewEvent) -> Result<(), hearth_store::StoreError> {
        let deferred = if ev.window_end_ms.is_some() {
            "yes"
        } else {
            "no"
        };
        let q = self.0.queue.clone();
        tokio::task::spawn_blocking(move || q.enqueue(ev))
            .await
            .map_err(|e| hearth_store::StoreError::Io(std::io::Error::other(e.to_string())))??;
        self.0.metrics.accepted.with_label_values(&[deferred]).inc();
        self.0.wake.notify_one();
        Ok(())
    }

    /// Wakes the loop (e.g. a dead-letter redrive).
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// Starts no new attempt, and waits (at most `grace`) for the running
    /// ones to end and be recorded. Whatever is still running after that is
    /// re-run at the next start (at least once).
    pub async fn stop(&self, grace: Duration) {
        self.0
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let all = u32::try_from(self.0.config.workers.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.0.workers.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "event attempts were still running at shutdown; they run again at the next start"
            );
        }
    }

    /// Runs a queue write, retrying transient failures (bounded: about six
    /// seconds), so that an attempt's end is not left unrecorded, which
    /// would keep the event `running` until the next start.
    async fn record(
        &self,
        what: &'static str,
        op: impl Fn(&Inner) -> Result<(), hearth_store::StoreError> + Clone + Send + 'static,
    ) -> Result<(), hearth_store::StoreError> {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match self.blocking(op.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ hearth_store::StoreError::EventNotFound { .. }) => return Err(e),
                Err(e) if tries >= 5 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, what, "recording an event failed; trying again");
                    tries += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    async fn run(self) {
        let mut last_gauges = std::time::Instant::now() - Duration::from_secs(10);
        // Whether the last pass held a due event back for capacity.
        let mut holding = true;
        loop {
            // Capacity freed by a synchronous invocation may let a held
            // event run: the release notification wakes the loop too — but
            // only while an event is held, so that warm synchronous traffic
            // does not pay a queue read per invocation.
            let released = self.0.exec.released_notified();
            tokio::select! {
                () = self.0.wake.notified() => {}
                () = released, if holding => {}
                () = tokio::time::sleep(self.0.config.poll) => {}
            }
            match self.pass().await {
                Ok(held) => holding = held,
                Err(e) => {
                    tracing::warn!(error = %e, "event dispatch pass failed");
                    holding = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if last_gauges.elapsed() >= Duration::from_secs(1) {
                last_gauges = std::time::Instant::now();
                self.update_gauges().await;
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, hearth_store::StoreError> + Send + 'static,
    ) -> Result<T, hearth_store::StoreError> {
        let me = self.0.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| hearth_store::StoreError::Io(std::io::Error::other(e.to_string())))?
    }

    async fn update_gauges(&self) {
        let now = epoch_ms();
        let r = self
            .blocking(move |me| Ok((me.queue.counts(now)?, me.queue.oldest_received_ms()?)))
            .await;
        if let Ok((c, oldest)) = r {
            let m = &self.0.metrics;
            m.depth.with_label_values(&["ready"]).set(c.ready as i64);
            m.depth
                .with_label_values(&["retrying"])
                .set(c.retrying as i64);
            m.depth
                .with_label_values(&["deferred"])
                .set(c.deferred as i64);
            m.depth
                .with_label_values(&["running"])
                .set(c.running as i64);
            m.depth
                .with_label_values(&["dead-letter"])
                .set(c.dead_letters as i64);
            m.oldest_age
                .set(oldest.map_or(0, |o| (now - o).max(0) / 1000));
        }
    }

    /// One pass over the due events. Returns whether it held one back
    /// (deferred, or waiting for capacity): a released sandbox should
    /// trigger another pass then. (Attempts that end wake the loop
    /// themselves.)
    async fn pass(&self) -> Result<bool, hearth_store::StoreError> {
        if self.0.workers.available_permits() == 0
            || self.0.stopping.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(false);
        }
        let mut held = false;
        // Warm sandboxes already promised to deferred events in this pass,
        // by function: one idle sandbox runs one of them, not all.
        let mut warm_promised: HashMap<(String, String), u32> = HashMap::new();
        let now = epoch_ms();
        let batch = self.0.config.batch;
        let due = self.blocking(move |me| me.queue.due(now, batch)).await?;
        let mut settings: HashMap<(String, String, String), Settings> = HashMap::new();
        for ev in due {
            if self.0.running.lock().contains(&ev.event.id) {
                continue;
            }
            let key = (
                ev.event.account_id.clone(),
                ev.event.function_name.clone(),
                ev.event
                    .qualifier
                    .clone()
                    .unwrap_or_else(|| "$LATEST".to_owned()),
            );
            let s = match settings.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let k = key.clone();
                    let s = self
                        .blocking(move |me| {
                            me.registry
                                .get_event_invoke_config(&k.0, &k.1, &k.2)
                                .map(Settings::from_config)
                        })
                        .await?;
                    settings.insert(key, s.clone());
                    s
                }
            };
            let timing = EventTiming {
                received_ms: ev.event.received_ms,
                window_end_ms: ev.event.window_end_ms,
            };
            let load = self.load_for(&ev.event);
            let now = epoch_ms();
            let fkey = (ev.event.account_id.clone(), ev.event.function_name.clone());
            let promised = warm_promised.get(&fkey).copied().unwrap_or(0);
            let decision = match decide(&timing, &s.limits(), &load, &self.0.config.scheduler, now)
            {
                Dispatch::Run(RunMode::WarmOnly) if promised >= load.idle_function_warm => {
                    Dispatch::Hold
                }
                Dispatch::Run(RunMode::WarmOnly) => {
                    warm_promised.insert(fkey, promised + 1);
                    Dispatch::Run(RunMode::WarmOnly)
                }
                other => other,
            };
            match decision {
                Dispatch::Hold => {
                    held = true;
                    self.0.metrics.deferrals.with_label_values(&["held"]).inc();
                }
                Dispatch::Expire => {
                    let response = ev.last_response.clone().map(Bytes::from);
                    self.fail(&ev, &s, Failure::EventAgeExceeded, response, None)
                        .await?;
                }
                Dispatch::Run(mode) => {
                    let Ok(permit) = self.0.workers.clone().try_acquire_owned() else {
                        break;
                    };
                    if ev.event.window_end_ms.is_some() {
                        let label = match mode {
                            RunMode::WarmOnly => "early-warm",
                            RunMode::Normal => "window-closing",
                        };
                        self.0.metrics.deferrals.with_label_values(&[label]).inc();
                    }
                    let id = ev.event.id.clone();
                    let invoke_count = match self.blocking(move |me| me.queue.start(&id)).await {
                        Ok(n) => n,
                        // Gone or taken meanwhile (a redrive, a dead letter):
                        // nothing to run.
                        Err(hearth_store::StoreError::EventNotFound { .. }) => continue,
                        Err(e) => return Err(e),
                    };
                    let first = if ev.attempts == 0 && ev.invoke_count == 0 {
                        "first"
                    } else {
                        "retry"
                    };
                    let since = if ev.attempts == 0 {
                        ev.event.received_ms
                    } else {
                        ev.event.not_before_ms
                    };
                    self.0
                        .metrics
                        .start_delay
                        .with_label_values(&[first])
                        .observe(((epoch_ms() - since).max(0)) as f64 / 1000.0);
                    self.0.running.lock().insert(ev.event.id.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        let id = ev.event.id.clone();
                        let result = me.attempt(ev, s, mode, invoke_count).await;
                        if let Err(hearth_store::StoreError::EventNotFound { .. }) = result {
                            // Its function was deleted meanwhile: Lambda
                            // discards the event.
                            tracing::info!(event = %id, "event discarded with its function");
                        } else if let Err(e) = result {
                            // The event stays `running` in the queue; the
                            // next start of the node re-runs it.
                            tracing::error!(event = %id, error = %e, "cannot record an event attempt's end");
                        }
                        me.0.running.lock().remove(&id);
                        drop(permit);
                        me.0.wake.notify_one();
                    });
                }
            }
        }
        Ok(held)
    }

    fn load_for(&self, ev: &NewEvent) -> NodeLoad {
        let (limit, used, waiting, idle) = self.0.exec.load_view(&ev.account_id, &ev.function_name);
        NodeLoad {
            budget_limit_mb: limit,
            budget_used_mb: used,
            idle_function_warm: idle,
            sync_waiting: waiting,
        }
    }

    /// Runs one attempt and records what follows it.
    async fn attempt(
        &self,
        ev: QueuedEvent,
        s: Settings,
        mode: RunMode,
        invoke_count: u32,
    ) -> Result<(), hearth_store::StoreError> {
        let input = InvokeInput {
            account_id: ev.event.account_id.clone(),
            function_name: ev.event.function_name.clone(),
            qualifier: ev.event.qualifier.clone(),
            payload: Bytes::from(ev.event.payload.clone()),
            tail: false,
            client_context: ev.event.client_context.clone(),
            dry_run: false,
            request_id: Some(ev.event.id.clone()),
            mode: match mode {
                RunMode::Normal => InvokeMode::Async {
                    reserve_mb: self.0.config.scheduler.reserve_mb,
                },
                RunMode::WarmOnly => InvokeMode::WarmOnly,
            },
        };
        let exec = self.0.exec.clone();
        // Its own task: the attempt runs to its end whatever happens here.
        let result = tokio::spawn(async move { exec.invoke(input).await }).await;
        let attempt = match result {
            Ok(Ok(out)) => Attempt {
                outcome: if out.function_error {
                    AttemptOutcome::FunctionError
                } else {
                    AttemptOutcome::Succeeded
                },
                executed_version: Some(out.executed_version),
                response: Some(out.body),
                not_found: false,
            },
            Ok(Err(e)) if e.kind == ErrorKind::ResourceNotFound => Attempt {
                outcome: AttemptOutcome::Throttled,
                executed_version: None,
                response: None,
                not_found: true,
            },
            Ok(Err(e)) => {
                if e.kind != ErrorKind::TooManyRequests {
                    tracing::warn!(event = %ev.event.id, error = %e.message, "event attempt refused; it waits and is tried again");
                }
                Attempt {
                    outcome: if mode == RunMode::WarmOnly && e.kind == ErrorKind::TooManyRequests {
                        AttemptOutcome::NoWarmSandbox
                    } else {
                        AttemptOutcome::Throttled
                    },
                    executed_version: None,
                    response: None,
                    not_found: false,
                }
            }
            Err(e) => {
                // The function may have run: count it as a failed attempt.
                tracing::error!(event = %ev.event.id, error = %e, "event attempt task failed");
                Attempt {
                    outcome: AttemptOutcome::FunctionError,
                    executed_version: None,
                    response: None,
                    not_found: false,
                }
            }
        };
        let label = match attempt.outcome {
            AttemptOutcome::Succeeded => "success",
            AttemptOutcome::FunctionError => "function-error",
            AttemptOutcome::Throttled if attempt.not_found => "function-not-found",
            AttemptOutcome::Throttled => "throttled",
            AttemptOutcome::NoWarmSandbox => "no-warm-sandbox",
        };
        self.0.metrics.attempts.with_label_values(&[label]).inc();
        let ev = QueuedEvent { invoke_count, ..ev };
        if attempt.not_found {
            let mut ev = ev;
            // The attempt never ran the function.
            ev.invoke_count = ev.invoke_count.saturating_sub(1);
            return self
                .dead_letter(&ev, &s, FailureCondition::FunctionNotFound, None, None)
                .await;
        }
        let timing = EventTiming {
            received_ms: ev.event.received_ms,
            window_end_ms: ev.event.window_end_ms,
        };
        let next = after_attempt(
            &timing,
            ev.attempts,
            attempt.outcome,
            &s.limits(),
            &self.0.config.scheduler,
            epoch_ms(),
        );
        match next {
            AfterAttempt::Done => {
                let delivery = s.on_success.as_deref().and_then(|dest| {
                    self.destination(
                        dest,
                        &ev,
                        "Success",
                        attempt.executed_version.as_deref(),
                        attempt.response.as_deref(),
                        false,
                    )
                });
                let record = self.deliver(delivery).await;
                let id = ev.event.id.clone();
                self.record("complete", move |me| me.queue.complete(&id, record.clone()))
                    .await?;
                if s.on_success.is_some() {
                    self.0.wake.notify_one();
                }
                Ok(())
            }
            AfterAttempt::Retry {
                not_before_ms,
                attempts,
                ran,
            } => {
                let cause = if ran { "function-error" } else { "throttled" };
                if attempt.outcome != AttemptOutcome::NoWarmSandbox {
                    self.0.metrics.retries.with_label_values(&[cause]).inc();
                }
                let id = ev.event.id.clone();
                let last = attempt
                    .response
                    .filter(|_| ran)
                    .map(|b| b.to_vec())
                    .or(ev.last_response);
                self.record("reschedule", move |me| {
                    me.queue
                        .reschedule(&id, not_before_ms, attempts, ran, last.as_deref())
                })
                .await
            }
            AfterAttempt::Fail(f) => {
                let mut ev = ev;
                if attempt.outcome != AttemptOutcome::FunctionError {
                    ev.invoke_count = ev.invoke_count.saturating_sub(1);
                }
                let response = attempt
                    .response
                    .or_else(|| ev.last_response.clone().map(Bytes::from));
                self.fail(&ev, &s, f, response, attempt.executed_version)
                    .await
            }
        }
    }

    async fn fail(
        &self,
        ev: &QueuedEvent,
        s: &Settings,
        f: Failure,
        response: Option<Bytes>,
        executed_version: Option<String>,
    ) -> Result<(), hearth_store::StoreError> {
        let condition = match f {
            Failure::RetriesExhausted => FailureCondition::RetriesExhausted,
            Failure::EventAgeExceeded => FailureCondition::EventAgeExceeded,
        };
        self.dead_letter(ev, s, condition, response, executed_version)
            .await
    }

    /// Moves the event to its function's dead-letter store and, in the
    /// same transaction, sends its record to the OnFailure destination.
    async fn dead_letter(
        &self,
        ev: &QueuedEvent,
        s: &Settings,
        condition: FailureCondition,
        response: Option<Bytes>,
        executed_version: Option<String>,
    ) -> Result<(), hearth_store::StoreError> {
        self.0
            .metrics
            .dead_lettered
            .with_label_values(&[condition.as_str()])
            .inc();
        let delivery = s.on_failure.as_deref().and_then(|dest| {
            self.destination(
                dest,
                ev,
                condition.as_str(),
                executed_version.as_deref(),
                response.as_deref(),
                true,
            )
        });
        let record = self.deliver(delivery).await;
        self.send_dead_letter(ev, executed_version.as_deref(), response.as_deref())
            .await;
        tracing::info!(
            event = %ev.event.id,
            function = %ev.event.function_name,
            condition = condition.as_str(),
            "event dead-lettered"
        );
        let id = ev.event.id.clone();
        let now = epoch_ms();
        let resp = response.map(|b| b.to_vec());
        let count = ev.invoke_count;
        self.record("dead-letter", move |me| {
            me.queue
                .dead_letter(&id, condition, resp.as_deref(), count, now, record.clone())
        })
        .await?;
        self.0.wake.notify_one();
        Ok(())
    }

    /// Lambda's invocation record for a destination: a new event of the
    /// destination function, or a message for the destination queue
    /// (`None` if the ARN names neither: the API checked it when the
    /// config was put).
    fn destination(
        &self,
        destination: &str,
        ev: &QueuedEvent,
        condition: &str,
        executed_version: Option<&str>,
        response: Option<&[u8]>,
        failed: bool,
    ) -> Option<Delivery> {
        let record = || {
            invocation_record(
                &self.0.node,
                ev,
                condition,
                executed_version,
                response,
                failed,
            )
        };
        if let Some((_, account, queue)) = parse_queue_arn(destination) {
            return Some(Delivery::Queue {
                account,
                queue,
                body: record().to_string(),
            });
        }
        let (account, function, qualifier) = parse_function_arn(destination)?;
        let now = epoch_ms();
        Some(Delivery::Function(NewEvent {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account,
            function_name: function,
            qualifier,
            payload: record().to_string().into_bytes(),
            client_context: None,
            received_ms: now,
            not_before_ms: now,
            window_end_ms: None,
        }))
    }

    /// Sends the event to its function's `DeadLetterConfig` queue, if it
    /// has one: the original payload, with Lambda's `RequestID`,
    /// `ErrorCode` and `ErrorMessage` attributes. Like a queue destination,
    /// before the event's end is recorded (at least once).
    async fn send_dead_letter(
        &self,
        ev: &QueuedEvent,
        executed_version: Option<&str>,
        response: Option<&[u8]>,
    ) {
        let e = &ev.event;
        let (account, function) = (e.account_id.clone(), e.function_name.clone());
        let qualifier = executed_version
            .map(str::to_owned)
            .or_else(|| e.qualifier.clone());
        let target = self
            .blocking(move |me| {
                Ok(me
                    .registry
                    .get_version(
                        &account,
                        &function,
                        &hearth_store::VersionSelector::from_qualifier(qualifier.as_deref()),
                    )
                    .ok()
                    .and_then(|v| v.config.dead_letter_target))
            })
            .await
            .ok()
            .flatten();
        let Some((_, account, queue)) = target.as_deref().and_then(parse_queue_arn) else {
            return;
        };
        let message = dead_letter_message(ev, response);
        match self.0.sqs.send(&account, &queue, vec![message]).await {
            Ok(()) => self
                .0
                .metrics
                .destinations
                .with_label_values(&["delivered"])
                .inc(),
            Err(err) => {
                tracing::warn!(account, queue, error = %err, "cannot send an event to its function's dead-letter queue");
                self.0
                    .metrics
                    .destinations
                    .with_label_values(&["failed"])
                    .inc();
            }
        }
    }

    /// Sends a queue delivery now — on disk before the event's end is
    /// recorded, so a crash between the two repeats the delivery rather
    /// than losing it (at least once, as Lambda) — and returns a function
    /// delivery as the event to enqueue with that end.
    async fn deliver(&self, delivery: Option<Delivery>) -> Option<NewEvent> {
        match delivery? {
            Delivery::Function(ev) => Some(ev),
            Delivery::Queue {
                account,
                queue,
                body,
            } => {
                let msg = NewMessage::new(body, Vec::new(), None);
                match self.0.sqs.send(&account, &queue, vec![msg]).await {
                    Ok(()) => self
                        .0
                        .metrics
                        .destinations
                        .with_label_values(&["delivered"])
                        .inc(),
                    Err(e) => {
                        // Lambda drops a record it cannot deliver and counts
                        // it (DestinationDeliveryFailures).
                        tracing::warn!(account, queue, error = %e, "cannot deliver an invocation record to its SQS destination");
                        self.0
                            .metrics
                            .destinations
                            .with_label_values(&["failed"])
                            .inc();
                    }
                }
                None
            }
        }
    }
}

/// Lambda keeps the first kilobyte of a dead letter's `ErrorMessage`.
const DLQ_ERROR_MESSAGE_MAX_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The dead-letter queue's message for an event: its payload as the body
/// and, as Lambda sets them, `RequestID`, `ErrorCode` (the invocation's
/// status: 200 for a function error, 429 if it never ran) and
/// `ErrorMessage` (the function's `errorMessage`).
pub fn dead_letter_message(ev: &QueuedEvent, response: Option<&[u8]>) -> NewMessage {
    let e = &ev.event;
    let string = |name: &str, data_type: &str, v: String| MessageAttribute {
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        string_value: Some(v),
        binary_value: None,
    };
    let error_message = response
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .or_else(|| response.map(|r| String::from_utf8_lossy(r).into_owned()))
        .filter(|m| !m.is_empty())
        .map(|m| truncate_utf8(m, DLQ_ERROR_MESSAGE_MAX_BYTES))
        .unwrap_or_else(|| "The function was throttled until the event expired.".to_owned());
    let code = if response.is_some() { "200" } else { "429" };
    NewMessage::new(
        String::from_utf8_lossy(&e.payload).into_owned(),
        vec![
            string("ErrorCode", "Number", code.to_owned()),
            string("ErrorMessage", "String", error_message),
            string("RequestID", "String", e.id.clone()),
        ],
        None,
    )
}

/// Where a destination record goes.
enum Delivery {
    /// An event of the destination function, enqueued with the end of the
    /// event it reports.
    Function(NewEvent),
    /// A message on an SQS queue.
    Queue {
        account: String,
        queue: String,
        body: String,
    },
}

/// Lambda's invocation record (destinations), as AWS sends it.
pub fn invocation_record(
    node: &NodeIdentity,
    ev: &QueuedEvent,
    condition: &str,
    executed_version: Option<&str>,
    response: Option<&[u8]>,
    failed: bool,
) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let e = &ev.event;
    let qualifier = e.qualifier.as_deref().unwrap_or("$LATEST");
    let as_json = |b: &[u8]| -> Value {
        serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let mut response_context = Map::new();
    // A function that never ran (throttled until its age ran out) has no
    // status of its own; Lambda reports the throttle.
    let ran = executed_version.is_some() || response.is_some();
    response_context.insert("statusCode".into(), json!(if ran { 200 } else { 429 }));
    if let Some(v) = executed_version.or(ran.then_some(qualifier)) {
        response_context.insert("executedVersion".into(), json!(v));
    }
    if failed && ran {
        response_context.insert("functionError".into(), json!("Unhandled"));
    }
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut record = json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": e.id,
            "functionArn": node.qualified_arn(&e.account_id, &e.function_name, qualifier),
            "condition": condition,
            "approximateInvokeCount": ev.invoke_count,
        },
        "requestPayload": as_json(&e.payload),
        "responseContext": Value::Object(response_context),
    });
    if let (Some(r), Some(obj)) = (response, record.as_object_mut()) {
        obj.insert("responsePayload".into(), as_json(r));
    }
    record
}

/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`
/// → (account, name, qualifier).
pub fn parse_function_arn(arn: &str) -> Option<(String, String, Option<String>)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, account, "function", name] => {
            Some(((*account).to_owned(), (*name).to_owned(), None))
        }
        ["arn", _, "lambda", _, account, "function", name, q] => Some((
            (*account).to_owned(),
            (*name).to_owned(),
            Some((*q).to_owned()).filter(|q| q != "$LATEST"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(invoke_count: u32) -> QueuedEvent {
        QueuedEvent {
            event: NewEvent {
                id: "req-1".into(),
                account_id: "000000000000".into(),
                function_name: "f".into(),
                qualifier: None,
                payload: br#"{"raise_error": 1}"#.to_vec(),
                client_context: None,
                received_ms: 0,
                not_before_ms: 0,
                window_end_ms: None,
            },
            attempts: 2,
            invoke_count,
            running: false,
            last_response: None,
        }
    }

    #[test]
    fn the_dead_letter_message_has_lambdas_attributes() {
        let body = br#"{"errorMessage":"boom","errorType":"Exception"}"#;
        let m = dead_letter_message(&queued(3), Some(body));
        assert_eq!(m.body, r#"{"raise_error": 1}"#);
        let attr = |n: &str| {
            m.attributes.iter().find(|a| a.name == n).map(|a| {
                (
                    a.data_type.clone(),
                    a.string_value.clone().unwrap_or_default(),
                )
            })
        };
        assert_eq!(attr("ErrorCode"), Some(("Number".into(), "200".into())));
        assert_eq!(attr("ErrorMessage"), Some(("String".into(), "boom".into())));
        assert_eq!(attr("RequestID"), Some(("String".into(), "req-1".into())));
        assert!(m.md5_of_attributes.is_some());
        let long = format!(r#"{{"errorMessage":"{}é"}}"#, "x".repeat(1023));
        let m = dead_letter_message(&queued(3), Some(long.as_bytes()));
        let msg = m
            .attributes
            .iter()
            .find(|a| a.name == "ErrorMessage")
            .and_then(|a| a.string_value.clone());
        assert_eq!(msg.map(|m| m.len()), Some(1023));
        let throttled = dead_letter_message(&queued(0), None);
        assert_eq!(
            throttled
                .attributes
                .iter()
                .find(|a| a.name == "ErrorCode")
                .and_then(|a| a.string_value.clone()),
            Some("429".into())
        );
    }

    #[test]
    fn the_failure_record_has_lambdas_shape() {
        let node = NodeIdentity::new("us-east-1");
        let body = br#"{"errorMessage":"boom","errorType":"Exception","requestId":"req-1","stackTrace":[]}"#;
        let r = invocation_record(
            &node,
            &queued(3),
            "RetriesExhausted",
            Some("$LATEST"),
            Some(body),
            true,
        );
        assert_eq!(r["version"], "1.0");
        assert_eq!(r["requestContext"]["requestId"], "req-1");
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"
        );
        assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(r["requestPayload"]["raise_error"], 1);
        assert_eq!(r["responseContext"]["statusCode"], 200);
        assert_eq!(r["responseContext"]["executedVersion"], "$LATEST");
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["responsePayload"]["errorMessage"], "boom");
        assert!(r["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn a_success_record_has_no_function_error_and_keeps_non_json_answers() {
        let node = NodeIdentity::new("us-east-1");
        let r = invocation_record(
            &node,
            &queued(1),
            "Success",
            Some("3"),
            Some(b"null"),
            false,
        );
        assert_eq!(r["responseContext"]["executedVersion"], "3");
        assert!(r["responseContext"].get("functionError").is_none());
        assert!(r["responsePayload"].is_null());
        assert!(r
            .as_object()
            .is_some_and(|o| o.contains_key("responsePayload")));
    }

    #[test]
    fn function_arns_split_into_account_name_and_qualifier() {
        assert_eq!(
            parse_function_arn("arn:aws:lambda:us-east-1:000000000000:function:dest"),
            Some(("000000000000".into(), "dest".into(), None))
        );
        assert_eq!(
            parse_function_arn("arn:aws:lambda:us-east-1:000000000000:function:dest:live"),
            Some(("000000000000".into(), "dest".into(), Some("live".into())))
        );
        assert_eq!(
            parse_function_arn("arn:aws:lambda:us-east-1:000000000000:function:dest:$LATEST"),
            Some(("000000000000".into(), "dest".into(), None))
        );
        assert_eq!(
            parse_function_arn("arn:aws:sqs:us-east-1:000000000000:q"),
            None
        );
    }
}
