//! What a sandbox is asked to be, and the handle the backend returns.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Everything a backend needs to build one sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// Unique, `[a-z0-9-]`, at most 40 chars: names the cgroup and logs.
    pub id: String,
    /// The account the sandbox serves for its whole life.
    pub account_id: String,
    /// Memory limit (the function's MemorySize), MiB.
    pub memory_mb: u32,
    /// Maximum number of tasks (processes + threads) in the sandbox.
    pub pids_max: u32,
    /// Host directory bind-mounted read-only at `/var/task` (the unpacked code).
    pub task_root: PathBuf,
    /// Host directory bind-mounted read-only at `/var/runtime` (Hearth's bootstraps), if any.
    pub runtime_dir: Option<PathBuf>,
    /// Size of the `/tmp` tmpfs, MiB.
    pub tmp_mb: u32,
    /// The program to exec and its arguments (`argv[0]` is the path inside the sandbox).
    pub argv: Vec<String>,
    /// The complete environment of the program (nothing is inherited from the daemon).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
}

/// A running sandbox, as the backend hands it to the supervisor.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    /// The Runtime API listening socket (`127.0.0.1:9001` inside the sandbox's
    /// network namespace), already listening; the daemon accepts on it.
    pub runtime_api: std::net::TcpListener,
    /// Read ends of the program's stdout and stderr.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The uid the program runs as (unique per sandbox).
    pub uid: u32,
    /// The backend's handle for waiting, killing and measuring.
    pub control: Box<dyn SandboxControl>,
}

/// How a sandbox's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Operations on one running sandbox. Every method may be called from any
/// thread; `destroy` is idempotent.
pub trait SandboxControl: Send + Sync + std::fmt::Debug {
    /// Blocks until the sandbox's program has exited (the whole sandbox is
    /// gone then: its pid namespace dies with its init).
    fn wait(&self) -> ExitStatus;
    /// Returns the exit status if the program has already exited.
    fn try_wait(&self) -> Option<ExitStatus>;
    /// Peak memory use of the sandbox's cgroup so far, bytes.
    fn peak_memory_bytes(&self) -> Option<u64>;
    /// Whether the kernel's OOM killer has killed something in this sandbox.
    fn oom_killed(&self) -> bool;
    /// Kills every process of the sandbox (SIGKILL), waits for them to be
    /// gone, and removes its cgroup and any host-side state.
    fn destroy(&self);
}

/// What the backend could enforce on this host, reported at start-up.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Protections {
    pub user_namespace: bool,
    pub cgroup_version: Option<u8>,
    pub memory_limit: bool,
    pub pids_limit: bool,
    pub cpu_weight: bool,
    pub seccomp: bool,
    pub network_namespace: bool,
    /// Human-readable lines: what is missing and what to do about it.
    pub warnings: Vec<String>,
    /// False when functions cannot be isolated at all (then invocations are refused).
    pub can_isolate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the sandbox: {0}")]
    Setup(String),
    #[error("the sandbox cannot isolate functions on this host: {0}")]
    Unsupported(String),
    #[error("sandbox I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds and tracks sandboxes.
pub trait SandboxBackend: Send + Sync + std::fmt::Debug {
    /// Builds a sandbox and starts its program. Returns once the program has
    /// been exec'd (or fails with the reason setup stopped).
    fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError>;
    /// What this backend enforces on this host.
    fn protections(&self) -> Protections;
    /// Kills and removes everything a previous run of the daemon left
    /// (processes, cgroups, mounts, staging dirs). Called once at start.
    fn reap_leftovers(&self) -> Result<usize, SandboxError>;
}
