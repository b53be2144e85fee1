//! Execution: the sandbox supervisor and the pool manager.
//!
//! It starts sandboxes through a [`SandboxBackend`], keeps the warming pool
//! (general sub-pools of shell- and runtime-warm sandboxes, provisioned
//! function-warm ones) and the active pool, places each invocation with
//! `hearth_pool::placement::place`, specialises pooled sandboxes to a
//! function without copying its code or restarting its interpreter, enforces
//! timeouts, concurrency and the node's memory budget, and frames each
//! invocation's log as Lambda does.

pub mod concurrency;
pub mod esm;
pub mod events;
pub mod instance;
pub mod invoke;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod placement;
pub mod pools;
pub mod sqs;
pub mod usage;
pub mod vm;

pub use hearth_types::function::Isolation;
pub use invoke::{InvokeInput, InvokeMode, InvokeOutput};
pub use pools::{default_general_pools, GeneralPoolConfig, PoolKey};
pub use vm::deploy::DeployPrep;
pub use vm::{default_vm_pools, MicroVm, VmPoolConfig};

use concurrency::Concurrency;
use hearth_pool::keepalive::{IdleSandbox, KeepAliveConfig, KeepAlivePolicy, RemovalCause};
use hearth_pool::policy::CapacityPolicy;
use hearth_pool::sizing::{PoolSizer, SizerConfig};
use hearth_runtime::RuntimeCatalog;
use hearth_sandbox::SandboxBackend;
use hearth_store::{CodeStore, LogStore, Registry};
use hearth_types::arn::NodeIdentity;
use instance::{Instance, Origin};
use logs::LogWriter;
use metrics::Metrics;
use parking_lot::Mutex;
use pools::{Pools, ProvisionedKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Settings of the supervisor and the pool manager.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Idle function-warm sandboxes are destroyed after this long unused
    /// (the fixed keep-alive, AWS's and OpenWhisk's 10 minutes by default).
    pub idle_timeout: Duration,
    /// How long a runtime may take to initialise.
    pub init_timeout: Duration,
    /// Tasks allowed per sandbox.
    pub pids_max: u32,
    /// Size of each sandbox's `/tmp`, MiB.
    pub tmp_mb: u32,
    /// Host directory holding Hearth's bootstraps (mounted at `/var/runtime`).
    pub runtime_dir: PathBuf,
    /// Concurrency limit of every account.
    pub account_concurrency: u32,
    /// The general sub-pools and their bounds (empty disables pooling).
    pub general_pools: Vec<GeneralPoolConfig>,
    /// How the general sub-pools' targets follow demand.
    pub sizer: SizerConfig,
    /// How long idle function-warm sandboxes are kept: fixed TTL (default,
    /// `idle_timeout`), hybrid histogram or Greedy-Dual.
    pub keepalive: Option<KeepAliveConfig>,
    /// The most the sum of sandbox memory limits and microVM memory may
    /// reach, MiB.
    pub memory_budget_mb: u64,
    /// Whether (and with which pools) WebAssembly functions run in microVMs.
    pub microvm: MicroVm,
    /// Where `python3.x` functions run unless their tag `hearth:isolation`
    /// says otherwise (`[microvm] python`).
    pub python_isolation: Isolation,
}

impl ExecConfig {
    pub fn new(runtime_dir: PathBuf) -> Self {
        Self {
            idle_timeout: Duration::from_secs(600),
            init_timeout: Duration::from_secs(10),
            pids_max: 1024,
            tmp_mb: 512,
            runtime_dir,
            account_concurrency: hearth_types::limits::ACCOUNT_CONCURRENCY_DEFAULT,
            general_pools: default_general_pools(),
            sizer: SizerConfig::default(),
            keepalive: None,
            memory_budget_mb: default_memory_budget_mb(),
            microvm: MicroVm::Off("microVMs are not configured on this node".to_owned()),
            python_isolation: Isolation::Process,
        }
    }
}

/// 75% of the host's RAM (MemTotal), or 4 GiB if it cannot be read.
pub fn default_memory_budget_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb / 1024 * 3 / 4)
}

/// The stores the supervisor reads and writes.
#[derive(Debug, Clone)]
pub struct ExecStores {
    pub registry: Arc<dyn Registry>,
    pub code: Arc<CodeStore>,
    /// Where invocation logs go.
    pub logs: Arc<LogStore>,
    /// Where usage totals go.
    pub usage: Arc<hearth_store::UsageStore>,
}

/// A provisioned-concurrency configuration the pool manager keeps filled.
#[derive(Debug, Clone)]
pub struct ProvisionedTarget {
    pub requested: u32,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn SandboxBackend>,
    registry: Arc<dyn Registry>,
    code: Arc<CodeStore>,
    runtimes: RuntimeCatalog,
    node: NodeIdentity,
    config: ExecConfig,
    logs: LogWriter,
    /// Usage totals (microVM invocations), batched into the usage store.
    usage: usage::UsageWriter,
    pools: Mutex<Pools>,
    /// Per general sub-pool: the sizing policy's state.
    sizers: Mutex<HashMap<PoolKey, Box<dyn PoolSizer>>>,
    /// The keep-alive policy over the active pool's idle sandboxes.
    keepalive: Mutex<Box<dyn KeepAlivePolicy>>,
    /// Sum of the memory limits of every live sandbox, MiB.
    memory_used: Arc<AtomicU64>,
    /// Each account's capacity policy (default: burst, half the general pool).
    policies: Mutex<HashMap<String, CapacityPolicy>>,
    /// Dedicated sub-pool sizes, by (account, pool).
    dedicated: Mutex<HashMap<(String, PoolKey), u32>>,
    /// Provisioned concurrency to hold, by configuration.
    provisioned: Mutex<HashMap<ProvisionedKey, ProvisionedTarget>>,
    /// Per (account, function): bumped when the function is updated or
    /// deleted, so its running sandboxes are not reused.
    generations: Mutex<HashMap<(String, String), u64>>,
    concurrency: Concurrency,
    /// The invoke path's view of the registry, by (account, function,
    /// qualifier).
    resolved: Mutex<HashMap<ResolvedKey, Resolved>>,
    sandbox_seq: AtomicU64,
    metrics: Metrics,
    /// Wakes the pool manager (a draw, a change of configuration).
    wake: Notify,
    /// Wakes invocations waiting for capacity (a sandbox was released).
    released: Notify,
    epoch: Instant,
    /// Why this node cannot run functions, if it cannot isolate them.
    cannot_isolate: Option<String>,
    /// The microVM side, or why this node has none.
    vm: Result<Arc<vm::VmSide>, String>,
    /// The WebAssembly module of each code package and handler (`None`:
    /// not a Wasm function), by (code SHA-256, handler).
    modules: Mutex<HashMap<(String, String), Option<PathBuf>>>,
    /// Functions whose tag `hearth:isolation` chooses where they run, by
    /// (account, function).
    isolation_tags: Mutex<HashMap<(String, String), Isolation>>,
}

/// What the invoke path read from the registry for one (account, function,
/// qualifier), valid while the registry's write epoch stays `epoch`.
#[derive(Debug, Clone)]
struct Resolved {
    epoch: u64,
    /// Shared: the warm path takes a reference, not a copy of the record
    /// (its variables, layers and the rest), under the node-wide lock.
    version: Arc<hearth_types::function::VersionRecord>,
    reserved: Option<u32>,
    reserved_total: u64,
}

/// (account, function, qualifier) as an invocation names them.
type ResolvedKey = (String, String, Option<String>);

/// The supervisor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor(Arc<Inner>);

impl Executor {
    /// Starts the supervisor on the current tokio runtime: the log writer,
    /// the pool manager (which fills the general sub-pools and provisioned
    /// concurrency) and the idle reaper.
    pub fn start(
        backend: Arc<dyn SandboxBackend>,
        stores: ExecStores,
        runtimes: RuntimeCatalog,
        node: NodeIdentity,
        config: ExecConfig,
    ) -> Self {
        let ExecStores {
            registry,
            code,
            logs: log_store,
            usage: usage_store,
        } = stores;
        let p = backend.protections();
        let cannot_isolate = (!p.can_isolate).then(|| p.warnings.join(" "));
        // Fresh metrics in a fresh registry; registration cannot collide.
        #[allow(clippy::expect_used)]
        let metrics = Metrics::new().expect("metrics register once");
        let epoch = Instant::now();
        let sizers = config
            .general_pools
            .iter()
            .map(|g| {
                (
                    g.key.clone(),
                    config.sizer.build(hearth_pool::clock::Millis(0)),
                )
            })
            .collect();
        let keepalive = config
            .keepalive
            .clone()
            .unwrap_or(KeepAliveConfig::FixedTtl {
                ttl_ms: config.idle_timeout.as_millis() as u64,
            })
            .build();
        let vm = match &config.microvm {
            MicroVm::Off(why) => Err(why.clone()),
            MicroVm::On {
                host,
                general,
                python,
            } => Ok(Arc::new(vm::VmSide::new(
                host.clone(),
                general.clone(),
                python.clone(),
                &config.sizer,
            ))),
        };
        let isolation_tags = match registry.tagged(Isolation::TAG) {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(a, f, v)| Isolation::parse(&v).map(|i| ((a, f), i)))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the functions' isolation tags");
                HashMap::new()
            }
        };
        let exec = Self(Arc::new(Inner {
            vm,
            modules: Mutex::new(HashMap::new()),
            isolation_tags: Mutex::new(isolation_tags),
            keepalive: Mutex::new(keepalive),
            backend,
            registry,
            code,
            runtimes,
            node,
            logs: LogWriter::start(log_store),
            usage: usage::UsageWriter::start(usage_store),
            pools: Mutex::new(Pools::default()),
            sizers: Mutex::new(sizers),
            memory_used: Arc::new(AtomicU64::new(0)),
            policies: Mutex::new(HashMap::new()),
            provisioned: Mutex::new(HashMap::new()),
            dedicated: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            concurrency: Concurrency::default(),
            resolved: Mutex::new(HashMap::new()),
            sandbox_seq: AtomicU64::new(0),
            metrics,
            wake: Notify::new(),
            released: Notify::new(),
            epoch,
            cannot_isolate,
            config,
        }));
        exec.reload_capacity();
        manager::spawn(&exec);
        exec
    }

    /// Milliseconds since the supervisor started: the capacity logic's clock.
    fn now(&self) -> hearth_pool::clock::Millis {
        hearth_pool::clock::Millis(self.0.epoch.elapsed().as_millis() as u64)
    }

    /// The WebAssembly engine inside this node's microVMs, if it runs any.
    pub fn vm_engine(&self) -> Option<&'static str> {
        self.0.vm.as_ref().ok().map(|s| s.host.engine)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Re-reads every account's capacity policy and every provisioned
    /// concurrency configuration from the registry, and wakes the manager.
    pub fn reload_capacity(&self) {
        match self.0.registry.all_account_capacity() {
            Ok(all) => {
                let mut p = self.0.policies.lock();
                let mut d = self.0.dedicated.lock();
                let mut vm_dedicated = HashMap::new();
                p.clear();
                d.clear();
                for c in all {
                    for (profile, n) in c.dedicated_profiles().unwrap_or_default() {
                        match pools::pool_for_profile(&profile) {
                            Some(k) => *d.entry((c.account_id.clone(), k)).or_default() += n,
                            None => {
                                *vm_dedicated
                                    .entry((c.account_id.clone(), profile.memory_class_mb))
                                    .or_default() += n
                            }
                        }
                    }
                    p.insert(c.account_id.clone(), policy_of(&c));
                }
                if let Ok(side) = &self.0.vm {
                    *side.dedicated.lock() = vm_dedicated;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read capacity settings"),
        }
        match self.0.registry.all_provisioned_concurrency() {
            Ok(all) => {
                let mut p = self.0.provisioned.lock();
                p.clear();
                for c in all {
                    p.insert(
                        ProvisionedKey {
                            account_id: c.account_id.clone(),
                            function_name: c.function_name.clone(),
                            qualifier: c.qualifier.clone(),
                        },
                        ProvisionedTarget {
                            requested: c.requested,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read provisioned concurrency"),
        }
        self.0.wake.notify_one();
    }

    fn policy_for(&self, account: &str) -> CapacityPolicy {
        self.0
            .policies
            .lock()
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Destroys the idle function-warm sandboxes whose keep-alive ran out.
    pub fn reap_idle(&self) {
        let now = self.now();
        let expired = self.0.keepalive.lock().expired(now);
        if expired.is_empty() {
            return;
        }
        let (gone, vms): (Vec<Instance>, Vec<vm::VmInstance>) = {
            let mut pools = self.0.pools.lock();
            let gone = expired
                .iter()
                .filter_map(|sid| pools.idle.take_sid(*sid))
                .collect();
            let vms = pools
                .vm
                .sub
                .take_idle_where(|_, v| expired.contains(&v.sid));
            (gone, vms)
        };
        for v in vms {
            self.0
                .metrics
                .evictions
                .with_label_values(&["keep-alive"])
                .inc();
            drop(v.destroy());
        }
        for i in gone {
            tracing::debug!(sandbox = %i.id, "keep-alive ran out: destroying");
            self.0
                .metrics
                .evictions
                .with_label_values(&["keep-alive"])
                .inc();
            i.destroy();
        }
    }

    /// Returns once every log line of the invocations answered so far is in
    /// the log store (readers call it: no read-after-write lag).
    pub async fn flush_logs(&self) {
        self.0.logs.flush().await;
    }

    /// Retires a function's sandboxes (after an update or delete): idle ones
    /// are destroyed now, busy ones when their invocation ends.
    pub fn retire_function(&self, account_id: &str, function_name: &str) {
        *self
            .0
            .generations
            .lock()
            .entry((account_id.to_owned(), function_name.to_owned()))
            .or_default() += 1;
        let retired_vms: Vec<vm::VmInstance> = {
            let mut pools = self.0.pools.lock();
            let same = |k: &placement::WarmKey| {
                k.account_id == account_id && k.function_name == function_name
            };
            let mut out = pools.vm.sub.take_idle_where(|k, _| same(k));
            out.extend(pools.vm.sub.take_provisioned_where(|k, _| same(k)));
            out
        };
        for v in retired_vms {
            self.0
                .keepalive
                .lock()
                .on_removed(v.sid, RemovalCause::Retired, self.now());
            self.forget_vm(&v);
            drop(v.destroy());
        }
        self.vm_sweep_snapshots();
        let retired: Vec<Instance> = {
            let mut pools = self.0.pools.lock();
            let mut out = pools.idle.take_where(|i| {
                i.key.account_id == account_id && i.key.function_name == function_name
            });
            for (k, list) in pools.provisioned_idle.iter_mut() {
                if k.account_id == account_id && k.function_name == function_name {
                    out.append(list);
                }
            }
            out
        };
        let now = self.now();
        for i in retired {
            self.0
                .keepalive
                .lock()
                .on_removed(i.sid, RemovalCause::Retired, now);
            i.destroy();
        }
        self.0.wake.notify_one();
    }

    /// Destroys every idle and pooled sandbox (at shutdown); the handles
    /// finish once each is gone (its processes, cgroup and mounts).
    pub fn shutdown(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut gone = Vec::new();
        let mut pools = self.0.pools.lock();
        pools.closing = true;
        for i in pools.idle.take_where(|_| true) {
            gone.push(i.destroy());
        }
        for (_, list) in pools.general.drain() {
            for u in list {
                gone.push(u.destroy());
            }
        }
        for (_, list) in pools.dedicated.drain() {
            for u in list {
                gone.push(u.destroy());
            }
        }
        for (_, list) in pools.provisioned_idle.drain() {
            for i in list {
                gone.push(i.destroy());
            }
        }
        for v in pools.vm.sub.drain_all() {
            gone.push(v.destroy());
        }
        gone
    }

    /// What the event scheduler weighs for one function: the memory budget
    /// (limit, used, MiB), synchronous invocations waiting for capacity, and
    /// the function's idle function-warm sandboxes (any version).
    pub fn load_view(&self, account_id: &str, function_name: &str) -> (u64, u64, u32, u32) {
        let pools = self.0.pools.lock();
        let waiting: u32 = pools.queued.values().sum();
        let idle = pools.idle.count_function(account_id, function_name);
        (
            self.0.config.memory_budget_mb,
            self.0.memory_used.load(Ordering::Relaxed),
            waiting,
            idle,
        )
    }

    /// Resolves when a sandbox is next released (capacity may have freed).
    pub fn released_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.released.notified()
    }

    /// Idle function-warm sandboxes in the active pool right now.
    pub fn idle_count(&self) -> usize {
        self.0.pools.lock().idle.len()
    }

    fn generation(&self, account_id: &str, function_name: &str) -> u64 {
        self.0
            .generations
            .lock()
            .get(&(account_id.to_owned(), function_name.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Returns a sandbox to where it came from — the active pool's idle list,
    /// or its provisioned configuration — or destroys it if its function was
    /// retired meanwhile or it died. Never to the general sub-pool: a sandbox
    /// serves one account in its life.
    fn release(&self, mut instance: Instance) {
        let stale = instance.generation
            != self.generation(&instance.key.account_id, &instance.key.function_name)
            || instance.logs.is_closed();
        if stale {
            instance.destroy();
            self.0.wake.notify_one();
            return;
        }
        instance.last_used = Instant::now();
        {
            let mut pools = self.0.pools.lock();
            if pools.closing {
                drop(pools);
                instance.destroy();
                return;
            }
            match instance.origin.clone() {
                Origin::Active => {
                    let fv = invoke::function_version(&instance.key);
                    self.0.keepalive.lock().on_idle(
                        IdleSandbox {
                            id: instance.sid,
                            function: &fv,
                            memory_mb: instance.memory_mb,
                            init_cost_ms: instance.init_cost_ms,
                        },
                        self.now(),
                    );
                    pools.idle.put(instance);
                }
                Origin::Provisioned(k) => {
                    if self.0.provisioned.lock().contains_key(&k) {
                        pools.provisioned_idle.entry(k).or_default().push(instance);
                    } else {
                        drop(pools);
                        instance.destroy();
                    }
                }
            }
        }
        self.0.released.notify_waiters();
    }

    /// A snapshot of every pool for `GET /hearth/v1/pools`.
    pub fn pools_snapshot(&self) -> serde_json::Value {
        use serde_json::json;
        let pools = self.0.pools.lock();
        let sizers = self.0.sizers.lock();
        let general: Vec<_> = self
            .0
            .config
            .general_pools
            .iter()
            .map(|g| {
                let forecast = sizers
                    .get(&g.key)
                    .and_then(|s| s.last_interval())
                    .map(|s| json!({"Forecast": s.forecast, "Actual": s.actual}));
                json!({
                    "Profile": g.key.label(),
                    "Warmth": g.key.warmth().label(),
                    "Idle": pools.general_idle(&g.key),
                    "Building": pools.building.get(&g.key).copied().unwrap_or(0),
                    "Min": g.min,
                    "Max": g.max,
                    "LastInterval": forecast,
                })
            })
            .collect();
        let provisioned: Vec<_> = self
            .0
            .provisioned
            .lock()
            .iter()
            .map(|(k, t)| {
                json!({
                    "AccountId": k.account_id,
                    "FunctionName": k.function_name,
                    "Qualifier": k.qualifier,
                    "Requested": t.requested,
                    "Allocated": pools.provisioned_owned.get(k).copied().unwrap_or(0),
                    "Idle": pools.provisioned_idle.get(k).map_or(0, Vec::len),
                })
            })
            .collect();
        let dedicated: Vec<_> = self
            .0
            .dedicated
            .lock()
            .iter()
            .map(|((account, key), n)| {
                json!({
                    "AccountId": account,
                    "Profile": key.label(),
                    "Warmth": key.warmth().label(),
                    "Target": n,
                    "Idle": pools.dedicated_idle(account, key),
                })
            })
            .collect();
        drop(pools);
        let microvm = self.vm_pools_snapshot();
        let pools = self.0.pools.lock();
        json!({
            "MicroVm": microvm,
            "General": general,
            "Dedicated": dedicated,
            "Provisioned": provisioned,
            "ActiveIdle": pools.idle.len(),
            "MemoryUsedMb": self.0.memory_used.load(Ordering::Relaxed),
            "MemoryBudgetMb": self.0.config.memory_budget_mb,
            "Queued": pools.queued.values().sum::<u32>(),
        })
    }
}

/// The capacity crate's policy from the registry's account settings.
fn policy_of(c: &hearth_types::capacity::AccountCapacity) -> CapacityPolicy {
    use hearth_pool::policy::CapacityMode as M;
    use hearth_types::capacity::CapacityMode as S;
    CapacityPolicy {
        mode: match c.policy {
            S::Burst => M::Burst,
            S::Reject => M::Reject,
            S::Wait => M::Wait {
                max_wait_ms: u64::from(c.max_wait_ms),
                max_queue_len: 1000,
            },
        },
        general_share: c.general_share,
        dedicated: Default::default(),
    }
}
