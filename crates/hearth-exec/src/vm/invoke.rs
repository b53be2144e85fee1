//! One invocation of a WebAssembly function on a microVM: placement (the
//! same decision as for sandboxes, over the VM sub-pools), specialisation
//! or a cold start, the run, Lambda's answer, and the reset that returns the
//! VM to the function's idle list off the response path.

use super::{measured_mb, running_mb, VmCode, VmInstance, VmSide};
use crate::instance::Origin;
use crate::invoke::{
    error_body, function_version, iso_now, not_now, now_ms, throttle, InvokeInput, InvokeMode,
    InvokeOutput, Placed,
};
use crate::logs::{frame, Report};
use crate::placement::WarmKey;
use crate::pools::{MemoryCharge, Pools};
use crate::Executor;
use crate::Isolation;
use bytes::Bytes;
use hearth_pool::keepalive::{IdleSandbox, RemovalCause};
use hearth_pool::placement::{
    asks_general, place, BudgetView, PlacementDecision, PlacementRequest, PoolView,
};
use hearth_pool::profile::{memory_class_for, RuntimeProfile};
use hearth_pool::vm::lifecycle::describe;
use hearth_pool::vm::{FunctionSpec, Prepared, Specialised, Usage, VmHost};
use hearth_types::function::VersionRecord;
use hearth_types::LambdaError;
use hearth_vmm::guest::{Ended, Finished, GuestError, Invocation, Runner};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What placement drew for a VM invocation under the lock.
enum Drawn {
    /// A VM at this version's stdin read (idle or provisioned).
    Ready(Box<VmInstance>),
    /// A general or dedicated VM to specialise.
    Pooled(Box<VmInstance>, bool),
    /// Room for a new VM: the idle capacity evicted for it, and its charge.
    Cold(Vec<tokio::task::JoinHandle<()>>, MemoryCharge),
}

/// Why a VM could not be made ready for the function.
pub(crate) enum VmStartFailed {
    /// The module's initialisation failed: Lambda's `errorType`, why, and
    /// how long it ran.
    Init {
        error_type: &'static str,
        message: String,
        init: Duration,
    },
    /// The module ended before it read stdin: that run is its answer.
    EndedEarly { finished: Finished, init: Duration },
    /// The runtime reported its init's failure: Lambda's error object is
    /// the run's stdout.
    Reported { finished: Finished, init: Duration },
    /// Hearth could not (not the function's fault).
    Error(LambdaError),
}

enum VmAcquire {
    Failed(VmStartFailed, &'static str),
    Refused(LambdaError),
}

/// Runs `f` on one of the host's VM threads and waits for it.
pub(crate) async fn on_vm<R: Send + 'static>(
    host: &Arc<VmHost>,
    f: impl FnOnce(&VmHost, &Runner) -> R + Send + 'static,
) -> Result<R, LambdaError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = host.clone();
    host.workers
        .submit(move |r| {
            let _ = tx.send(f(&h, r));
        })
        .map_err(|e| LambdaError::service(format!("cannot reach a VM thread: {e}")))?;
    rx.await
        .map_err(|_| LambdaError::service("a VM thread failed"))
}

/// Lambda's environment of a function version in a VM, user variables
/// first (no per-VM values: the function snapshot is keyed on it).
fn vm_environment(
    v: &VersionRecord,
    node: &hearth_types::arn::NodeIdentity,
) -> Vec<(String, String)> {
    let c = &v.config;
    let region = node.region.as_str();
    let mut env: Vec<(String, String)> = c
        .environment
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let arn = node.arn(&v.account_id, &v.function_name, Some(v.version.as_str()));
    env.extend(
        [
            ("AWS_LAMBDA_FUNCTION_NAME", v.function_name.as_str()),
            ("AWS_LAMBDA_FUNCTION_VERSION", v.version.as_str()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                &c.memory_size.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                &format!("/aws/lambda/{}", v.function_name),
            ),
            ("AWS_REGION", region),
            ("AWS_DEFAULT_REGION", region),
            ("HEARTH_FUNCTION_ARN", arn.as_str()),
            ("_HANDLER", c.handler.as_str()),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("TZ", ":UTC"),
            ("LANG", "en_US.UTF-8"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

/// The config blob of a function version: for a module, its name as
/// `argv[0]`; for Python, `python3 -c <Hearth's bootstrap>` and the mount
/// table of `files` (guest path, image length); Lambda's environment.
pub(crate) fn config_blob(
    v: &VersionRecord,
    code: &VmCode,
    node: &hearth_types::arn::NodeIdentity,
    files: &[(&str, u64)],
) -> Result<Vec<u8>, LambdaError> {
    let env = vm_environment(v, node);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let blob = match code {
        VmCode::Wasm(module) => {
            let name = module
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("function.wasm");
            hearth_pool::vm::config_blob_with_mounts(&[name], &env, files)
        }
        VmCode::Python => hearth_pool::vm::config_blob_with_mounts(
            &["python3", "-c", hearth_pool::vm::python::BOOTSTRAP],
            &env,
            files,
        ),
    };
    blob.map_err(|e| {
        LambdaError::invalid(format!(
            "The function's environment does not fit in a microVM: {e}"
        ))
    })
}

impl Executor {
    /// The function's WebAssembly module, if its code is one (then it runs
    /// in a microVM). Code is immutable per digest, so the answer is kept.
    /// [files] Reads the code store on a miss.
    fn wasm_module_blocking(&self, v: &VersionRecord) -> Result<Option<PathBuf>, LambdaError> {
        if !matches!(
            v.config.runtime,
            hearth_types::runtime::Runtime::Provided(_)
        ) {
            return Ok(None);
        }
        let key = (v.code.sha256_hex.clone(), v.config.handler.clone());
        if let Some(m) = self.0.modules.lock().get(&key) {
            return Ok(m.clone());
        }
        let m = self
            .0
            .code
            .wasm_module(&v.code.sha256_hex, &v.config.runtime, &v.config.handler)
            .map_err(|e| LambdaError::service(e.to_string()))?;
        let mut cache = self.0.modules.lock();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }

    /// Where a `python3.x` function runs: its tag `hearth:isolation`, or
    /// the node's `[microvm] python`.
    fn python_isolation(&self, account_id: &str, function_name: &str) -> Isolation {
        self.0
            .isolation_tags
            .lock()
            .get(&(account_id.to_owned(), function_name.to_owned()))
            .copied()
            .unwrap_or(self.0.config.python_isolation)
    }

    /// Records a function's tag `hearth:isolation` (`None`: untagged or
    /// deleted). When that moves the function, its warm capacity is retired,
    /// so that its next sandbox or VM is of the new kind.
    pub fn set_isolation_tag(&self, account_id: &str, function_name: &str, tag: Option<Isolation>) {
        let before = self.python_isolation(account_id, function_name);
        {
            let mut tags = self.0.isolation_tags.lock();
            let key = (account_id.to_owned(), function_name.to_owned());
            match tag {
                Some(i) => tags.insert(key, i),
                None => tags.remove(&key),
            };
        }
        if self.python_isolation(account_id, function_name) != before {
            self.retire_function(account_id, function_name);
        }
    }

    /// What a version's VMs run, or `None` where it runs in process
    /// sandboxes: a WebAssembly module always runs in a microVM, a
    /// `python3.x` function where its tag or the node says, anything else
    /// (Node.js, a Linux `bootstrap`) in a process sandbox.
    /// [files] Reads the code store on a miss.
    pub(crate) fn vm_code_blocking(
        &self,
        v: &VersionRecord,
    ) -> Result<Option<VmCode>, LambdaError> {
        use hearth_types::runtime::Runtime;
        match v.config.runtime {
            Runtime::Python { .. } => Ok((self.python_isolation(&v.account_id, &v.function_name)
                == Isolation::Microvm)
                .then_some(VmCode::Python)),
            Runtime::Provided(_) => Ok(self.wasm_module_blocking(v)?.map(VmCode::Wasm)),
            Runtime::Node { .. } => Ok(None),
        }
    }

    /// [`Self::vm_code_blocking`], reading the code store (on a cache miss
    /// of a `provided*` function) off the async threads. Every invocation
    /// asks: the answer is a map lookup on the hot path.
    pub(crate) async fn vm_code(&self, v: &VersionRecord) -> Result<Option<VmCode>, LambdaError> {
        let known = !matches!(
            v.config.runtime,
            hearth_types::runtime::Runtime::Provided(_)
        ) || self
            .0
            .modules
            .lock()
            .contains_key(&(v.code.sha256_hex.clone(), v.config.handler.clone()));
        if known {
            return self.vm_code_blocking(v);
        }
        let me = self.clone();
        let v = v.clone();
        tokio::task::spawn_blocking(move || me.vm_code_blocking(&v))
            .await
            .map_err(|e| LambdaError::service(format!("worker failed: {e}")))?
    }

    /// Where a version runs, and the runtime's name as
    /// `RuntimeVersionArn` shows it (`hearth-process`,
    /// `hearth-microvm-<engine>`, `hearth-microvm-cpython-<version>-<engine>`).
    /// [files] Reads the code store on a miss.
    pub fn placement_of(&self, v: &VersionRecord) -> (Isolation, String) {
        let engine = |e: &str| e.replace(' ', "-");
        match self.vm_code_blocking(v) {
            Ok(Some(VmCode::Wasm(_))) => (
                Isolation::Microvm,
                match self.vm_engine() {
                    Some(e) => format!("hearth-microvm-{}", engine(e)),
                    None => "hearth-microvm".to_owned(),
                },
            ),
            Ok(Some(VmCode::Python)) => (
                Isolation::Microvm,
                format!(
                    "hearth-microvm-cpython-{}-{}",
                    hearth_pool::vm::python::PYTHON_VERSION,
                    engine(hearth_pool::vm::python::ENGINE_ID)
                ),
            ),
            _ => (Isolation::Process, "hearth-process".to_owned()),
        }
    }

    /// The VM side, or the error an invocation of a function that runs in
    /// microVMs gets on a node without one.
    pub(crate) fn vm_side(&self, code: &VmCode) -> Result<Arc<VmSide>, LambdaError> {
        let side = self.0.vm.clone().map_err(|why| {
            LambdaError::service(match code {
                VmCode::Wasm(_) => format!(
                    "This function's code is a WebAssembly module, which runs in a microVM, and this node runs no microVMs: {why}"
                ),
                VmCode::Python => format!(
                    "This function is set to run in a microVM (tag hearth:isolation or the node's [microvm] python), and this node runs no microVMs: {why}"
                ),
            })
        })?;
        if *code == VmCode::Python && side.python.is_none() {
            return Err(LambdaError::service(
                "This function is set to run in a microVM (tag hearth:isolation or the node's [microvm] python), and this node has no CPython runtime for microVMs: run `hearth runtimes install python --from …`, or tag the function hearth:isolation=process.",
            ));
        }
        Ok(side)
    }

    /// The budget as placement sees it for a start that needs `need_mb`:
    /// every sandbox and VM charge, and what eviction could free. That last
    /// figure matters only when the free memory does not cover `need_mb`
    /// (`BudgetView::eviction_needed_for`); otherwise it is left at 0 and
    /// not summed, so the usual warm invocation does not walk every idle
    /// sandbox and VM under the pools' lock.
    pub(crate) fn budget_view(&self, pools: &Pools, need_mb: u64) -> BudgetView {
        let limit_mb = self.0.config.memory_budget_mb;
        let used_mb = self.0.memory_used.load(Ordering::Relaxed);
        let evictable_mb = if used_mb.saturating_add(need_mb) <= limit_mb {
            0
        } else {
            pools.idle.memory_mb()
                + pools.general_surplus_mb()
                + pools.vm.idle_mb()
                + pools.vm.general_surplus_mb()
        };
        BudgetView {
            limit_mb,
            used_mb,
            evictable_mb,
        }
    }

    /// Frees at least `need_mb` (if it can) in the defined order: general
    /// surplus first (sandboxes, then VMs), then idle function-warm
    /// sandboxes and VMs in the keep-alive policy's order, then the least
    /// recently used; dedicated and provisioned capacity never. The evicted
    /// charges are handed over to the returned one, so the budget counts
    /// them free only once the caller re-charges after they are gone.
    pub(crate) fn evict_for(
        &self,
        pools: &mut Pools,
        need_mb: u64,
        now: hearth_pool::clock::Millis,
    ) -> (Vec<tokio::task::JoinHandle<()>>, MemoryCharge) {
        let mut charge = MemoryCharge::new(&self.0.memory_used, 0);
        let mut gone = Vec::new();
        if need_mb == 0 {
            return (gone, charge);
        }
        let evicted = |cause: &str| {
            self.0.metrics.evictions.with_label_values(&[cause]).inc();
        };
        for u in pools.take_general_surplus(need_mb) {
            evicted("general-surplus");
            let (h, c) = u.destroy_handing_over_charge();
            charge.absorb(c);
            gone.push(h);
        }
        let classes: Vec<u32> = pools.vm.general_targets.keys().copied().collect();
        for class in classes {
            if charge.mb() >= need_mb {
                break;
            }
            let target = pools.vm.general_targets.get(&class).copied().unwrap_or(0);
            let extra = pools.vm.sub.general_idle(class).saturating_sub(target);
            for _ in 0..extra {
                if charge.mb() >= need_mb {
                    break;
                }
                let Some(v) = pools.vm.sub.take_general(class) else {
                    break;
                };
                evicted("general-surplus");
                let (h, c) = v.destroy_handing_over_charge();
                charge.absorb(c);
                gone.push(h);
            }
        }
        let order = self.0.keepalive.lock().eviction_order(now);
        for sid in order {
            if charge.mb() >= need_mb {
                break;
            }
            let found = pools
                .idle
                .take_sid(sid)
                .map(|i| i.destroy_handing_over_charge());
            let found = found.or_else(|| {
                pools
                    .vm
                    .sub
                    .take_idle_where(|_, v| v.sid == sid)
                    .pop()
                    .map(VmInstance::destroy_handing_over_charge)
            });
            if let Some((h, c)) = found {
                evicted("memory-budget");
                self.0
                    .keepalive
                    .lock()
                    .on_removed(sid, RemovalCause::Evicted, now);
                charge.absorb(c);
                gone.push(h);
            }
        }
        if charge.mb() < need_mb {
            for i in pools.idle.evict_lru(need_mb - charge.mb()) {
                evicted("memory-budget");
                self.0
                    .keepalive
                    .lock()
                    .on_removed(i.sid, RemovalCause::Evicted, now);
                let (h, c) = i.destroy_handing_over_charge();
                charge.absorb(c);
                gone.push(h);
            }
        }
        while charge.mb() < need_mb {
            let mut oldest: Option<(Instant, hearth_pool::ids::SandboxId)> = None;
            for v in pools.vm.sub.idle_iter() {
                if oldest.is_none_or(|(t, _)| v.last_used < t) {
                    oldest = Some((v.last_used, v.sid));
                }
            }
            let Some((_, sid)) = oldest else { break };
            for v in pools.vm.sub.take_idle_where(|_, v| v.sid == sid) {
                evicted("memory-budget");
                self.0
                    .keepalive
                    .lock()
                    .on_removed(sid, RemovalCause::Evicted, now);
                let (h, c) = v.destroy_handing_over_charge();
                charge.absorb(c);
                gone.push(h);
            }
        }
        (gone, charge)
    }

    /// Runs one invocation of a WebAssembly function.
    pub(crate) async fn invoke_vm(
        &self,
        input: &InvokeInput,
        version: &VersionRecord,
        code: VmCode,
        request_id: String,
    ) -> Result<InvokeOutput, LambdaError> {
        let side = self.vm_side(&code)?;
        let key = WarmKey {
            account_id: version.account_id.clone(),
            function_name: version.function_name.clone(),
            version: version.version.clone(),
            revision_id: version.revision_id.clone(),
        };
        let started = Instant::now();
        let fv_key = function_version(&key);
        if input.mode == InvokeMode::Sync {
            self.0.keepalive.lock().on_invocation(&fv_key, self.now());
        }
        let (placed, instance, usage) = match self
            .acquire_vm(&side, version, &key, &code, input.mode)
            .await
        {
            Ok(x) => x,
            Err(VmAcquire::Failed(f, label)) => {
                let mut out = self.vm_start_failed(f, version, &request_id);
                out.placement = label;
                return Ok(out);
            }
            Err(VmAcquire::Refused(e)) => return Err(e),
        };
        if input.mode != InvokeMode::Sync {
            self.0.keepalive.lock().on_invocation(&fv_key, self.now());
        }
        let m = &self.0.metrics;
        m.placements.with_label_values(&[placed.metric]).inc();
        m.placement_seconds
            .with_label_values(&[placed.metric])
            .observe(started.elapsed().as_secs_f64());
        let mut out = self
            .run_vm(&side, instance, version, &code, input, request_id, usage)
            .await;
        out.placement = placed.source;
        m.invocations
            .with_label_values(&[if out.function_error { "error" } else { "ok" }])
            .inc();
        Ok(out)
    }

    /// Finds a VM for one invocation, as [`Executor::invoke`]'s placement
    /// does for sandboxes, and makes it ready for the function.
    async fn acquire_vm(
        &self,
        side: &Arc<VmSide>,
        version: &VersionRecord,
        key: &WarmKey,
        code: &VmCode,
        mode: InvokeMode,
    ) -> Result<(Placed, VmInstance, Usage), VmAcquire> {
        let c = &version.config;
        let class = memory_class_for(c.memory_size).unwrap_or(c.memory_size);
        let profile = RuntimeProfile::new("microvm", class);
        let fv = function_version(key);
        let policy = self.policy_for(&version.account_id);
        let account = version.account_id.clone();
        let mut usage = Usage {
            memory_mb: c.memory_size,
            ..Usage::default()
        };
        let mut queued_since: Option<Instant> = None;
        let placed = |d: PlacementDecision, queued: bool| {
            if queued {
                Placed {
                    source: "queued",
                    metric: "queued",
                }
            } else {
                vm_placed(d)
            }
        };
        let mut reset_waits = 0;
        // Bounded: a queued invocation re-places at most this often before
        // its deadline turns the wait into a 429.
        for _ in 0..10_000 {
            // A VM of this version finishing its reset is as good as idle:
            // wait for it (briefly) rather than take another.
            let notified = self.0.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let resetting = {
                let pools = self.0.pools.lock();
                pools.vm.sub.idle(key) == 0 && pools.vm.resetting.get(key).copied().unwrap_or(0) > 0
            };
            if resetting && reset_waits < 5 {
                reset_waits += 1;
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                continue;
            }
            let now = self.now();
            let req = PlacementRequest {
                function: &fv,
                profile: &profile,
                // What a running VM of the class is charged.
                memory_mb: u32::try_from(running_mb(class)).unwrap_or(u32::MAX),
                now,
            };
            let (decision, drawn) = {
                let mut guard = self.0.pools.lock();
                let pools = &mut *guard;
                if pools.closing {
                    return Err(VmAcquire::Refused(LambdaError::service(
                        "This Hearth node is shutting down.",
                    )));
                }
                let budget = self.budget_view(pools, running_mb(class));
                // A pooled VM is charged what it holds, a running one its
                // whole class: a VM can be drawn only where the budget has
                // room for it to run. Where it has none, placement sees no
                // VM to draw (and goes on to a cold start, the queue or a
                // 429, whose budget check is the same).
                let room = budget.used_mb + running_mb(class)
                    <= budget.limit_mb.saturating_add(budget.evictable_mb);
                let vp = &pools.vm;
                let n = |count: u32| if room { count } else { 0 };
                let view = PoolView {
                    active_idle_function_warm: n(vp.sub.idle(key)),
                    dedicated_idle_function_warm: n(vp.sub.provisioned_idle(key)),
                    dedicated_idle_unspecialised: n(vp.sub.dedicated_idle(&account, class)),
                    general_idle_runtime_warm: n(vp.sub.general_idle(class)),
                    general_idle_shell_warm: 0,
                    general_runtime_target: vp.general_targets.get(&class).copied().unwrap_or(0),
                    general_shell_target: 0,
                    general_pool_size: vp.general_target_total,
                    general_share: vp.share.standing(req.account(), now),
                    account_queue_len: pools.queued.get(&account).copied().unwrap_or(0),
                };
                let decision = place(&req, &view, &policy, &budget);
                if !mode.allows(decision, &budget, running_mb(class)) {
                    drop(guard);
                    self.0
                        .metrics
                        .placements
                        .with_label_values(&["async-held-back"])
                        .inc();
                    return Err(VmAcquire::Refused(not_now()));
                }
                let drawn = match decision {
                    PlacementDecision::Warm => pools
                        .vm
                        .sub
                        .take_idle(key)
                        .map(|v| Drawn::Ready(Box::new(v))),
                    PlacementDecision::Dedicated {
                        function_warm: true,
                    } => pools
                        .vm
                        .sub
                        .take_provisioned(key)
                        .map(|v| Drawn::Ready(Box::new(v))),
                    PlacementDecision::Dedicated {
                        function_warm: false,
                    } => pools
                        .vm
                        .sub
                        .take_dedicated(&account, class)
                        .map(|v| Drawn::Pooled(Box::new(v), false)),
                    PlacementDecision::GeneralRuntime => pools
                        .vm
                        .sub
                        .take_general(class)
                        .map(|v| Drawn::Pooled(Box::new(v), true)),
                    PlacementDecision::GeneralShell => None,
                    PlacementDecision::Cold { evict_mb } => {
                        let (gone, mut charge) = self.evict_for(pools, evict_mb, now);
                        // Reserved under the lock, so two cold starts cannot
                        // both fit in the same free memory.
                        charge.set(running_mb(class).max(charge.mb()));
                        Some(Drawn::Cold(gone, charge))
                    }
                    PlacementDecision::Queue { .. } => {
                        *pools.queued.entry(account.clone()).or_default() += 1;
                        None
                    }
                    PlacementDecision::Reject { .. } => None,
                };
                if asks_general(&decision, policy.mode) {
                    if matches!(drawn, Some(Drawn::Pooled(_, true))) {
                        pools.vm.share.record_draw(req.account(), now);
                    } else {
                        pools.vm.share.record_ask(req.account(), now);
                    }
                }
                // A drawn VM is about to run: it is charged its whole class
                // from now on, room made (under the lock) if need be.
                let drawn = match drawn {
                    Some(Drawn::Ready(mut v)) => {
                        let gone = self.charge_running(pools, &mut v, class, now);
                        Some((Drawn::Ready(v), gone))
                    }
                    Some(Drawn::Pooled(mut v, general)) => {
                        let gone = self.charge_running(pools, &mut v, class, now);
                        pools.vm.assign(v.vm.id, &account);
                        Some((Drawn::Pooled(v, general), gone))
                    }
                    Some(d) => Some((d, Vec::new())),
                    None => None,
                };
                (decision, drawn)
            };
            let queued = queued_since.is_some();
            if let Some(t) = queued_since {
                usage.queue_wait_us = t.elapsed().as_secs_f64() * 1e6;
            }
            match (decision, drawn) {
                (_, Some((Drawn::Ready(mut v), gone))) => {
                    for g in gone {
                        let _ = g.await;
                    }
                    v.charge.set(running_mb(class));
                    if decision == PlacementDecision::Warm {
                        self.0.keepalive.lock().on_busy(v.sid, now);
                    }
                    return Ok((placed(decision, queued), *v, usage));
                }
                (_, Some((Drawn::Pooled(mut v, general), gone))) => {
                    for g in gone {
                        let _ = g.await;
                    }
                    v.charge.set(running_mb(class));
                    if general {
                        if let Some(s) = side.sizers.lock().get_mut(&class) {
                            s.record_draw(now);
                        }
                    }
                    self.0.wake.notify_one();
                    let started = Instant::now();
                    let r = self
                        .specialise_vm(side, *v, version, key, code, Origin::Active)
                        .await;
                    usage.specialise_us = started.elapsed().as_secs_f64() * 1e6;
                    return r
                        .map(|v| (placed(decision, queued), v, usage))
                        .map_err(|f| VmAcquire::Failed(f, vm_placed(decision).source));
                }
                (_, Some((Drawn::Cold(gone, mut charge), _))) => {
                    for g in gone {
                        let _ = g.await;
                    }
                    charge.set(running_mb(class));
                    if let Some(s) = side.sizers.lock().get_mut(&class) {
                        s.record_cold_start(now);
                    }
                    self.0.wake.notify_one();
                    let r = self
                        .cold_vm(side, charge, version, key, code, Origin::Active, &mut usage)
                        .await;
                    return r
                        .map(|v| (placed(decision, queued), v, usage))
                        .map_err(|f| VmAcquire::Failed(f, vm_placed(decision).source));
                }
                (PlacementDecision::Queue { deadline }, None) => {
                    queued_since.get_or_insert_with(Instant::now);
                    self.wait_queued(&account, deadline, now, notified)
                        .await
                        .map_err(VmAcquire::Refused)?;
                }
                (PlacementDecision::Reject { .. }, None) => {
                    return Err(VmAcquire::Refused(self.rejected()));
                }
                // The view said yes but the draw found nothing: place again.
                _ => {}
            }
        }
        Err(VmAcquire::Refused(throttle()))
    }

    /// Makes room (under the pools' lock) for a drawn VM to be charged its
    /// whole class while it runs; returns the evicted capacity's handles,
    /// whose charges `v` took over.
    fn charge_running(
        &self,
        pools: &mut Pools,
        v: &mut VmInstance,
        class: u32,
        now: hearth_pool::clock::Millis,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let need = running_mb(class).saturating_sub(v.charge.mb());
        let used = self.0.memory_used.load(Ordering::Relaxed);
        let over = (used + need).saturating_sub(self.0.config.memory_budget_mb);
        let (gone, freed) = self.evict_for(pools, over, now);
        v.charge.absorb(freed);
        gone
    }

    /// The function made ready for VM threads: its module open, its
    /// memory class's base ensured, its snapshot looked up (kept, and
    /// updated once the snapshot is taken).
    pub(crate) async fn vm_prepared(
        &self,
        side: &Arc<VmSide>,
        version: &VersionRecord,
        code: &VmCode,
    ) -> Result<(super::PreparedKey, Prepared), LambdaError> {
        let c = &version.config;
        let class = memory_class_for(c.memory_size).unwrap_or(c.memory_size);
        // Keyed on the config without its mount table: the images a
        // version mounts follow from its code, its layers and the node's
        // runtime.
        let mut blob = config_blob(version, code, &self.0.node, &[])?;
        for l in &version.config.layers {
            blob.extend_from_slice(b"\0layer=");
            blob.extend_from_slice(l.code.sha256_hex.as_bytes());
        }
        let pk = (version.code.sha256_hex.clone(), blob, class);
        if let Some(p) = side.prepared.lock().get(&pk) {
            return Ok((pk, p.clone()));
        }
        let host = side.host.clone();
        let me = self.clone();
        let (version, code, python) = (version.clone(), code.clone(), side.python.clone());
        let p = tokio::task::spawn_blocking(move || {
            if host.store.base(class).is_none() {
                let runner = Runner::for_this_thread().map_err(|e| e.to_string())?;
                host.ensure_base(&runner, class)
                    .map_err(|e| format!("cannot make the {class} MB base snapshot: {e}"))?;
            }
            // The function's code, read-only at /var/task (as in a process
            // sandbox): one image per code package, shared by every VM.
            let sha = &version.code.sha256_hex;
            me.0.code.ensure_unpacked(sha).map_err(|e| e.to_string())?;
            let tree = me.0.code.unpacked_dir(sha);
            let task = host
                .store
                .code_image(sha, &tree)
                .map_err(|e| e.to_string())?;
            // Its layers, merged, read-only at /opt: one image per ordered
            // list of layers. The image's digest is part of the function
            // snapshot's key, so other layers never reuse a snapshot.
            let digests: Vec<&str> = version
                .config
                .layers
                .iter()
                .map(|l| l.code.sha256_hex.as_str())
                .collect();
            let opt = match me.0.code.opt_dir(&digests).map_err(|e| e.to_string())? {
                Some(dir) => {
                    let key = format!("opt{}", hearth_store::code::opt_key(&digests));
                    Some(
                        host.store
                            .code_image(&key, &dir)
                            .map_err(|e| e.to_string())?,
                    )
                }
                None => None,
            };
            let (module_path, mut files) = match (&code, &python) {
                (VmCode::Wasm(m), _) => (m.clone(), vec![("/var/task", task)]),
                (VmCode::Python, Some(rt)) => (
                    rt.cwasm(),
                    vec![
                        (hearth_pool::vm::python::LIB_MOUNT, rt.lib_image()),
                        ("/var/task", task),
                    ],
                ),
                (VmCode::Python, None) => return Err("no CPython runtime for microVMs".into()),
            };
            if let Some(opt) = opt {
                files.push(("/opt", opt));
            }
            let mut mounts = Vec::new();
            for (at, path) in &files {
                let len = host.store.module(path).map_err(|e| e.to_string())?.len;
                mounts.push((*at, len));
            }
            let spec = FunctionSpec {
                code_sha256_hex: sha.clone(),
                module_path,
                config: config_blob(&version, &code, &me.0.node, &mounts).map_err(|e| e.message)?,
                files: files.into_iter().map(|(_, p)| p).collect(),
                error_exit: code.error_exit(),
                init_timeout: me.0.config.init_timeout,
            };
            host.prepare(&spec, class).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| LambdaError::service(format!("worker failed: {e}")))?
        .map_err(LambdaError::service)?;
        let mut cache = side.prepared.lock();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(pk.clone(), p.clone());
        Ok((pk, p))
    }

    /// Turns a general or dedicated VM into the function (at its stdin
    /// read), taking the function snapshot the first time.
    pub(crate) async fn specialise_vm(
        &self,
        side: &Arc<VmSide>,
        mut v: VmInstance,
        version: &VersionRecord,
        key: &WarmKey,
        code: &VmCode,
        origin: Origin,
    ) -> Result<VmInstance, VmStartFailed> {
        let started = Instant::now();
        let (pk, prepared) = self
            .vm_prepared_or_wait(side, version, code)
            .await
            .map_err(VmStartFailed::Error)?;
        v.account = Some(version.account_id.clone());
        let p = prepared.clone();
        let (v, outcome) = on_vm(&side.host, move |h, r| {
            let s = h.specialise(r, &mut v.vm, &p);
            (v, s)
        })
        .await
        .map_err(VmStartFailed::Error)?;
        let v = self
            .after_specialise(side, v, outcome, pk, prepared, started)
            .await?;
        Ok(self.ready_instance(v, version, key, origin, started.elapsed()))
    }

    /// A cold start: a new VM restored from the function snapshot, or from
    /// the base and specialised.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn cold_vm(
        &self,
        side: &Arc<VmSide>,
        charge: MemoryCharge,
        version: &VersionRecord,
        key: &WarmKey,
        code: &VmCode,
        origin: Origin,
        usage: &mut Usage,
    ) -> Result<VmInstance, VmStartFailed> {
        let started = Instant::now();
        let (pk, prepared) = self
            .vm_prepared_or_wait(side, version, code)
            .await
            .map_err(VmStartFailed::Error)?;
        let p = prepared.clone();
        let (made, restore) = on_vm(&side.host, move |h, r| {
            let t = Instant::now();
            let made = h.cold(r, &p);
            (made, t.elapsed())
        })
        .await
        .map_err(VmStartFailed::Error)?;
        usage.restore_us = restore.as_secs_f64() * 1e6;
        let (pooled, outcome) = made.map_err(|e| {
            VmStartFailed::Error(LambdaError::service(format!(
                "cannot restore a microVM: {e}"
            )))
        })?;
        let v = VmInstance {
            sid: self.next_sid(),
            vm: pooled,
            charge,
            account: Some(version.account_id.clone()),
            key: None,
            generation: 0,
            origin: origin.clone(),
            init_duration: None,
            init_output: Vec::new(),
            log_stream: String::new(),
            init_cost_ms: 0,
            memory_mb: version.config.memory_size,
            last_used: Instant::now(),
        };
        self.0.pools.lock().vm.assign(v.vm.id, &version.account_id);
        let t = Instant::now();
        let v = self
            .after_specialise(side, v, Ok(outcome), pk, prepared, started)
            .await?;
        usage.specialise_us = t.elapsed().as_secs_f64() * 1e6;
        Ok(self.ready_instance(v, version, key, origin, started.elapsed()))
    }

    /// A fresh keep-alive id.
    pub(crate) fn next_sid(&self) -> hearth_pool::ids::SandboxId {
        hearth_pool::ids::SandboxId(self.0.sandbox_seq.fetch_add(1, Ordering::Relaxed))
    }

    fn ready_instance(
        &self,
        mut v: VmInstance,
        version: &VersionRecord,
        key: &WarmKey,
        origin: Origin,
        init: Duration,
    ) -> VmInstance {
        v.key = Some(key.clone());
        v.account = Some(version.account_id.clone());
        v.log_stream = crate::logs::new_stream_name(&version.version);
        v.generation = self.generation(&version.account_id, &version.function_name);
        v.origin = origin;
        v.init_duration = Some(init);
        v.init_cost_ms = init.as_millis() as u64;
        v.memory_mb = version.config.memory_size;
        v
    }

    /// What follows a specialisation: the function snapshot taken and
    /// adopted the first time, or the failure.
    async fn after_specialise(
        &self,
        side: &Arc<VmSide>,
        v: VmInstance,
        outcome: Result<Specialised, hearth_pool::vm::VmPoolError>,
        pk: super::PreparedKey,
        prepared: Prepared,
        started: Instant,
    ) -> Result<VmInstance, VmStartFailed> {
        match outcome {
            Ok(Specialised::Ready) => {
                // The first VM to adopt a snapshot taken at deploy time
                // shows that init's output (see `deploy`).
                let mut v = v;
                if let Some(out) = side.init_outputs.lock().remove(&pk) {
                    v.init_output = out;
                }
                Ok(v)
            }
            Ok(Specialised::NeedsSnapshot(init_output)) => {
                let host = side.host.clone();
                let mut v = v;
                v.init_output = init_output;
                let mut prepared = prepared;
                let (v, prepared, wrote) = tokio::task::spawn_blocking(move || {
                    // Another invocation may have taken it meanwhile.
                    let wrote = match host.store.cached_function(&prepared.key) {
                        Some(layer) => {
                            prepared.layer = Some(layer);
                            Ok(())
                        }
                        None => host.write_function_snapshot(&mut v.vm, &mut prepared),
                    };
                    (v, prepared, wrote)
                })
                .await
                .map_err(|e| VmStartFailed::Error(LambdaError::service(e.to_string())))?;
                if let Err(e) = wrote {
                    // The VM is at the function's stdin read all the same:
                    // it serves this invocation and is then dropped.
                    tracing::warn!(error = %e, "cannot take a function snapshot");
                    return Ok(v);
                }
                side.prepared.lock().insert(pk, prepared.clone());
                let (v, adopted) = on_vm(&side.host, move |h, _| {
                    let mut v = v;
                    let r = h.adopt(&mut v.vm, &prepared);
                    (v, r)
                })
                .await
                .map_err(VmStartFailed::Error)?;
                adopted.map_err(|e| {
                    VmStartFailed::Error(LambdaError::service(format!(
                        "cannot adopt the function snapshot: {e}"
                    )))
                })?;
                Ok(v)
            }
            Ok(Specialised::EndedEarly(finished)) => {
                drop(v.destroy());
                Err(VmStartFailed::EndedEarly {
                    finished,
                    init: started.elapsed(),
                })
            }
            Ok(Specialised::InitError(finished)) => {
                drop(v.destroy());
                Err(VmStartFailed::Reported {
                    finished,
                    init: started.elapsed(),
                })
            }
            Ok(Specialised::Failed(error_type, message)) => {
                drop(v.destroy());
                Err(VmStartFailed::Init {
                    error_type,
                    message,
                    init: started.elapsed(),
                })
            }
            Err(e) => {
                drop(v.destroy());
                Err(VmStartFailed::Error(LambdaError::service(format!(
                    "cannot specialise a microVM: {e}"
                ))))
            }
        }
    }

    /// Runs the invocation on a ready VM, answers, and resets the VM off
    /// the response path (then returns it to where it came from).
    #[allow(clippy::too_many_arguments)]
    async fn run_vm(
        &self,
        side: &Arc<VmSide>,
        mut v: VmInstance,
        version: &VersionRecord,
        code: &VmCode,
        input: &InvokeInput,
        request_id: String,
        mut usage: Usage,
    ) -> InvokeOutput {
        let timeout = Duration::from_secs(u64::from(version.config.timeout));
        let init_duration = v.init_duration.take();
        let init_output = std::mem::take(&mut v.init_output);
        let v_stream = v.log_stream.clone();
        let key = v.key.clone();
        if let Some(k) = &key {
            *self
                .0
                .pools
                .lock()
                .vm
                .resetting
                .entry(k.clone())
                .or_default() += 1;
        }
        let (tx_done, rx_done) = tokio::sync::oneshot::channel();
        let (tx_back, rx_back) = tokio::sync::oneshot::channel();
        let payload = code.stdin(
            &request_id,
            timeout,
            || {
                self.0.node.arn(
                    &version.account_id,
                    &version.function_name,
                    input.qualifier.as_deref(),
                )
            },
            &input.payload,
        );
        let error_exit = code.error_exit();
        let rid = request_id.clone();
        let timeout_ns = timeout.as_nanos() as u64;
        let started = Instant::now();
        let host = side.host.clone();
        let submitted = side.host.workers.submit(move |r| {
            let inv = Invocation {
                event: &payload,
                request_id: &rid,
                timeout_ns,
            };
            let before = v.vm.private_pages;
            let (res, mut stats) = host.invoke(r, &mut v.vm, &inv);
            // Pages this invocation copied: the VM's private pages now,
            // less those it held when last measured (its last reset).
            stats.cow_pages = stats.cow_pages.saturating_sub(before);
            let reusable = v.vm.function.is_some()
                && match &res {
                    Ok(f) => !matches!(f.ended, Ended::GuestPanic(_)),
                    Err(GuestError::Timeout) => true,
                    Err(_) => false,
                };
            let _ = tx_done.send((res, stats));
            let reset = reusable.then(|| host.reset(&mut v.vm));
            let _ = tx_back.send((v, reset));
        });
        let done = match submitted {
            Ok(()) => tokio::time::timeout(timeout + Duration::from_secs(30), rx_done)
                .await
                .ok()
                .and_then(Result::ok),
            Err(e) => {
                tracing::error!(error = %e, "cannot reach a VM thread");
                None
            }
        };
        let duration = started.elapsed();
        let me = self.clone();
        let side2 = side.clone();
        tokio::spawn(async move {
            let back = rx_back.await.ok();
            me.release_vm(&side2, key, back);
        });
        let id = &request_id;
        let mut extra = Vec::new();
        let (function_error, body, stderr) = match done {
            Some((res, stats)) => {
                usage.guest_wall_us = stats.run_wall_ns as f64 / 1e3;
                usage.guest_cpu_us = stats.run_cpu_ns as f64 / 1e3;
                usage.exits = stats.exits.total();
                usage.cow_pages = stats.cow_pages;
                match res {
                    Ok(f) => match f.ended {
                        Ended::Exited(0) => (false, Bytes::from(f.stdout), f.stderr),
                        // The runtime's own report: Lambda's error object.
                        Ended::Exited(c) if Some(c) == error_exit => {
                            (true, Bytes::from(f.stdout), f.stderr)
                        }
                        Ended::OutputTooLarge => {
                            let msg = format!(
                                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                                hearth_types::limits::SYNC_PAYLOAD_MAX_BYTES
                            );
                            (
                                true,
                                error_body("Function.ResponseSizeTooLarge", &msg),
                                f.stderr,
                            )
                        }
                        ref ended => {
                            let (etype, why) = describe(ended);
                            let msg = format!("RequestId: {id} Error: {why}");
                            extra.push(msg.clone());
                            extra.push(etype.to_owned());
                            (true, error_body(etype, &msg), f.stderr)
                        }
                    },
                    Err(GuestError::Timeout) => {
                        let secs = timeout.as_secs_f64();
                        extra.push(format!(
                            "{} {id} Task timed out after {secs:.2} seconds",
                            iso_now()
                        ));
                        (
                            true,
                            error_body(
                                "Sandbox.Timedout",
                                &format!(
                                    "RequestId: {id} Error: Task timed out after {secs:.2} seconds"
                                ),
                            ),
                            Vec::new(),
                        )
                    }
                    Err(e) => {
                        let msg = format!("RequestId: {id} Error: the microVM failed: {e}");
                        extra.push(msg.clone());
                        (true, error_body("Runtime.ExitError", &msg), Vec::new())
                    }
                }
            }
            None => {
                let msg = format!("RequestId: {id} Error: the microVM did not answer");
                extra.push(msg.clone());
                (true, error_body("Runtime.ExitError", &msg), Vec::new())
            }
        };
        self.observe_usage(&usage);
        let report = Report {
            duration,
            memory_mb: version.config.memory_size,
            max_memory_used_mb: (usage.cow_pages * 4).div_ceil(1024),
            init_duration,
        };
        let mut log = frame(id, &version.version, &init_output, &stderr, &extra, &report);
        log.push_str(&usage.log_line(id));
        log.push('\n');
        self.0.logs.write(
            &version.account_id,
            &version.function_name,
            &version.version,
            &v_stream,
            now_ms(),
            &log,
        );
        self.record_usage(version, &usage);
        InvokeOutput {
            request_id: request_id.clone(),
            executed_version: version.version.clone(),
            function_error,
            body,
            log: None,
            placement: "",
            usage: Some(usage.header()),
        }
        .with_log(log)
    }

    /// Returns a VM to where it came from once it is reset: the function's
    /// idle list, or its provisioned configuration; or destroys it (it
    /// could not be reset, its function was retired, the node is closing).
    /// Never to the general pool: a VM serves one account in its life.
    fn release_vm(
        &self,
        side: &Arc<VmSide>,
        key: Option<WarmKey>,
        back: Option<(
            VmInstance,
            Option<Result<Duration, hearth_pool::vm::VmPoolError>>,
        )>,
    ) {
        if let Some(k) = &key {
            let mut pools = self.0.pools.lock();
            if let Some(n) = pools.vm.resetting.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    pools.vm.resetting.remove(k);
                }
            }
        }
        let _ = side;
        let Some((mut v, reset)) = back else {
            self.0.released.notify_waiters();
            return;
        };
        let keep = match reset {
            Some(Ok(d)) => {
                self.0
                    .metrics
                    .vm_phase_seconds
                    .with_label_values(&["reset"])
                    .observe(d.as_secs_f64());
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot reset a microVM: dropping it");
                false
            }
            None => false,
        };
        let stale = match &v.key {
            Some(k) => v.generation != self.generation(&k.account_id, &k.function_name),
            None => true,
        };
        if !keep || stale {
            self.forget_vm(&v);
            drop(v.destroy());
            self.0.wake.notify_one();
            self.0.released.notify_waiters();
            return;
        }
        v.last_used = Instant::now();
        v.charge.set(measured_mb(v.vm.private_pages));
        let Some(k) = v.key.clone() else { return };
        {
            let mut pools = self.0.pools.lock();
            if pools.closing {
                drop(pools);
                drop(v.destroy());
                return;
            }
            match v.origin.clone() {
                Origin::Active => {
                    let fv = function_version(&k);
                    self.0.keepalive.lock().on_idle(
                        IdleSandbox {
                            id: v.sid,
                            function: &fv,
                            memory_mb: v.memory_mb,
                            init_cost_ms: v.init_cost_ms,
                        },
                        self.now(),
                    );
                    pools.vm.sub.put_idle(k, v);
                }
                Origin::Provisioned(p) => {
                    if self.0.provisioned.lock().contains_key(&p) {
                        pools.vm.sub.put_provisioned(k, v);
                    } else {
                        if let Some(n) = pools.provisioned_owned.get_mut(&p) {
                            *n = n.saturating_sub(1);
                        }
                        drop(pools);
                        drop(v.destroy());
                    }
                }
            }
        }
        self.0.released.notify_waiters();
    }

    /// A provisioned VM that goes away no longer counts for its
    /// configuration.
    pub(crate) fn forget_vm(&self, v: &VmInstance) {
        if let Origin::Provisioned(p) = &v.origin {
            if let Some(n) = self.0.pools.lock().provisioned_owned.get_mut(p) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Adds the invocation to the usage totals.
    fn record_usage(&self, v: &VersionRecord, u: &Usage) {
        self.0
            .usage
            .record(&v.account_id, &v.function_name, now_ms(), u);
    }

    /// The per-phase histograms.
    fn observe_usage(&self, u: &Usage) {
        let h = &self.0.metrics.vm_phase_seconds;
        for (phase, us) in [
            ("queue", u.queue_wait_us),
            ("restore", u.restore_us),
            ("specialise", u.specialise_us),
            ("guest", u.guest_wall_us),
            ("guest_cpu", u.guest_cpu_us),
        ] {
            if us > 0.0 || phase.starts_with("guest") {
                h.with_label_values(&[phase]).observe(us / 1e6);
            }
        }
        self.0.metrics.vm_exits.inc_by(u64::from(u.exits));
        self.0.metrics.vm_cow_pages.inc_by(u.cow_pages);
    }

    /// An invocation whose VM could not be made ready: Lambda's answer
    /// and log.
    fn vm_start_failed(
        &self,
        f: VmStartFailed,
        v: &VersionRecord,
        request_id: &str,
    ) -> InvokeOutput {
        let id = request_id;
        let (function_error, body, output, extra, init) = match f {
            VmStartFailed::Error(e) => {
                tracing::error!(error = %e, "a microVM start failed");
                (
                    true,
                    error_body(e.kind.code(), &e.message),
                    Vec::new(),
                    vec![e.message],
                    None,
                )
            }
            VmStartFailed::Init {
                error_type,
                message,
                init,
            } => {
                let msg = format!("RequestId: {id} Error: {message}");
                (
                    true,
                    error_body(error_type, &msg),
                    Vec::new(),
                    vec![msg, error_type.to_owned()],
                    Some(init),
                )
            }
            VmStartFailed::Reported { finished, init } => (
                true,
                Bytes::from(finished.stdout),
                finished.stderr,
                Vec::new(),
                Some(init),
            ),
            VmStartFailed::EndedEarly { finished, init } => match finished.ended {
                Ended::Exited(0) => (
                    false,
                    Bytes::from(finished.stdout),
                    finished.stderr,
                    Vec::new(),
                    Some(init),
                ),
                ref ended => {
                    let (etype, why) = describe(ended);
                    let msg = format!("RequestId: {id} Error: {why}");
                    (
                        true,
                        error_body(etype, &msg),
                        finished.stderr.clone(),
                        vec![msg, etype.to_owned()],
                        Some(init),
                    )
                }
            },
        };
        let report = Report {
            duration: Duration::ZERO,
            memory_mb: v.config.memory_size,
            max_memory_used_mb: 0,
            init_duration: init,
        };
        let log = frame(id, &v.version, b"", &output, &extra, &report);
        // The VM that failed is gone: its lines get a stream of their own.
        self.0.logs.write(
            &v.account_id,
            &v.function_name,
            &v.version,
            &crate::logs::new_stream_name(&v.version),
            now_ms(),
            &log,
        );
        InvokeOutput {
            request_id: id.to_owned(),
            executed_version: v.version.clone(),
            function_error,
            body,
            log: None,
            placement: "",
            usage: None,
        }
        .with_log(log)
    }
}

/// The `X-Hearth-Placement` and metric label of a VM's source.
fn vm_placed(d: PlacementDecision) -> Placed {
    let (source, metric) = match d {
        PlacementDecision::Warm => ("vm-warm", "vm_warm"),
        PlacementDecision::Dedicated { .. } => ("vm-dedicated", "vm_dedicated"),
        PlacementDecision::GeneralRuntime | PlacementDecision::GeneralShell => {
            ("vm-general", "vm_general")
        }
        PlacementDecision::Cold { .. } => ("vm-cold", "vm_cold"),
        PlacementDecision::Queue { .. } => ("queued", "queued"),
        PlacementDecision::Reject { .. } => ("rejected", "rejected"),
    };
    Placed { source, metric }
}
