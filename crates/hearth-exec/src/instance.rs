//! One started sandbox with its Runtime API and log pump: the unit the
//! executor places invocations on.

use crate::logs::LogPump;
use crate::placement::WarmKey;
use hearth_runtime::api::RuntimeApi;
use hearth_sandbox::SandboxControl;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Instance {
    pub id: String,
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
}

impl Instance {
    /// Kills the sandbox and frees everything it held, off the async threads.
    pub fn destroy(self) {
        self.api.shutdown();
        let control = self.control;
        tokio::task::spawn_blocking(move || control.destroy());
    }
}
