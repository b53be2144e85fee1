//! What a sandbox is asked to be, and the handle the backend returns.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Everything a backend needs to build one sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// Unique, `[a-z0-9-]`, at most 40 chars: names the cgroup and logs.
    pub id: String,
    /// The account the sandbox serves for its whole life.
    pub account_id: String,
    /// Memory limit, MiB: the function's MemorySize, or, for a general-pool
    /// sandbox, its profile's memory class (lowered to the function's exact
    /// MemorySize with [`SandboxControl::set_memory_limit`] on assignment).
    pub memory_mb: u32,
    /// Maximum number of tasks (processes + threads) in the sandbox.
    pub pids_max: u32,
    /// Host directory bind-mounted read-only at `/var/task` (the unpacked code).
    ///
    /// `None`: `/var/task` starts empty and receives, by mount propagation,
    /// the directory given later to [`SandboxControl::mount_task`] (no copy;
    /// every sandbox of the same code shares the same pages). A process that
    /// made `/var/task` its working directory before then keeps seeing the
    /// empty directory until it changes directory again.
    pub task_root: Option<PathBuf>,
    /// Host directory bind-mounted read-only at `/opt` (the function's
    /// merged layers), with `task_root`. Without `task_root`, `/opt`
    /// receives by propagation what [`SandboxControl::mount_opt`] mounts
    /// (and stays an empty read-only directory until then); with
    /// `task_root` but no `opt_root`, it is an empty read-only tmpfs.
    #[serde(default)]
    pub opt_root: Option<PathBuf>,
    /// Host directory bind-mounted read-only at `/var/runtime` (Hearth's bootstraps), if any.
    pub runtime_dir: Option<PathBuf>,
    /// Size of the `/tmp` tmpfs, MiB.
    pub tmp_mb: u32,
    /// The program to exec and its arguments (`argv[0]` is the path inside the sandbox).
    ///
    /// Empty: a **shell-warm** sandbox. Everything is built (cgroup,
    /// namespaces, root, uid, seccomp) and its init waits for the program
    /// that [`SandboxControl::exec`] sends (then `env` and `cwd` here are
    /// unused).
    pub argv: Vec<String>,
    /// The complete environment of the program (nothing is inherited from the daemon).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Also give the program (the one in `argv`, or the one a shell-warm
    /// sandbox is later given) a connected Unix socket to the Runtime API,
    /// its descriptor number in `HEARTH_RUNTIME_API_FD`; the daemon's end is
    /// [`Sandbox::runtime_channel`]. Only for Hearth's own bootstraps, which
    /// use it instead of loopback TCP (and fall back to TCP): a program that
    /// does not know it would only inherit a stray descriptor.
    #[serde(default)]
    pub runtime_channel: bool,
}

/// A running sandbox, as the backend hands it to the supervisor.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    /// How long each stage of this start took, in order (the Linux
    /// backend: `host_prepare`, `launcher_exec`, `await_request`, `cgroup_join`, `unshare`,
    /// `runtime_api_socket`, `fork_init`, `mounts`, `privileges_seccomp`,
    /// `runtime_exec`, `ready_report`). Empty for a shell-warm start, whose
    /// program starts later.
    pub start_stages: Vec<(String, std::time::Duration)>,
    /// The Runtime API listening socket (`127.0.0.1:9001` inside the sandbox's
    /// network namespace), already listening; the daemon accepts on it.
    pub runtime_api: std::net::TcpListener,
    /// With [`SandboxSpec::runtime_channel`]: the daemon's end of the
    /// program's Unix socket to the Runtime API (serve it as a connection).
    pub runtime_channel: Option<std::os::unix::net::UnixStream>,
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
    /// Starts the program of a shell-warm sandbox (one started with an empty
    /// `argv`): the sandbox's init forks and execs it exactly as it does a
    /// spec's `argv` at start, with exactly `env`, in `cwd`. Returns once the
    /// program has been exec'd, or with the reason it could not be: a
    /// malformed command (empty `argv`, relative `cwd`, a `=` in a variable
    /// name, a NUL byte) is refused before it reaches the sandbox, which keeps
    /// waiting; any other failure (the program cannot be exec'd, `cwd` does
    /// not exist) ends the sandbox, which should then be destroyed. Valid
    /// once, and only for a shell-warm sandbox. From then on the program's
    /// exit ends the sandbox, as for any other.
    fn exec(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
    ) -> Result<(), SandboxError>;
    /// Makes `dir` (an absolute host directory, typically a function's
    /// content-addressed unpacked code, shared by every sandbox of that code)
    /// appear read-only, nosuid, nodev at `/var/task` in a sandbox started
    /// with `task_root: None`, without copying it. Valid once.
    fn mount_task(&self, dir: &Path) -> Result<(), SandboxError>;
    /// Like [`mount_task`](Self::mount_task), for `/opt`: `dir` (a
    /// function's merged layers) appears read-only, nosuid, nodev at `/opt`
    /// in a sandbox started with `task_root: None`. Valid once.
    fn mount_opt(&self, dir: &Path) -> Result<(), SandboxError>;
    /// Sets the sandbox's memory limit to `mb` MiB (and its CPU weight, which
    /// follows the memory size as at start). Lowering it below what the
    /// sandbox uses makes the kernel reclaim, and may fail (cgroup v1) or
    /// OOM-kill (v2). Without a memory controller on this host (see
    /// [`Protections::memory_limit`]) there is nothing to set and this
    /// succeeds.
    fn set_memory_limit(&self, mb: u32) -> Result<(), SandboxError>;
    /// The sandbox's total proportional set size, bytes: the sum of `Pss` in
    /// `/proc/<pid>/smaps_rollup` over the processes of its cgroup (launcher
    /// and init included). `None` without a cgroup or when nothing could be
    /// read.
    fn pss_bytes(&self) -> Option<u64>;
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
    /// gone, and removes its cgroup and any host-side state (including the
    /// host-side mounts of `mount_task`, lazily unmounted).
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
    /// been exec'd — for a shell-warm sandbox (empty `argv`), once its init
    /// waits for [`SandboxControl::exec`] — or fails with the reason setup
    /// stopped.
    fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError>;
    /// What this backend enforces on this host.
    fn protections(&self) -> Protections;
    /// Kills and removes everything a previous run of the daemon left
    /// (processes, cgroups, mounts, staging dirs). Called once at start.
    fn reap_leftovers(&self) -> Result<usize, SandboxError>;
}
