//! Functions whose code is a WebAssembly module run in Hearth's own KVM
//! microVMs (`hearth_pool::vm`), through the same placement, concurrency,
//! budget, keep-alive and log framing as process sandboxes:
//!
//! - [`VmPools`]: the VM sub-pools (general per memory class, dedicated per
//!   account, provisioned, and the active pool's idle VMs), held under the
//!   same lock as the sandbox pools, so that one decision over both and the
//!   draw it implies are one step, and the memory budget has one owner;
//! - `invoke`: placement, specialisation, the run, reset and release, the
//!   answer and its accounting;
//! - `manager`: base snapshots, refilling the general VM pools, dedicated
//!   and provisioned VMs, snapshot deletion.
//!
//! A VM is charged against the memory budget by what it really holds: the
//! guest pages it copied on write (measured after each reset) plus what KVM
//! keeps for it ([`KVM_OVERHEAD_KIB`]). While it runs it is charged its
//! whole memory class, the most its guest can touch, so a load of concurrent
//! invocations cannot overshoot the budget.

pub(crate) mod deploy;
pub(crate) mod invoke;
pub(crate) mod manager;

use crate::instance::Origin;
use crate::placement::WarmKey;
use crate::pools::MemoryCharge;
use hearth_pool::vm::python::PythonRuntime;
use hearth_pool::vm::{PooledVm, VmHost, VmSubPools};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One general microVM sub-pool: a memory class and its bounds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmPoolConfig {
    pub memory_class_mb: u32,
    pub min: u32,
    pub max: u32,
}

/// The general VM pools of a fresh node: 128 MB, 2 to 32 VMs.
pub fn default_vm_pools() -> Vec<VmPoolConfig> {
    vec![VmPoolConfig {
        memory_class_mb: 128,
        min: 2,
        max: 32,
    }]
}

/// Whether this node runs WebAssembly functions in microVMs.
#[derive(Debug, Clone)]
pub enum MicroVm {
    /// It does not, and this says why (invocations of such functions are
    /// told).
    Off(String),
    /// It does.
    On {
        host: Arc<VmHost>,
        /// The general VM sub-pools (empty: every VM start is cold).
        general: Vec<VmPoolConfig>,
        /// The CPython runtime for Python functions in microVMs, if one is
        /// installed (`hearth runtimes install python`).
        python: Option<PythonRuntime>,
    },
}

/// What a function's VMs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VmCode {
    /// Its code is a WebAssembly module: this file of the code store.
    Wasm(PathBuf),
    /// A `python3.x` function: the node's CPython for WASI runs Hearth's
    /// bootstrap over the function's code, mounted at `/var/task`.
    Python,
}

impl VmCode {
    /// The exit status by which the runtime says "stdout is Lambda's error
    /// object" (Hearth's Python bootstrap), if it has one.
    pub fn error_exit(&self) -> Option<i32> {
        match self {
            VmCode::Wasm(_) => None,
            VmCode::Python => Some(hearth_pool::vm::python::FUNCTION_ERROR_EXIT),
        }
    }

    /// The bytes the guest reads on stdin for an event: the event itself,
    /// or for Python the bootstrap's envelope line (request id, deadline,
    /// the ARN invoked) before it.
    pub fn stdin(
        &self,
        request_id: &str,
        timeout: Duration,
        invoked_arn: impl FnOnce() -> String,
        event: &bytes::Bytes,
    ) -> bytes::Bytes {
        match self {
            VmCode::Wasm(_) => event.clone(),
            VmCode::Python => {
                let deadline = crate::invoke::now_ms().max(0) as u64 + timeout.as_millis() as u64;
                hearth_pool::vm::python::envelope(request_id, deadline, Some(&invoked_arn()), event)
                    .into()
            }
        }
    }
}

/// What KVM itself holds for each VM beyond the guest's private pages (the
/// vCPU, its shadow page tables, memory slots), KiB. `hearth bench --only
/// vm` measures it ("kept VMs, kernel memory"): 881 KiB per VM on PVM; this
/// rounds it up.
pub const KVM_OVERHEAD_KIB: u64 = 1024;

/// The budget charge of a VM holding `private_pages` guest pages, MiB.
pub(crate) fn measured_mb(private_pages: u64) -> u64 {
    (private_pages * 4 + KVM_OVERHEAD_KIB).div_ceil(1024)
}

/// The budget charge of a running VM of a memory class (all its guest RAM
/// may become private), MiB.
pub(crate) fn running_mb(class_mb: u32) -> u64 {
    u64::from(class_mb) + KVM_OVERHEAD_KIB.div_ceil(1024)
}

/// A VM as the supervisor holds it.
#[derive(Debug)]
pub(crate) struct VmInstance {
    /// The id the keep-alive policy knows it by.
    pub sid: hearth_pool::ids::SandboxId,
    pub vm: PooledVm,
    pub charge: MemoryCharge,
    /// The account it serves, from the moment it leaves the general pool.
    pub account: Option<String>,
    /// The function version it is warm for.
    pub key: Option<WarmKey>,
    pub generation: u64,
    pub origin: Origin,
    /// Set until the first invocation reports it.
    pub init_duration: Option<Duration>,
    /// What the function's init wrote to stderr, when this VM ran it: for
    /// its first invocation's log (taken by it).
    pub init_output: Vec<u8>,
    /// Its CloudWatch Logs stream (named once it serves a version).
    pub log_stream: String,
    pub init_cost_ms: u64,
    /// The function's MemorySize.
    pub memory_mb: u32,
    pub last_used: Instant,
}

impl VmInstance {
    /// Drops the VM off the async threads (closing KVM's descriptors frees
    /// its memory, which takes a moment), then its charge.
    pub fn destroy(self) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || drop(self))
    }

    /// Destroys the VM but hands its memory charge to the caller.
    pub fn destroy_handing_over_charge(self) -> (tokio::task::JoinHandle<()>, MemoryCharge) {
        let VmInstance { vm, charge, .. } = self;
        let h = tokio::task::spawn_blocking(move || drop(vm));
        (h, charge)
    }
}

/// The VM side of the pools (inside `Pools`, under its lock).
#[derive(Debug, Default)]
pub(crate) struct VmPools {
    pub sub: VmSubPools<WarmKey, VmInstance>,
    /// Function-warm VMs being reset after an invocation, by version: an
    /// invocation of that version waits for one rather than take a general VM.
    pub resetting: HashMap<WarmKey, u32>,
    /// Each general VM pool's current target, by memory class.
    pub general_targets: HashMap<u32, u32>,
    pub general_target_total: u32,
    /// Which account each VM was handed to, most recent last (bounded): the
    /// admin API shows it, so that a test can check no VM served two.
    pub assignments: VecDeque<(u64, String)>,
    /// Recent draws from (and asks of) the general VM pools, for the
    /// accounts' general share (ADR 0011).
    pub share: hearth_pool::share::ShareLedger,
}

/// How many assignments [`VmPools::assignments`] keeps.
const ASSIGNMENTS_KEPT: usize = 10_000;

impl VmPools {
    /// Records that VM `id` now serves `account`.
    pub fn assign(&mut self, id: u64, account: &str) {
        if self.assignments.len() >= ASSIGNMENTS_KEPT {
            self.assignments.pop_front();
        }
        self.assignments.push_back((id, account.to_owned()));
    }

    /// Memory the idle VMs are charged, MiB (what eviction could free).
    pub fn idle_mb(&self) -> u64 {
        self.sub.idle_iter().map(|v| v.charge.mb()).sum()
    }

    /// Memory of general VMs above their pools' targets, MiB.
    pub fn general_surplus_mb(&self) -> u64 {
        let mut mb = 0;
        for (class, list) in self.sub.general_iter() {
            let target = self.general_targets.get(&class).copied().unwrap_or(0) as usize;
            mb += list.iter().skip(target).map(|v| v.charge.mb()).sum::<u64>();
        }
        mb
    }
}

/// The node's VM side: the host (KVM, the image, the snapshot cache, the VM
/// threads) and what the supervisor keeps beside the pools.
#[derive(Debug)]
pub(crate) struct VmSide {
    pub host: Arc<VmHost>,
    pub general: Vec<VmPoolConfig>,
    /// The CPython runtime, if installed.
    pub python: Option<PythonRuntime>,
    /// Functions made ready for VM threads (module open, snapshot looked
    /// up), by (code SHA-256, config blob, memory class).
    pub prepared: parking_lot::Mutex<HashMap<PreparedKey, hearth_pool::vm::Prepared>>,
    /// Memory classes whose base snapshot is open, and why others failed.
    /// (`None`: being made.)
    pub bases: parking_lot::Mutex<HashMap<u32, Option<Result<(), String>>>>,
    /// Per general VM pool: the sizing policy's state.
    pub sizers: parking_lot::Mutex<HashMap<u32, Box<dyn hearth_pool::sizing::PoolSizer>>>,
    /// What the last pooled VM of each class held once made, MiB: what a
    /// pooled VM is charged while it is made.
    pub pooled_mb: parking_lot::Mutex<HashMap<u32, u64>>,
    /// Dedicated VM sub-pool sizes, by (account, memory class): the
    /// accounts' `microvm:CLASS` capacity settings.
    pub dedicated: parking_lot::Mutex<HashMap<(String, u32), u32>>,
    /// One deploy-time snapshot at a time ([`deploy`]).
    pub deploying: tokio::sync::Semaphore,
    /// Function snapshots being taken at deploy time: an invocation of the
    /// function waits for the flight rather than load the module itself.
    pub flights: parking_lot::Mutex<HashMap<PreparedKey, tokio::sync::watch::Receiver<bool>>>,
    /// What a deploy-time init wrote, for the first invocation that adopts
    /// its snapshot (its log shows it once).
    pub init_outputs: parking_lot::Mutex<HashMap<PreparedKey, Vec<u8>>>,
}

pub(crate) type PreparedKey = (String, Vec<u8>, u32);

impl VmSide {
    pub(crate) fn new(
        host: Arc<VmHost>,
        general: Vec<VmPoolConfig>,
        python: Option<PythonRuntime>,
        sizer: &hearth_pool::sizing::SizerConfig,
    ) -> Self {
        let sizers = general
            .iter()
            .map(|g| {
                (
                    g.memory_class_mb,
                    sizer.build(hearth_pool::clock::Millis(0)),
                )
            })
            .collect();
        VmSide {
            host,
            general,
            python,
            prepared: parking_lot::Mutex::new(HashMap::new()),
            bases: parking_lot::Mutex::new(HashMap::new()),
            sizers: parking_lot::Mutex::new(sizers),
            dedicated: parking_lot::Mutex::new(HashMap::new()),
            pooled_mb: parking_lot::Mutex::new(HashMap::new()),
            deploying: tokio::sync::Semaphore::new(1),
            flights: parking_lot::Mutex::new(HashMap::new()),
            init_outputs: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}
