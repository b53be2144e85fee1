//! The warming pool as the supervisor holds it: the general sub-pool of
//! unassigned shell- and runtime-warm sandboxes, provisioned (dedicated,
//! function-warm) sandboxes, and the active pool's idle function-warm ones —
//! all under one lock, so a placement decision and the draw it implies are
//! one step. The decision itself is `hearth_pool::placement::place`.

use crate::instance::Instance;
use crate::logs::LogPump;
use crate::placement::{IdlePool, WarmKey};
use hearth_pool::profile::Warmth;
use hearth_pool::share::ShareLedger;
use hearth_runtime::api::RuntimeApi;
use hearth_sandbox::SandboxControl;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One general sub-pool: a runtime family (`python`, `nodejs`, or `shell`
/// for shell-warm sandboxes any runtime can take) and a memory class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PoolKey {
    pub family: String,
    pub memory_class_mb: u32,
}

impl PoolKey {
    pub fn warmth(&self) -> Warmth {
        if self.family == SHELL {
            Warmth::Shell
        } else {
            Warmth::Runtime
        }
    }

    pub fn label(&self) -> String {
        format!("{}:{}", self.family, self.memory_class_mb)
    }
}

/// The family of shell-warm pools.
pub const SHELL: &str = "shell";

/// The pool a dedicated-capacity profile fills: its family's runtime-warm
/// pool for Python and Node, shell-warm for `provided`; `None` for
/// `microvm` (the VM pools).
pub fn pool_for_profile(p: &hearth_types::capacity::Profile) -> Option<PoolKey> {
    use hearth_types::capacity::ProfileRuntime;
    use hearth_types::runtime::RuntimeFamily;
    let family = match &p.runtime {
        ProfileRuntime::Family(f) => *f,
        ProfileRuntime::Exact(r) => r.family(),
        ProfileRuntime::MicroVm => return None,
    };
    let family = match family {
        RuntimeFamily::Python => "python",
        RuntimeFamily::Node => "nodejs",
        RuntimeFamily::Provided => SHELL,
    };
    Some(PoolKey {
        family: family.to_owned(),
        memory_class_mb: p.memory_class_mb,
    })
}

/// The language family whose runtime-warm pool can serve `runtime`.
pub fn family_of(runtime: &hearth_types::runtime::Runtime) -> &'static str {
    use hearth_types::runtime::RuntimeFamily;
    match runtime.family() {
        RuntimeFamily::Python => "python",
        RuntimeFamily::Node => "nodejs",
        RuntimeFamily::Provided => "provided",
    }
}

/// How one general sub-pool is sized.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GeneralPoolConfig {
    pub key: PoolKey,
    pub min: u32,
    pub max: u32,
}

/// The default general sub-pools of a fresh node: runtime-warm Python and
/// Node at 128 MB, and a few shell-warm sandboxes for `provided` functions.
pub fn default_general_pools() -> Vec<GeneralPoolConfig> {
    vec![
        GeneralPoolConfig {
            key: PoolKey {
                family: "python".into(),
                memory_class_mb: 128,
            },
            min: 2,
            max: 32,
        },
        GeneralPoolConfig {
            key: PoolKey {
                family: "nodejs".into(),
                memory_class_mb: 128,
            },
            min: 1,
            max: 16,
        },
        GeneralPoolConfig {
            key: PoolKey {
                family: SHELL.into(),
                memory_class_mb: 128,
            },
            min: 1,
            max: 16,
        },
    ]
}

/// Memory charged against the node's budget while a sandbox lives: its
/// cgroup limit. Released on drop, i.e. when the sandbox is destroyed.
#[derive(Debug)]
pub struct MemoryCharge {
    used: Arc<AtomicU64>,
    mb: u64,
}

impl MemoryCharge {
    pub fn new(used: &Arc<AtomicU64>, mb: u64) -> Self {
        used.fetch_add(mb, Ordering::Relaxed);
        Self {
            used: used.clone(),
            mb,
        }
    }

    /// Takes over another charge (an evicted sandbox's memory handed to the
    /// sandbox replacing it), so the total never counts both.
    pub fn absorb(&mut self, mut other: MemoryCharge) {
        self.mb += other.mb;
        other.mb = 0;
    }

    /// What it charges now, MiB.
    pub fn mb(&self) -> u64 {
        self.mb
    }

    /// Re-charges at a new limit (assignment sets the exact MemorySize).
    pub fn set(&mut self, mb: u64) {
        self.used.fetch_add(mb, Ordering::Relaxed);
        self.used.fetch_sub(self.mb, Ordering::Relaxed);
        self.mb = mb;
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        self.used.fetch_sub(self.mb, Ordering::Relaxed);
    }
}

/// A sandbox built ahead of any request and assigned to no function yet.
#[derive(Debug)]
pub struct Unspecialised {
    pub id: String,
    pub key: PoolKey,
    pub control: Arc<dyn SandboxControl>,
    pub api: RuntimeApi,
    pub logs: LogPump,
    pub created: Instant,
    /// How long building it took (spawn → runtime parked or init waiting).
    pub build: Duration,
    pub charge: MemoryCharge,
}

impl Unspecialised {
    /// Destroys the sandbox but hands its memory charge to the caller.
    pub fn destroy_handing_over_charge(self) -> (tokio::task::JoinHandle<()>, MemoryCharge) {
        self.api.shutdown();
        let Self {
            control, charge, ..
        } = self;
        (
            tokio::task::spawn_blocking(move || control.destroy()),
            charge,
        )
    }

    /// Its memory charge is released once the sandbox is really gone.
    pub fn destroy(self) -> tokio::task::JoinHandle<()> {
        self.api.shutdown();
        let Self {
            control, charge, ..
        } = self;
        tokio::task::spawn_blocking(move || {
            control.destroy();
            drop(charge);
        })
    }
}

/// Provisioned concurrency: one configuration's function-warm sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProvisionedKey {
    pub account_id: String,
    pub function_name: String,
    /// The configuration's qualifier (version or alias).
    pub qualifier: String,
}

/// Everything the warming pool and the active pool hold, under one lock.
#[derive(Debug, Default)]
pub struct Pools {
    /// The active pool's idle function-warm sandboxes.
    pub idle: IdlePool,
    /// General sub-pools: idle unassigned sandboxes.
    pub general: HashMap<PoolKey, Vec<Unspecialised>>,
    /// Builds in flight per general sub-pool.
    pub building: HashMap<PoolKey, u32>,
    /// Idle provisioned sandboxes by configuration, and how many it owns in
    /// all (idle + busy + starting).
    pub provisioned_idle: HashMap<ProvisionedKey, Vec<Instance>>,
    pub provisioned_owned: HashMap<ProvisionedKey, u32>,
    /// Dedicated sub-pools: sandboxes assigned to one account before any
    /// request (its capacity settings), not yet specialised.
    pub dedicated: HashMap<(String, PoolKey), Vec<Unspecialised>>,
    pub dedicated_building: HashMap<(String, PoolKey), u32>,
    /// Provisioned builds in flight, by configuration.
    pub provisioned_building: HashMap<ProvisionedKey, u32>,
    /// Invocations of each account waiting for capacity.
    pub queued: HashMap<String, u32>,
    /// Recent draws from (and asks of) the general sub-pools, for the
    /// accounts' general share (ADR 0011).
    pub share: ShareLedger,
    /// The node is shutting down: sandboxes finishing a build or an
    /// invocation are destroyed, not pooled.
    pub closing: bool,
    /// The microVM side: general, dedicated, provisioned and idle VMs.
    pub(crate) vm: crate::vm::VmPools,
    /// Each general sub-pool's current target (what the sizer asked for).
    pub general_targets: HashMap<PoolKey, u32>,
    /// The sum of the general sub-pools' current targets (the size the
    /// per-account general share is a fraction of).
    pub general_target_total: u32,
}

impl Pools {
    pub fn general_idle(&self, key: &PoolKey) -> u32 {
        self.general.get(key).map_or(0, |v| v.len() as u32)
    }

    /// Memory held by general sandboxes above their pools' targets: what the
    /// budget may take back first.
    pub fn general_surplus_mb(&self) -> u64 {
        self.general
            .iter()
            .map(|(k, list)| {
                let target = self.general_targets.get(k).copied().unwrap_or(0) as usize;
                list.len().saturating_sub(target) as u64 * u64::from(k.memory_class_mb)
            })
            .sum()
    }

    /// Removes general sandboxes above their pools' targets, newest first,
    /// until `need_mb` is freed or no surplus is left.
    pub fn take_general_surplus(&mut self, need_mb: u64) -> Vec<Unspecialised> {
        let mut out = Vec::new();
        let mut freed = 0u64;
        let keys: Vec<PoolKey> = self.general.keys().cloned().collect();
        for k in keys {
            let target = self.general_targets.get(&k).copied().unwrap_or(0) as usize;
            if let Some(list) = self.general.get_mut(&k) {
                while list.len() > target && freed < need_mb {
                    if let Some(u) = list.pop() {
                        freed += u64::from(k.memory_class_mb);
                        out.push(u);
                    }
                }
            }
        }
        out
    }

    /// Takes the oldest idle sandbox of a general sub-pool (FIFO keeps the
    /// pool's age spread even).
    pub fn take_general(&mut self, key: &PoolKey) -> Option<Unspecialised> {
        let list = self.general.get_mut(key)?;
        if list.is_empty() {
            return None;
        }
        Some(list.remove(0))
    }

    pub fn dedicated_idle(&self, account: &str, key: &PoolKey) -> u32 {
        self.dedicated
            .get(&(account.to_owned(), key.clone()))
            .map_or(0, |v| v.len() as u32)
    }

    pub fn take_dedicated(&mut self, account: &str, key: &PoolKey) -> Option<Unspecialised> {
        self.dedicated
            .get_mut(&(account.to_owned(), key.clone()))?
            .pop()
    }

    /// Idle provisioned sandboxes for this exact version of a function.
    pub fn provisioned_idle_for(&self, key: &WarmKey) -> u32 {
        self.provisioned_idle
            .iter()
            .filter(|(k, _)| k.account_id == key.account_id && k.function_name == key.function_name)
            .flat_map(|(_, v)| v.iter())
            .filter(|i| i.key == *key)
            .count() as u32
    }

    pub fn take_provisioned(&mut self, key: &WarmKey) -> Option<Instance> {
        for (k, list) in self.provisioned_idle.iter_mut() {
            if k.account_id != key.account_id || k.function_name != key.function_name {
                continue;
            }
            if let Some(pos) = list.iter().position(|i| i.key == *key) {
                return Some(list.swap_remove(pos));
            }
        }
        None
    }
}
