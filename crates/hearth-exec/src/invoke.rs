//! One synchronous invocation, from the resolved function to Lambda's answer.

use crate::instance::{Instance, Origin};
use crate::logs::{frame, tail, LogPump, Report};
use crate::placement::WarmKey;
use crate::pools::{family_of, MemoryCharge, PoolKey, Unspecialised, SHELL};
use crate::Executor;
use base64::Engine;
use bytes::Bytes;
use hearth_pool::placement::{
    asks_general, place, BudgetView, PlacementDecision, PlacementRequest, PoolView,
};
use hearth_pool::profile::{memory_class_for, RuntimeProfile, Warmth};
use hearth_runtime::api::{Assignment, InitializationType, RuntimeEnv, RuntimeReady};
use hearth_runtime::api::{InitOutcome, Invocation, InvokeOutcome, RuntimeApi};
use hearth_sandbox::{ExitStatus, SandboxSpec};
use hearth_store::VersionSelector;
use hearth_types::function::{FunctionState, VersionRecord};
use hearth_types::LambdaError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An invocation as the Invoke API parsed it.
#[derive(Debug, Clone)]
pub struct InvokeInput {
    pub account_id: String,
    pub function_name: String,
    pub qualifier: Option<String>,
    /// Valid JSON (the API checked it).
    pub payload: Bytes,
    /// `X-Amz-Log-Type: Tail`.
    pub tail: bool,
    /// `X-Amz-Client-Context`, decoded from base64.
    pub client_context: Option<String>,
    /// `X-Amz-Invocation-Type: DryRun`: resolve and check, run nothing.
    pub dry_run: bool,
    /// The request id to run under (an event keeps its id across
    /// attempts); a fresh one if `None`.
    pub request_id: Option<String>,
    /// What capacity the invocation may take.
    pub mode: InvokeMode,
}

/// What capacity an invocation may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvokeMode {
    /// A synchronous request: anything placement offers, including a wait
    /// in its account's queue.
    #[default]
    Sync,
    /// An asynchronous event: a warm or dedicated sandbox, or new capacity
    /// (a general draw, a cold start) only while `reserve_mb` of the memory
    /// budget stays free for synchronous requests; never a queue slot.
    Async { reserve_mb: u64 },
    /// A deferred event running early: only an idle function-warm sandbox.
    WarmOnly,
}

impl InvokeMode {
    /// Whether this mode may act on `decision` given the budget.
    pub(crate) fn allows(
        self,
        decision: PlacementDecision,
        budget: &BudgetView,
        memory_mb: u64,
    ) -> bool {
        match self {
            Self::Sync => true,
            Self::WarmOnly => matches!(
                decision,
                PlacementDecision::Warm
                    | PlacementDecision::Dedicated {
                        function_warm: true
                    }
            ),
            Self::Async { reserve_mb } => match decision {
                PlacementDecision::Warm | PlacementDecision::Dedicated { .. } => true,
                PlacementDecision::GeneralRuntime
                | PlacementDecision::GeneralShell
                | PlacementDecision::Cold { .. } => {
                    budget
                        .used_mb
                        .saturating_add(memory_mb)
                        .saturating_add(reserve_mb)
                        <= budget.limit_mb
                }
                PlacementDecision::Queue { .. } | PlacementDecision::Reject { .. } => false,
            },
        }
    }
}

/// What the Invoke API answers.
#[derive(Debug, Clone)]
pub struct InvokeOutput {
    pub request_id: String,
    pub executed_version: String,
    /// `X-Amz-Function-Error: Unhandled`.
    pub function_error: bool,
    pub body: Bytes,
    /// This invocation's log (START to REPORT). `X-Amz-Log-Result` is the
    /// base64 of its last 4 KB ([`InvokeOutput::log_result`]), made only
    /// when the caller asks for it.
    pub log: Option<String>,
    /// `X-Hearth-Placement`: where the sandbox came from.
    pub placement: &'static str,
    /// `X-Hearth-Usage`: a microVM invocation's cost, phase by phase (µs).
    pub usage: Option<String>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())
}

/// How an invocation on a sandbox ended.
enum Ending {
    Answered(InvokeOutcome),
    TimedOut,
    /// The sandbox died; its exit status once the launcher was reaped.
    Exited(Option<ExitStatus>),
}

impl Executor {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Executor) -> Result<T, LambdaError> + Send + 'static,
    ) -> Result<T, LambdaError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| LambdaError::service(format!("worker failed: {e}")))?
    }

    /// Resolves the version to run: `$LATEST`, a number, or an alias, whose
    /// routing weights pick between its two versions.
    /// Also says whether routing weights chose the version.
    fn resolve_version(&self, input: &InvokeInput) -> Result<(VersionRecord, bool), LambdaError> {
        let reg = &self.0.registry;
        let sel = VersionSelector::from_qualifier(input.qualifier.as_deref());
        let mut routed = false;
        let sel = match sel {
            VersionSelector::Alias(alias) => {
                let a = reg
                    .get_alias(&input.account_id, &input.function_name, &alias)
                    .map_err(store_err)?;
                routed = !a.routing.is_empty();
                let roll: f64 = rand_unit();
                let mut acc = 0.0;
                let mut chosen = a.function_version.clone();
                for (v, w) in &a.routing {
                    acc += w;
                    if roll < acc {
                        chosen = v.clone();
                        break;
                    }
                }
                VersionSelector::Version(chosen)
            }
            other => other,
        };
        reg.get_version(&input.account_id, &input.function_name, &sel)
            .map(|v| (v, routed))
            .map_err(store_err)
    }

    /// The version to run and the concurrency settings that admit it, from
    /// the registry, or from what an earlier invocation read while the
    /// registry has not been written since (its write epoch): the warm
    /// path then neither queries SQLite nor leaves the async threads.
    /// Aliases with routing weights pick a version per invocation and are
    /// not kept.
    async fn resolve_cached(
        &self,
        input: &InvokeInput,
    ) -> Result<(Arc<VersionRecord>, Option<u32>, u64), LambdaError> {
        let key = (
            input.account_id.clone(),
            input.function_name.clone(),
            input.qualifier.clone(),
        );
        let epoch = self.0.registry.write_epoch();
        if let Some(r) = self.0.resolved.lock().get(&key) {
            if r.epoch == epoch {
                return Ok((r.version.clone(), r.reserved, r.reserved_total));
            }
        }
        let inp = input.clone();
        let (version, reserved, reserved_total, routed) = self
            .blocking(move |me| {
                let (v, routed) = me.resolve_version(&inp)?;
                let reserved =
                    me.0.registry
                        .get_reserved_concurrency(&inp.account_id, &inp.function_name)
                        .map_err(store_err)?;
                let usage =
                    me.0.registry
                        .account_usage(&inp.account_id)
                        .map_err(store_err)?;
                Ok((v, reserved, usage.reserved_concurrency, routed))
            })
            .await?;
        let version = Arc::new(version);
        if !routed {
            let mut cache = self.0.resolved.lock();
            // Bounded: a node with more distinct targets than this simply
            // reads the registry more often.
            if cache.len() >= 10_000 {
                cache.clear();
            }
            cache.insert(
                key,
                crate::Resolved {
                    epoch,
                    version: version.clone(),
                    reserved,
                    reserved_total,
                },
            );
        }
        Ok((version, reserved, reserved_total))
    }

    /// Reads what invocations of a provisioned configuration will need
    /// from the registry into the invoke path's view.
    pub(crate) async fn prime_resolved(&self, key: &crate::pools::ProvisionedKey) {
        let input = InvokeInput {
            account_id: key.account_id.clone(),
            function_name: key.function_name.clone(),
            qualifier: Some(key.qualifier.clone()),
            payload: Bytes::new(),
            tail: false,
            client_context: None,
            dry_run: true,
            request_id: None,
            mode: InvokeMode::Sync,
        };
        if let Err(e) = self.resolve_cached(&input).await {
            tracing::debug!(function = %key.function_name, error = %e.message, "could not prime the invoke path");
        }
    }

    /// Runs one synchronous invocation.
    pub async fn invoke(&self, input: InvokeInput) -> Result<InvokeOutput, LambdaError> {
        let request_id = input
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (version, reserved, reserved_total) = self.resolve_cached(&input).await?;
        if version.lifecycle.state != FunctionState::Active {
            return Err(LambdaError::conflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {}",
                version.lifecycle.state.as_str()
            )));
        }
        if input.dry_run {
            return Ok(InvokeOutput {
                request_id,
                executed_version: version.version.clone(),
                function_error: false,
                body: Bytes::new(),
                log: None,
                placement: "",
                usage: None,
            });
        }
        let _slot = self.0.concurrency.admit(
            &input.account_id,
            &input.function_name,
            reserved,
            self.0.config.account_concurrency,
            u32::try_from(reserved_total).unwrap_or(u32::MAX),
        )?;
        if let Some(code) = self.vm_code(&version).await? {
            return self.invoke_vm(&input, &version, code, request_id).await;
        }
        if let Some(why) = &self.0.cannot_isolate {
            return Err(LambdaError::service(format!(
                "This Hearth node cannot isolate functions, so it runs none: {why}"
            )));
        }

        let key = WarmKey {
            account_id: version.account_id.clone(),
            function_name: version.function_name.clone(),
            version: version.version.clone(),
            revision_id: version.revision_id.clone(),
        };
        let started = Instant::now();
        // An asynchronous attempt counts as an invocation for the keep-alive
        // policy only once it has a sandbox: one held back or refused would
        // otherwise skew the policy's history (and keep the function warm).
        let fv_key = function_version(&key);
        if input.mode == InvokeMode::Sync {
            self.0.keepalive.lock().on_invocation(&fv_key, self.now());
        }
        let (placement, mut instance) =
            match self.acquire(&version, key, &request_id, input.mode).await {
                Ok(x) => x,
                Err(Acquire::Failed(failed, label)) => {
                    let mut out = failed.into_output(self, &input, &version);
                    out.placement = label;
                    return Ok(out);
                }
                Err(Acquire::Refused(e)) => return Err(e),
            };
        if input.mode != InvokeMode::Sync {
            self.0.keepalive.lock().on_invocation(&fv_key, self.now());
        }
        let m = &self.0.metrics;
        m.placements.with_label_values(&[placement.metric]).inc();
        m.placement_seconds
            .with_label_values(&[placement.metric])
            .observe(started.elapsed().as_secs_f64());
        let mut out = self
            .run(&mut instance, &version, &input, request_id)
            .await
            .finish(self, instance);
        out.placement = placement.source;
        m.invocations
            .with_label_values(&[if out.function_error { "error" } else { "ok" }])
            .inc();
        Ok(out)
    }

    /// Wakes the pool manager `after` from now (its refill follows a draw).
    fn wake_manager_after(&self, after: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.0.wake.notify_one();
        });
    }

    /// Finds a sandbox for one invocation: places it (one decision, under
    /// the pools' lock, with the draw it implies), then specialises a pooled
    /// sandbox or starts one cold, or waits for capacity as the account's
    /// policy says.
    async fn acquire(
        &self,
        version: &VersionRecord,
        key: WarmKey,
        request_id: &str,
        mode: InvokeMode,
    ) -> Result<(Placed, Instance), Acquire> {
        // Set once the invocation has waited in its account's queue: it is
        // then reported as `queued`, wherever it finally ran.
        let mut waited = false;
        let placed = |d: PlacementDecision, waited: bool| {
            if waited {
                Placed {
                    source: "queued",
                    metric: "queued",
                }
            } else {
                Placed {
                    source: d.source(),
                    metric: d.metric_label(),
                }
            }
        };
        let c = &version.config;
        let class = memory_class_for(c.memory_size).unwrap_or(c.memory_size);
        let family = family_of(&c.runtime);
        let runtime_pool = self.runtime_pool_for(&c.runtime, class);
        let shell_pool = PoolKey {
            family: SHELL.to_owned(),
            memory_class_mb: class,
        };
        let profile = RuntimeProfile::new(family, class);
        let fv = hearth_pool::ids::FunctionVersion::new(
            hearth_pool::ids::AccountId::new(&version.account_id),
            &version.function_name,
            &version.version,
        );
        let policy = self.policy_for(&version.account_id);
        let account = version.account_id.clone();
        // Bounded: a queued invocation re-places at most this often before
        // its deadline turns the wait into a 429.
        for _ in 0..10_000 {
            let now = self.now();
            let req = PlacementRequest {
                function: &fv,
                profile: &profile,
                memory_mb: c.memory_size,
                now,
            };
            let (decision, drawn) = {
                let mut pools = self.0.pools.lock();
                if pools.closing {
                    return Err(Acquire::Refused(LambdaError::service(
                        "This Hearth node is shutting down.",
                    )));
                }
                let view = PoolView {
                    active_idle_function_warm: pools.idle.count(&key),
                    dedicated_idle_function_warm: pools.provisioned_idle_for(&key),
                    dedicated_idle_unspecialised: runtime_pool
                        .as_ref()
                        .map_or(0, |k| pools.dedicated_idle(&account, k))
                        + pools.dedicated_idle(&account, &shell_pool),
                    general_idle_runtime_warm: runtime_pool
                        .as_ref()
                        .map_or(0, |k| pools.general_idle(k)),
                    general_idle_shell_warm: pools.general_idle(&shell_pool),
                    general_runtime_target: runtime_pool
                        .as_ref()
                        .and_then(|k| pools.general_targets.get(k))
                        .copied()
                        .unwrap_or(0),
                    general_shell_target: pools
                        .general_targets
                        .get(&shell_pool)
                        .copied()
                        .unwrap_or(0),
                    general_pool_size: pools.general_target_total,
                    general_share: pools.share.standing(fv.account(), now),
                    account_queue_len: pools.queued.get(&account).copied().unwrap_or(0),
                };
                let budget = self.budget_view(&pools, u64::from(c.memory_size));
                let decision = place(&req, &view, &policy, &budget);
                if !mode.allows(decision, &budget, u64::from(c.memory_size)) {
                    drop(pools);
                    self.0
                        .metrics
                        .placements
                        .with_label_values(&["async-held-back"])
                        .inc();
                    return Err(Acquire::Refused(not_now()));
                }
                let drawn = match decision {
                    PlacementDecision::Warm => {
                        pools.idle.take(&key).map(|i| Drawn::Ready(Box::new(i)))
                    }
                    PlacementDecision::Dedicated {
                        function_warm: true,
                    } => pools
                        .take_provisioned(&key)
                        .map(|i| Drawn::Ready(Box::new(i))),
                    PlacementDecision::Dedicated {
                        function_warm: false,
                    } => runtime_pool
                        .as_ref()
                        .and_then(|k| pools.take_dedicated(&account, k))
                        .or_else(|| pools.take_dedicated(&account, &shell_pool))
                        .map(|u| Drawn::Pooled(Box::new(u))),
                    PlacementDecision::GeneralRuntime => runtime_pool
                        .as_ref()
                        .and_then(|k| pools.take_general(k))
                        .map(|u| Drawn::Pooled(Box::new(u))),
                    PlacementDecision::GeneralShell => pools
                        .take_general(&shell_pool)
                        .map(|u| Drawn::Pooled(Box::new(u))),
                    PlacementDecision::Cold { evict_mb } => {
                        // Reserved under the lock, so two cold starts cannot
                        // both fit in the same free memory; the evicted
                        // capacity's charges are handed over, not added to.
                        let (gone, mut charge) = self.evict_for(&mut pools, evict_mb, now);
                        charge.set(u64::from(c.memory_size));
                        Some(Drawn::Evicted(gone, charge))
                    }
                    PlacementDecision::Queue { .. } => {
                        *pools.queued.entry(account.clone()).or_default() += 1;
                        None
                    }
                    PlacementDecision::Reject { .. } => None,
                };
                if asks_general(&decision, policy.mode) {
                    if decision.is_general() && drawn.is_some() {
                        pools.share.record_draw(fv.account(), now);
                    } else {
                        pools.share.record_ask(fv.account(), now);
                    }
                }
                (decision, drawn)
            };
            match (decision, drawn) {
                (
                    PlacementDecision::Warm | PlacementDecision::Dedicated { .. },
                    Some(Drawn::Ready(i)),
                ) => {
                    if decision == PlacementDecision::Warm {
                        self.0.keepalive.lock().on_busy(i.sid, now);
                    }
                    return Ok((placed(decision, waited), *i));
                }
                (
                    PlacementDecision::GeneralRuntime
                    | PlacementDecision::GeneralShell
                    | PlacementDecision::Dedicated { .. },
                    Some(Drawn::Pooled(u)),
                ) => {
                    // A general draw feeds the pool's sizing (the share
                    // ledger has it already); a dedicated one is the
                    // account's.
                    if decision.is_general() {
                        if let Some(s) = self.0.sizers.lock().get_mut(&u.key) {
                            s.record_draw(now);
                        }
                    }
                    self.wake_manager_after(REFILL_DEFER);
                    return self
                        .specialise(
                            *u,
                            version,
                            key,
                            InitializationType::OnDemand,
                            Origin::Active,
                            request_id,
                        )
                        .await
                        .map(|i| (placed(decision, waited), i))
                        .map_err(|f| Acquire::Failed(f, decision.source()));
                }
                (PlacementDecision::Cold { .. }, Some(Drawn::Evicted(evicted, charge))) => {
                    // The evicted sandboxes' memory is free only once they are gone.
                    for g in evicted {
                        let _ = g.await;
                    }
                    if let Some(k) = &runtime_pool {
                        if let Some(s) = self.0.sizers.lock().get_mut(k) {
                            s.record_cold_start(now);
                        }
                    }
                    self.0.wake.notify_one();
                    return self
                        .cold_start(version, key, request_id, charge)
                        .await
                        .map(|i| (placed(decision, waited), i))
                        .map_err(|f| Acquire::Failed(f, decision.source()));
                }
                (PlacementDecision::Queue { deadline }, _) => {
                    waited = true;
                    let released = self.0.released.notified();
                    self.wait_queued(&account, deadline, now, released)
                        .await
                        .map_err(Acquire::Refused)?;
                }
                (PlacementDecision::Reject { .. }, _) => {
                    return Err(Acquire::Refused(self.rejected()));
                }
                // The view said yes but the draw found nothing: place again.
                _ => {}
            }
        }
        Err(Acquire::Refused(throttle()))
    }

    /// Waits in `account`'s queue until a sandbox or VM is released or
    /// `deadline` passes, then leaves the queue. A wait that runs out is a
    /// 429 (counted as rejected). Shared by the sandbox and microVM paths.
    pub(crate) async fn wait_queued(
        &self,
        account: &str,
        deadline: hearth_pool::clock::Millis,
        now: hearth_pool::clock::Millis,
        released: impl std::future::Future<Output = ()>,
    ) -> Result<(), LambdaError> {
        let wait = Duration::from_millis(deadline.0.saturating_sub(now.0));
        let started = Instant::now();
        let timed_out = tokio::time::timeout(wait, released).await.is_err();
        if let Some(n) = self.0.pools.lock().queued.get_mut(account) {
            *n = n.saturating_sub(1);
        }
        let outcome = if timed_out { "timeout" } else { "woken" };
        self.0
            .metrics
            .queue_wait_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        if timed_out {
            return Err(self.rejected());
        }
        Ok(())
    }

    /// Counts a placement refused for want of capacity, and gives its 429.
    pub(crate) fn rejected(&self) -> LambdaError {
        self.0
            .metrics
            .placements
            .with_label_values(&["rejected"])
            .inc();
        throttle()
    }

    /// The general runtime-warm pool whose interpreter runs `runtime`.
    fn runtime_pool_for(
        &self,
        runtime: &hearth_types::runtime::Runtime,
        class: u32,
    ) -> Option<PoolKey> {
        let family = family_of(runtime);
        if family == "provided" {
            return None;
        }
        let want = self.0.runtimes.interpreter(runtime).ok()??;
        let rep = representative_runtime(family)?;
        let have = self.0.runtimes.interpreter(&rep).ok()??;
        (want == have).then(|| PoolKey {
            family: family.to_owned(),
            memory_class_mb: class,
        })
    }

    /// Starts a sandbox (off the async threads) and attaches its log pump
    /// and Runtime API server; on failure nothing is left running.
    async fn launch(
        &self,
        spec: SandboxSpec,
    ) -> Result<(Arc<dyn hearth_sandbox::SandboxControl>, LogPump, RuntimeApi), String> {
        let backend = self.0.backend.clone();
        let sandbox = tokio::task::spawn_blocking(move || backend.start(&spec))
            .await
            .map_err(|e| format!("sandbox start failed: {e}"))?
            .map_err(|e| e.to_string())?;
        for (stage, took) in &sandbox.start_stages {
            self.0
                .metrics
                .sandbox_start_stage_seconds
                .with_label_values(&[stage.as_str()])
                .observe(took.as_secs_f64());
        }
        let control: Arc<dyn hearth_sandbox::SandboxControl> = Arc::from(sandbox.control);
        let attached = LogPump::start(sandbox.stdout, sandbox.stderr)
            .map_err(|e| format!("cannot read the sandbox's output: {e}"))
            .and_then(|logs| {
                let api = RuntimeApi::serve(sandbox.runtime_api).and_then(|api| {
                    match sandbox.runtime_channel {
                        Some(channel) => api.serve_channel(channel).map(|()| api),
                        None => Ok(api),
                    }
                });
                api.map(|api| (logs, api))
                    .map_err(|e| format!("cannot serve the Runtime API: {e}"))
            });
        match attached {
            Ok((logs, api)) => Ok((control, logs, api)),
            Err(e) => {
                let c = control.clone();
                tokio::task::spawn_blocking(move || c.destroy());
                Err(e)
            }
        }
    }

    /// Builds an unassigned sandbox for a general sub-pool (or for
    /// provisioned concurrency): shell-warm, or runtime-warm with Hearth's
    /// bootstrap parked on its assignment.
    pub(crate) async fn build_unspecialised(
        &self,
        key: PoolKey,
        charge: MemoryCharge,
    ) -> Result<Unspecialised, String> {
        let started = Instant::now();
        let seq = self.0.sandbox_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "sb{seq}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let spec = SandboxSpec {
            id: id.clone(),
            account_id: String::new(),
            memory_mb: key.memory_class_mb,
            pids_max: self.0.config.pids_max,
            task_root: None,
            opt_root: None,
            runtime_dir: Some(self.0.config.runtime_dir.clone()),
            tmp_mb: self.0.config.tmp_mb,
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/var/task".to_owned(),
            runtime_channel: key.warmth() == Warmth::Runtime
                && representative_runtime(&key.family)
                    .is_some_and(|r| hearth_runtime::bootstrap::takes_channel(&r)),
        };
        let (control, logs, api) = self.launch(spec).await?;
        let fail = |c: &Arc<dyn hearth_sandbox::SandboxControl>, e: String| {
            let c = c.clone();
            tokio::task::spawn_blocking(move || c.destroy());
            e
        };
        if key.warmth() == Warmth::Runtime {
            let rep = representative_runtime(&key.family)
                .ok_or_else(|| fail(&control, format!("no runtime family {}", key.family)))?;
            let interpreter = self
                .0
                .runtimes
                .interpreter(&rep)
                .map_err(|e| fail(&control, e.message))?;
            let (argv, env) = hearth_runtime::bootstrap::warm_command(&rep, interpreter.as_deref())
                .ok_or_else(|| fail(&control, format!("{rep} has no runtime-warm state")))?;
            let c = control.clone();
            tokio::task::spawn_blocking(move || c.exec(&argv, &env, "/"))
                .await
                .map_err(|e| fail(&control, e.to_string()))?
                .map_err(|e| fail(&control, e.to_string()))?;
            let ready = tokio::time::timeout(self.0.config.init_timeout, api.runtime_ready()).await;
            if !matches!(ready, Ok(RuntimeReady::Ready)) {
                api.shutdown();
                return Err(fail(
                    &control,
                    format!("the {} runtime did not park for its assignment", key.family),
                ));
            }
        }
        Ok(Unspecialised {
            id,
            key,
            control,
            api,
            logs,
            created: Instant::now(),
            build: started.elapsed(),
            charge,
        })
    }

    /// Turns a pooled sandbox into a function-warm one: the function's exact
    /// memory limit, its code bind-mounted at `/var/task` (no copy), then the
    /// assignment to the parked runtime (runtime-warm) or the exec of the
    /// runtime (shell-warm), and the wait for its init.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn specialise(
        &self,
        mut u: Unspecialised,
        version: &VersionRecord,
        key: WarmKey,
        init_type: InitializationType,
        origin: Origin,
        request_id: &str,
    ) -> Result<Instance, FailedStart> {
        let started = Instant::now();
        let c = &version.config;
        let warmth = u.key.warmth();
        let opt = self.opt_dir(version).await;
        let setup = (|| -> Result<(), String> {
            u.control
                .set_memory_limit(c.memory_size)
                .map_err(|e| e.to_string())?;
            u.control
                .mount_task(&self.0.code.unpacked_dir(&version.code.sha256_hex))
                .map_err(|e| e.to_string())?;
            // The version's layers at /opt, set here (not only at a cold
            // start): a pooled sandbox serves whichever function it is given.
            if let Some(opt) = opt.map_err(|e| e.message)? {
                u.control.mount_opt(&opt).map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        u.charge.set(u64::from(c.memory_size));
        let env_input = self.env_input(version, init_type);
        let stream = hearth_runtime::api::log_stream_name(&version.version, SystemTime::now());
        let env = RuntimeEnv {
            log_stream_name: &stream,
            ..env_input.as_env()
        };
        let setup = setup.and_then(|()| match warmth {
            Warmth::Runtime => u
                .api
                .assign(Assignment::for_function(&env))
                .map_err(|e| format!("{e:?}")),
            _ => {
                let interpreter = self
                    .0
                    .runtimes
                    .interpreter(&c.runtime)
                    .map_err(|e| e.message)?;
                let argv = hearth_runtime::bootstrap::command(&c.runtime, interpreter.as_deref());
                let vars = hearth_runtime::api::runtime_environment(&env);
                u.control
                    .exec(&argv, &vars, "/var/task")
                    .map_err(|e| e.to_string())
            }
        });
        if let Err(e) = setup {
            u.destroy();
            return Err(FailedStart::Error(LambdaError::service(format!(
                "cannot specialise a pooled sandbox: {e}"
            ))));
        }
        let Unspecialised {
            id,
            control,
            api,
            logs,
            charge,
            ..
        } = u;
        let init = self.await_init(&api, &logs).await;
        let init_duration = started.elapsed();
        self.0
            .metrics
            .init_seconds
            .with_label_values(&[warmth.label()])
            .observe(init_duration.as_secs_f64());
        self.finish_init(
            init,
            InitParts {
                id,
                key,
                control,
                api,
                logs,
                charge,
                origin,
                version,
                init_duration,
                request_id,
            },
        )
        .await
    }

    /// Waits for the runtime's first `next` (or its init error, death or the
    /// init deadline).
    async fn await_init(&self, api: &RuntimeApi, logs: &LogPump) -> Option<Option<InitOutcome>> {
        tokio::select! {
            o = api.init() => Some(Some(o)),
            () = logs.closed() => Some(None),
            () = tokio::time::sleep(self.0.config.init_timeout) => None,
        }
    }

    fn env_input(&self, v: &VersionRecord, init_type: InitializationType) -> EnvInput {
        EnvInput {
            function_name: v.function_name.clone(),
            version: v.version.clone(),
            memory_mb: v.config.memory_size,
            runtime: v.config.runtime.clone(),
            handler: v.config.handler.clone(),
            region: self.0.node.region.clone(),
            init_type,
            user_env: v.config.environment.clone().unwrap_or_default(),
        }
    }

    /// Starts a sandbox for `version` and waits for its runtime to initialise.
    async fn cold_start(
        &self,
        version: &VersionRecord,
        key: WarmKey,
        request_id: &str,
        charge: MemoryCharge,
    ) -> Result<Instance, FailedStart> {
        let started = Instant::now();
        let seq = self.0.sandbox_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "sb{seq}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let opt = self.opt_dir(version).await.map_err(FailedStart::Error)?;
        let spec = self.spec(version, &id, opt).map_err(FailedStart::Error)?;
        let (control, logs, api) = self
            .launch(spec)
            .await
            .map_err(|e| FailedStart::Error(LambdaError::service(e)))?;
        let init = self.await_init(&api, &logs).await;
        let init_duration = started.elapsed();
        self.0
            .metrics
            .init_seconds
            .with_label_values(&["cold"])
            .observe(init_duration.as_secs_f64());
        self.finish_init(
            init,
            InitParts {
                id,
                key,
                control,
                api,
                logs,
                charge,
                origin: Origin::Active,
                version,
                init_duration,
                request_id,
            },
        )
        .await
    }

    /// Turns the outcome of an init into a ready instance, or cleans up.
    async fn finish_init(
        &self,
        init: Option<Option<InitOutcome>>,
        p: InitParts<'_>,
    ) -> Result<Instance, FailedStart> {
        let InitParts {
            id,
            key,
            control,
            api,
            logs,
            charge,
            origin,
            version,
            init_duration,
            request_id,
        } = p;
        let destroy = |c: &Arc<dyn hearth_sandbox::SandboxControl>| {
            let c = c.clone();
            tokio::task::spawn_blocking(move || c.destroy());
        };
        match init {
            Some(Some(InitOutcome::Ready)) => Ok(Instance {
                sid: hearth_pool::ids::SandboxId(
                    self.0.sandbox_seq.fetch_add(1, Ordering::Relaxed),
                ),
                init_cost_ms: init_duration.as_millis() as u64,
                id,
                key,
                generation: self.generation(&version.account_id, &version.function_name),
                control,
                api,
                init_output: logs.take().await,
                log_stream: crate::logs::new_stream_name(&version.version),
                logs,
                memory_mb: version.config.memory_size,
                last_used: Instant::now(),
                init_duration: Some(init_duration),
                origin,
                charge,
            }),
            Some(Some(InitOutcome::Failed { body, .. })) => {
                let output = logs.take().await;
                api.shutdown();
                destroy(&control);
                Err(FailedStart::InitError {
                    body,
                    output,
                    init_duration,
                })
            }
            Some(None | Some(InitOutcome::Closed)) => {
                let output = logs.take().await;
                api.shutdown();
                let c = control.clone();
                let status = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::task::spawn_blocking(move || c.wait()),
                )
                .await
                .ok()
                .and_then(Result::ok);
                let oom = control.oom_killed();
                destroy(&control);
                Err(FailedStart::Exited {
                    status,
                    oom,
                    output,
                    init_duration,
                    request_id: request_id.to_owned(),
                })
            }
            None => {
                let output = logs.take().await;
                api.shutdown();
                destroy(&control);
                Err(FailedStart::Timeout {
                    output,
                    limit: self.0.config.init_timeout,
                    request_id: request_id.to_owned(),
                })
            }
        }
    }

    /// The directory to show at `/opt` for `v`: its layers merged in order
    /// (made once per list of layers, then shared), `None` without layers.
    /// Merges on a miss (unpacking and hard-linking whole trees), off the
    /// async threads.
    pub(crate) async fn opt_dir(
        &self,
        v: &VersionRecord,
    ) -> Result<Option<std::path::PathBuf>, LambdaError> {
        if v.config.layers.is_empty() {
            return Ok(None);
        }
        let digests: Vec<String> = v
            .config
            .layers
            .iter()
            .map(|l| l.code.sha256_hex.clone())
            .collect();
        let code = self.0.code.clone();
        tokio::task::spawn_blocking(move || {
            let digests: Vec<&str> = digests.iter().map(String::as_str).collect();
            code.opt_dir(&digests)
        })
        .await
        .map_err(|e| LambdaError::service(format!("the layers' worker failed: {e}")))?
        .map_err(|e| LambdaError::service(format!("cannot prepare the function's layers: {e}")))
    }

    fn spec(
        &self,
        v: &VersionRecord,
        id: &str,
        opt_root: Option<std::path::PathBuf>,
    ) -> Result<SandboxSpec, LambdaError> {
        let c = &v.config;
        let interpreter = self.0.runtimes.interpreter(&c.runtime)?;
        let argv = hearth_runtime::bootstrap::command(&c.runtime, interpreter.as_deref());
        let input = self.env_input(v, InitializationType::OnDemand);
        let stream = hearth_runtime::api::log_stream_name(&v.version, SystemTime::now());
        let env = hearth_runtime::api::runtime_environment(&RuntimeEnv {
            log_stream_name: &stream,
            ..input.as_env()
        });
        Ok(SandboxSpec {
            id: id.to_owned(),
            account_id: v.account_id.clone(),
            memory_mb: c.memory_size,
            pids_max: self.0.config.pids_max,
            task_root: Some(self.0.code.unpacked_dir(&v.code.sha256_hex)),
            opt_root,
            runtime_dir: Some(self.0.config.runtime_dir.clone()),
            tmp_mb: self.0.config.tmp_mb,
            argv,
            env,
            cwd: "/var/task".to_owned(),
            runtime_channel: hearth_runtime::bootstrap::takes_channel(&c.runtime),
        })
    }

    /// Delivers the event and waits for the answer, the deadline or the
    /// sandbox's death.
    async fn run(
        &self,
        instance: &mut Instance,
        version: &VersionRecord,
        input: &InvokeInput,
        request_id: String,
    ) -> Finished {
        let timeout = Duration::from_secs(u64::from(version.config.timeout));
        let start = Instant::now();
        let deadline_ms = u64::try_from(now_ms()).unwrap_or(0) + timeout.as_millis() as u64;
        let inv = Invocation {
            request_id: request_id.clone(),
            payload: input.payload.clone(),
            deadline_ms,
            invoked_function_arn: self.0.node.arn(
                &version.account_id,
                &version.function_name,
                input.qualifier.as_deref(),
            ),
            trace_id: format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                now_ms() / 1000,
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            client_context: input.client_context.clone(),
            cognito_identity: None,
        };
        let ending = tokio::select! {
            o = instance.api.invoke(inv) => match o {
                // The endpoint closed under us: the sandbox is going away.
                InvokeOutcome::Closed => Ending::Exited(None),
                o => Ending::Answered(o),
            },
            () = tokio::time::sleep(timeout) => Ending::TimedOut,
            () = instance.logs.closed() => Ending::Exited(None),
        };
        let ending = match ending {
            // The pipes close a moment before the launcher is reaped: wait
            // (bounded) for the status the error message reports.
            Ending::Exited(_) => {
                let c = instance.control.clone();
                let wait = tokio::task::spawn_blocking(move || c.wait());
                Ending::Exited(
                    tokio::time::timeout(Duration::from_secs(5), wait)
                        .await
                        .ok()
                        .and_then(Result::ok),
                )
            }
            other => other,
        };
        let duration = start.elapsed();
        let output = instance.logs.take().await;
        Finished {
            request_id,
            ending,
            duration,
            output,
            timeout,
            executed_version: version.version.clone(),
        }
    }
}

/// An invocation that ran (or tried to) on a sandbox.
struct Finished {
    request_id: String,
    ending: Ending,
    duration: Duration,
    output: Vec<u8>,
    timeout: Duration,
    executed_version: String,
}

impl Finished {
    /// Builds Lambda's answer and decides the sandbox's fate.
    fn finish(self, exec: &Executor, mut instance: Instance) -> InvokeOutput {
        let id = &self.request_id;
        let mut extra = Vec::new();
        let mut keep = true;
        let (function_error, body) = match self.ending {
            Ending::Answered(InvokeOutcome::Response(b)) => (false, b),
            Ending::Answered(InvokeOutcome::FunctionError { body, .. }) => (true, body),
            Ending::Answered(InvokeOutcome::Closed) => (
                true,
                error_body(
                    "Runtime.ExitError",
                    "Runtime exited without providing a reason",
                ),
            ),
            Ending::Answered(InvokeOutcome::ResponseTooLarge { size }) => {
                let msg = format!(
                    "Response payload size ({size} bytes) exceeded maximum allowed payload size ({} bytes).",
                    hearth_types::limits::SYNC_PAYLOAD_MAX_BYTES
                );
                (true, error_body("Function.ResponseSizeTooLarge", &msg))
            }
            Ending::TimedOut => {
                keep = false;
                let secs = self.timeout.as_secs_f64();
                extra.push(format!(
                    "{} {id} Task timed out after {secs:.2} seconds",
                    iso_now()
                ));
                (
                    true,
                    error_body(
                        "Sandbox.Timedout",
                        &format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds"),
                    ),
                )
            }
            Ending::Exited(status) => {
                keep = false;
                let (etype, why) = exit_reason(status, instance.control.oom_killed());
                let msg = format!("RequestId: {id} Error: {why}");
                extra.push(msg.clone());
                extra.push(etype.to_owned());
                (true, error_body(etype, &msg))
            }
        };
        let report = Report {
            duration: self.duration,
            memory_mb: instance.memory_mb,
            max_memory_used_mb: instance
                .control
                .peak_memory_bytes()
                .map_or(0, |b| b.div_ceil(1024 * 1024)),
            init_duration: instance.init_duration.take(),
        };
        let init_output = std::mem::take(&mut instance.init_output);
        let log = frame(
            id,
            &self.executed_version,
            &init_output,
            &self.output,
            &extra,
            &report,
        );
        exec.0.logs.write(
            &instance.key.account_id,
            &instance.key.function_name,
            &self.executed_version,
            &instance.log_stream,
            now_ms(),
            &log,
        );
        if keep {
            exec.release(instance);
        } else {
            instance.destroy();
        }
        InvokeOutput {
            request_id: self.request_id.clone(),
            executed_version: self.executed_version,
            function_error,
            body,
            log: None,
            placement: "",
            usage: None,
        }
        .with_log(log)
    }
}

impl InvokeOutput {
    pub(crate) fn with_log(mut self, log: String) -> Self {
        self.log = Some(log);
        self
    }

    /// `X-Amz-Log-Result`: base64 of the last 4 KB of the log.
    pub fn log_result(&self) -> Option<String> {
        self.log
            .as_deref()
            .map(|log| base64::engine::general_purpose::STANDARD.encode(tail(log)))
    }
}

/// A cold start that did not produce a ready sandbox.
pub(crate) enum FailedStart {
    Error(LambdaError),
    InitError {
        body: Bytes,
        output: Vec<u8>,
        init_duration: Duration,
    },
    Exited {
        status: Option<ExitStatus>,
        oom: bool,
        output: Vec<u8>,
        init_duration: Duration,
        request_id: String,
    },
    Timeout {
        output: Vec<u8>,
        limit: Duration,
        request_id: String,
    },
}

impl FailedStart {
    fn into_output(self, exec: &Executor, input: &InvokeInput, v: &VersionRecord) -> InvokeOutput {
        let request_id = match &self {
            Self::Exited { request_id, .. } | Self::Timeout { request_id, .. } => {
                request_id.clone()
            }
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let (body, output, extra, init) = match self {
            Self::Error(e) => {
                // Not the function's fault: surface as a service error body.
                tracing::error!(error = %e, "cold start failed");
                (
                    error_body(e.kind.code(), &e.message),
                    Vec::new(),
                    vec![e.message],
                    None,
                )
            }
            Self::InitError {
                body,
                output,
                init_duration,
            } => (body, output, Vec::new(), Some(init_duration)),
            Self::Exited {
                status,
                oom,
                output,
                init_duration,
                request_id,
            } => {
                let (etype, why) = exit_reason(status, oom);
                let msg = format!("RequestId: {request_id} Error: {why}");
                (
                    error_body(etype, &msg),
                    output,
                    vec![msg, etype.to_owned()],
                    Some(init_duration),
                )
            }
            Self::Timeout {
                output,
                limit,
                request_id,
            } => {
                let secs = limit.as_secs_f64();
                let msg = format!(
                    "RequestId: {request_id} Error: Task timed out after {secs:.2} seconds"
                );
                (
                    error_body("Sandbox.Timedout", &msg),
                    output,
                    vec![msg],
                    Some(limit),
                )
            }
        };
        let report = Report {
            duration: Duration::ZERO,
            memory_mb: v.config.memory_size,
            max_memory_used_mb: 0,
            init_duration: init,
        };
        let log = frame(&request_id, &v.version, &output, b"", &extra, &report);
        // The sandbox that failed its init is gone: its lines get a
        // stream of their own, as on Lambda.
        exec.0.logs.write(
            &v.account_id,
            &v.function_name,
            &v.version,
            &crate::logs::new_stream_name(&v.version),
            now_ms(),
            &log,
        );
        let _ = input;
        InvokeOutput {
            request_id,
            executed_version: v.version.clone(),
            function_error: true,
            body,
            log: None,
            placement: "",
            usage: None,
        }
        .with_log(log)
    }
}

/// How long after a draw from a pool the pool manager refills it. A refill
/// (a launcher, a runtime starting) started at once would compete for the
/// CPU with the drawn sandbox's init and first invocation (about 2 ms), and
/// a pooled build takes 10 ms or more, so starting it a few ms later costs
/// the pool little. The manager's tick (250 ms) is the backstop.
const REFILL_DEFER: Duration = Duration::from_millis(5);

/// Where an invocation's sandbox came from, as the header and the metric say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    pub(crate) source: &'static str,
    pub(crate) metric: &'static str,
}

/// What placement drew under the lock.
enum Drawn {
    Ready(Box<Instance>),
    Pooled(Box<Unspecialised>),
    /// Idle sandboxes being destroyed to make room, and the charge (theirs,
    /// handed over) of the sandbox that replaces them.
    Evicted(Vec<tokio::task::JoinHandle<()>>, MemoryCharge),
}

/// Why no sandbox was acquired.
enum Acquire {
    /// A sandbox was tried and failed (its error becomes the answer).
    Failed(FailedStart, &'static str),
    /// Refused before any sandbox (429).
    Refused(LambdaError),
}

/// An asynchronous event that may not take the capacity on offer now: it
/// waits in its queue (not an attempt).
pub(crate) fn not_now() -> LambdaError {
    LambdaError::new(hearth_types::ErrorKind::TooManyRequests, "Rate Exceeded.")
        .with_reason("HearthAsyncCapacityHeldBack")
}

/// The 429 a node without capacity for the account answers.
pub(crate) fn throttle() -> LambdaError {
    LambdaError::new(hearth_types::ErrorKind::TooManyRequests, "Rate Exceeded.")
        .with_reason("ConcurrentInvocationLimitExceeded")
}

/// The capacity crate's name for what a sandbox is warm for.
pub(crate) fn function_version(key: &WarmKey) -> hearth_pool::ids::FunctionVersion {
    hearth_pool::ids::FunctionVersion::new(
        hearth_pool::ids::AccountId::new(&key.account_id),
        &key.function_name,
        &key.version,
    )
}

/// The runtime whose interpreter a family's runtime-warm pool boots.
pub(crate) fn representative_runtime(family: &str) -> Option<hearth_types::runtime::Runtime> {
    hearth_types::runtime::Runtime::parse(match family {
        "python" => "python3.11",
        "nodejs" => "nodejs20.x",
        _ => return None,
    })
}

/// Everything a finished init needs to become an instance.
pub(crate) struct InitParts<'a> {
    id: String,
    key: WarmKey,
    control: Arc<dyn hearth_sandbox::SandboxControl>,
    api: RuntimeApi,
    logs: LogPump,
    charge: MemoryCharge,
    origin: Origin,
    version: &'a VersionRecord,
    init_duration: Duration,
    request_id: &'a str,
}

/// Owned inputs of a runtime environment.
pub(crate) struct EnvInput {
    function_name: String,
    version: String,
    memory_mb: u32,
    runtime: hearth_types::runtime::Runtime,
    handler: String,
    region: String,
    init_type: InitializationType,
    user_env: std::collections::BTreeMap<String, String>,
}

impl EnvInput {
    fn as_env(&self) -> RuntimeEnv<'_> {
        RuntimeEnv {
            function_name: &self.function_name,
            function_version: &self.version,
            memory_mb: self.memory_mb,
            runtime: &self.runtime,
            handler: &self.handler,
            region: &self.region,
            initialization_type: self.init_type,
            runtime_api: hearth_runtime::api::SANDBOX_RUNTIME_API,
            log_stream_name: "",
            user_env: &self.user_env,
        }
    }
}

/// Lambda's error type and words for a runtime that died.
fn exit_reason(status: Option<ExitStatus>, oom: bool) -> (&'static str, String) {
    if oom {
        return (
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed".to_owned(),
        );
    }
    match status {
        Some(ExitStatus::Code(0)) | None => (
            "Runtime.ExitError",
            "Runtime exited without providing a reason".to_owned(),
        ),
        Some(ExitStatus::Code(n)) => (
            "Runtime.ExitError",
            format!("Runtime exited with error: exit status {n}"),
        ),
        Some(ExitStatus::Signal(s)) => (
            "Runtime.ExitError",
            format!("Runtime exited with error: signal: {}", signal_name(s)),
        ),
    }
}

fn signal_name(s: i32) -> String {
    match s {
        9 => "killed".to_owned(),
        6 => "aborted".to_owned(),
        11 => "segmentation fault".to_owned(),
        15 => "terminated".to_owned(),
        n => format!("signal {n}"),
    }
}

fn store_err(e: hearth_store::StoreError) -> LambdaError {
    match e {
        hearth_store::StoreError::Lambda(l) => l,
        other => LambdaError::service(other.to_string()),
    }
}

/// A uniform number in [0, 1) from a fresh UUID's randomness.
fn rand_unit() -> f64 {
    let n = uuid::Uuid::new_v4().as_u128() >> 75;
    n as f64 / (1u64 << 53) as f64
}

pub(crate) fn iso_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_work_leaves_the_reserve_and_the_queue_to_synchronous_requests() {
        use hearth_pool::clock::Millis;
        let budget = |used_mb| BudgetView {
            limit_mb: 2048,
            used_mb,
            evictable_mb: 0,
        };
        let asynchronous = InvokeMode::Async { reserve_mb: 512 };
        let cold = PlacementDecision::Cold { evict_mb: 0 };
        // Room for 128 MB more and the reserve: async may start one cold.
        assert!(asynchronous.allows(cold, &budget(1408), 128));
        assert!(asynchronous.allows(PlacementDecision::GeneralRuntime, &budget(1408), 128));
        // It would eat into the reserve: only what is already warm or the
        // account's own.
        assert!(!asynchronous.allows(cold, &budget(1409), 128));
        assert!(!asynchronous.allows(PlacementDecision::GeneralShell, &budget(1409), 128));
        assert!(asynchronous.allows(PlacementDecision::Warm, &budget(2048), 128));
        assert!(asynchronous.allows(
            PlacementDecision::Dedicated {
                function_warm: false
            },
            &budget(2048),
            128
        ));
        // Never a wait-queue slot.
        assert!(!asynchronous.allows(
            PlacementDecision::Queue {
                deadline: Millis(10)
            },
            &budget(0),
            128
        ));
        // Synchronous requests take anything; deferred events only what is
        // function-warm.
        assert!(InvokeMode::Sync.allows(cold, &budget(2048), 128));
        assert!(InvokeMode::WarmOnly.allows(PlacementDecision::Warm, &budget(0), 128));
        assert!(InvokeMode::WarmOnly.allows(
            PlacementDecision::Dedicated {
                function_warm: true
            },
            &budget(0),
            128
        ));
        assert!(!InvokeMode::WarmOnly.allows(PlacementDecision::GeneralRuntime, &budget(0), 128));
        assert!(!InvokeMode::WarmOnly.allows(cold, &budget(0), 128));
    }

    #[test]
    fn exit_reasons_read_like_lambda() {
        assert_eq!(
            exit_reason(Some(ExitStatus::Code(1)), false).1,
            "Runtime exited with error: exit status 1"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Code(0)), false).1,
            "Runtime exited without providing a reason"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Signal(9)), true).0,
            "Runtime.OutOfMemory"
        );
        assert_eq!(
            exit_reason(Some(ExitStatus::Signal(9)), false).1,
            "Runtime exited with error: signal: killed"
        );
        let u = rand_unit();
        assert!((0.0..1.0).contains(&u));
    }
}
