//! One started sandbox with its Runtime API and log pump: the unit the
//! executor places invocations on.

use crate::logs::LogPump;
use crate::placement::WarmKey;
use crate::pools::{MemoryCharge, ProvisionedKey};
use hearth_runtime::api::RuntimeApi;
use hearth_sandbox::SandboxControl;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a function-warm sandbox came from, which decides where it goes
/// back to after an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built for an invocation (cold) or drawn from the general sub-pool:
    /// returns to the active pool's idle list.
    Active,
    /// Provisioned concurrency: returns to its configuration's dedicated pool.
    Provisioned(ProvisionedKey),
}

#[derive(Debug)]
pub struct Instance {
    pub id: String,
    /// The id the keep-alive policy knows this sandbox by.
    pub sid: hearth_pool::ids::SandboxId,
    /// What its init cost, for cost-aware keep-alive (Greedy-Dual).
    pub init_cost_ms: u64,
    pub key: WarmKey,
    /// The function's retirement generation when this sandbox started; a
    /// sandbox of an older generation is destroyed instead of reused.
    pub generation: u64,
    pub control: Arc<dyn SandboxControl>,
    pub api: RuntimeApi,
    pub logs: LogPump,
    pub memory_mb: u32,
    pub last_used: Instant,
    /// Set until the first invocation reports it.
    pub init_duration: Option<Duration>,
    /// What the runtime wrote during init, shown before the first START.
    pub init_output: Vec<u8>,
    /// Its CloudWatch Logs stream.
    pub log_stream: String,
    pub origin: Origin,
    /// Its memory limit, counted against the node's budget while it lives.
    pub charge: MemoryCharge,
}

impl Instance {
    /// Kills the sandbox and frees everything it held, off the async threads.
    /// Destroys the sandbox but hands its memory charge to the caller (for
    /// the sandbox that replaces it), instead of releasing it.
    pub fn destroy_handing_over_charge(self) -> (tokio::task::JoinHandle<()>, MemoryCharge) {
        self.api.shutdown();
        let Self {
            control, charge, ..
        } = self;
        let handle = tokio::task::spawn_blocking(move || control.destroy());
        (handle, charge)
    }

    /// The memory charge is released only once the sandbox is really gone,
    /// so the budget never counts it free early.
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
