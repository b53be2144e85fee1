//! Execution: the sandbox supervisor. It starts sandboxes through a
//! [`SandboxBackend`], serves each one's Runtime API, places invocations on
//! idle function-warm sandboxes or cold starts, enforces timeouts and
//! concurrency limits, and frames each invocation's log as Lambda does.
//!
//! The placement decision is one function ([`placement::IdlePool::place`]),
//! so the warm-pool design of the capacity issue can replace it.

pub mod concurrency;
pub mod instance;
pub mod invoke;
pub mod logs;
pub mod metrics;
pub mod placement;

pub use invoke::{InvokeInput, InvokeOutput};

use concurrency::Concurrency;
use hearth_runtime::RuntimeCatalog;
use hearth_sandbox::SandboxBackend;
use hearth_store::{CodeStore, LogStore, Registry};
use hearth_types::arn::NodeIdentity;
use instance::Instance;
use logs::LogWriter;
use parking_lot::Mutex;
use placement::IdlePool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of the supervisor.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Idle function-warm sandboxes are destroyed after this long unused.
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
        }
    }
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
    idle: Mutex<IdlePool>,
    /// Per (account, function): bumped when the function is updated or
    /// deleted, so its running sandboxes are not reused.
    generations: Mutex<HashMap<(String, String), u64>>,
    concurrency: Concurrency,
    sandbox_seq: AtomicU64,
    /// Why this node cannot run functions, if it cannot isolate them.
    cannot_isolate: Option<String>,
}

/// The supervisor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor(Arc<Inner>);

impl Executor {
    /// Starts the supervisor on the current tokio runtime: the log writer and
    /// the idle reaper.
    pub fn start(
        backend: Arc<dyn SandboxBackend>,
        registry: Arc<dyn Registry>,
        code: Arc<CodeStore>,
        log_store: Arc<LogStore>,
        runtimes: RuntimeCatalog,
        node: NodeIdentity,
        config: ExecConfig,
    ) -> Self {
        let p = backend.protections();
        let cannot_isolate = (!p.can_isolate).then(|| p.warnings.join(" "));
        let exec = Self(Arc::new(Inner {
            backend,
            registry,
            code,
            runtimes,
            node,
            logs: LogWriter::start(log_store),
            idle: Mutex::new(IdlePool::default()),
            generations: Mutex::new(HashMap::new()),
            concurrency: Concurrency::default(),
            sandbox_seq: AtomicU64::new(0),
            cannot_isolate,
            config,
        }));
        let weak = Arc::downgrade(&exec.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Executor(inner).reap_idle();
            }
        });
        exec
    }

    /// Destroys idle sandboxes unused for longer than the idle timeout.
    pub fn reap_idle(&self) {
        let timeout = self.0.config.idle_timeout;
        let now = Instant::now();
        let expired = self
            .0
            .idle
            .lock()
            .take_where(|i| now.duration_since(i.last_used) >= timeout);
        for i in expired {
            tracing::debug!(sandbox = %i.id, "idle timeout: destroying");
            i.destroy();
        }
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
        let retired =
            self.0.idle.lock().take_where(|i| {
                i.key.account_id == account_id && i.key.function_name == function_name
            });
        for i in retired {
            i.destroy();
        }
    }

    /// Destroys every idle sandbox (at shutdown).
    pub fn shutdown(&self) {
        for i in self.0.idle.lock().take_where(|_| true) {
            i.destroy();
        }
    }

    /// Idle function-warm sandboxes right now.
    pub fn idle_count(&self) -> usize {
        self.0.idle.lock().len()
    }

    fn generation(&self, account_id: &str, function_name: &str) -> u64 {
        self.0
            .generations
            .lock()
            .get(&(account_id.to_owned(), function_name.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Returns a sandbox to the idle pool, or destroys it if its function
    /// was retired meanwhile.
    fn release(&self, mut instance: Instance) {
        if instance.generation
            != self.generation(&instance.key.account_id, &instance.key.function_name)
            || instance.logs.is_closed()
        {
            instance.destroy();
            return;
        }
        instance.last_used = Instant::now();
        self.0.idle.lock().put(instance);
    }
}
