//! Peer baselines measured on this machine, in the same run as Hearth:
//! how long other ways of isolating a function take to answer its first
//! invocation, and what Hearth's Runtime API hop costs on its own.
//!
//! Every baseline runs Hearth's real pieces: its Python bootstrap
//! ([`hearth_runtime::bootstrap`], installed and precompiled as `hearth
//! serve` installs it), a no-op handler (`def handler(event, context):
//! return None`) and one [`RuntimeApi`] per started process on its own
//! loopback port. Only the isolation differs:
//!
//! - [`PeerBaseline::ForkExec`]: `/usr/bin/python3 bootstrap.py` as a plain
//!   child process, no isolation at all (the floor for a fresh interpreter);
//! - [`PeerBaseline::Bubblewrap`]: the same inside `bwrap`, with the
//!   isolation a bubblewrap-based platform would use (see [`bwrap_args`]);
//! - [`PeerBaseline::Crun`]: the same as an OCI container started by
//!   `crun run`, the isolation of container-based platforms such as
//!   OpenWhisk and faasd (see [`oci_config`]).
//!
//! A trial is timed from just before the process is spawned (bundles and
//! command lines are prepared beforehand) to the runtime's first
//! `GET /next` ([`FirstInvoke::init`]) and to its `/response` for the first
//! invocation, handed over once init is done as Hearth's own invoke path
//! does ([`FirstInvoke::total`]). Each trial's process is killed and reaped,
//! and its container deleted, before the next one starts; every wait is
//! bounded by [`TRIAL_TIMEOUT`].
//!
//! [`Fixture::runtime_api_round_trips`] keeps one bootstrap resident (a
//! plain child) and times invoke → response through the Runtime API, one
//! invocation at a time, from a task on a multi-threaded tokio runtime as in
//! `hearth serve`.
//!
//! Both sandboxes share the host's network namespace, so that the bootstrap
//! reaches its Runtime API on `127.0.0.1`. Hearth's own sandboxes get a
//! private network namespace with the endpoint bound inside it (about
//! 0.3 ms more to create, see `ARCHITECTURE.md` §5); `bwrap --unshare-net`
//! or an OCI `network` namespace would cut the bootstrap off from the
//! host's loopback, so the peers are measured with slightly less isolation
//! than Hearth applies.
//!
//! ```no_run
//! use hearth_bench::baselines::{Fixture, PeerBaseline};
//! # fn main() -> Result<(), hearth_bench::baselines::BaselineError> {
//! let fixture = Fixture::new()?;
//! for kind in PeerBaseline::ALL {
//!     match fixture.probe(kind) {
//!         Ok(()) => println!("{kind}: {:?}", fixture.first_invoke(kind)?.total),
//!         Err(why) => println!("{kind}: skipped: {why}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use bytes::Bytes;
use hearth_runtime::api::{
    log_stream_name, runtime_environment, InitOutcome, InitializationType, Invocation,
    InvokeOutcome, RuntimeApi, RuntimeEnv,
};
use hearth_runtime::bootstrap;
use hearth_types::runtime::Runtime;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The interpreter every baseline runs (the pyenv `python3` first on `PATH`
/// on these machines is several times slower to start).
pub const PYTHON: &str = "/usr/bin/python3";
/// The longest any one trial (start, init, first invocation) or clean-up
/// step may take before it is reported as a failure.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers trials (container ids, request ids) across every fixture.
static TRIALS: AtomicU64 = AtomicU64::new(0);

/// The function every baseline runs: a no-op Python handler.
const HANDLER_MODULE: &str = "app.py";
const HANDLER_SOURCE: &str = "def handler(event, context):\n    return None\n";
const HANDLER: &str = "app.handler";
const FUNCTION_NAME: &str = "bench-baseline";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench-baseline";
/// Host directories a sandbox sees read-only (a symlink, as with a merged
/// `/usr`, is recreated as the same symlink; a missing one is skipped).
const HOST_DIRS: [&str; 6] = ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"];
/// Where crun 1.8 finds the cgroup v2 hierarchy of a hybrid host.
const CGROUP_UNIFIED: &str = "/sys/fs/cgroup/unified";
/// How much of a failed process's stderr an error quotes.
const STDERR_TAIL: usize = 2000;

/// A peer's way of starting a fresh function process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerBaseline {
    /// A plain child process: `fork` + `exec` of `python3`, no isolation.
    ForkExec,
    /// `bwrap` (bubblewrap) with user, pid, ipc, uts and mount namespaces.
    Bubblewrap,
    /// An OCI container started with `crun run`.
    Crun,
}

impl PeerBaseline {
    pub const ALL: [Self; 3] = [Self::ForkExec, Self::Bubblewrap, Self::Crun];

    /// A short label for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ForkExec => "fork+exec python3",
            Self::Bubblewrap => "bubblewrap",
            Self::Crun => "crun",
        }
    }
}

impl fmt::Display for PeerBaseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fresh process's first invocation, timed from just before its spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstInvoke {
    /// Until the runtime's response to the first invocation reached the
    /// Runtime API.
    pub total: Duration,
    /// Until the runtime's first `GET /runtime/invocation/next`: interpreter
    /// start, bootstrap and handler import, inside the isolation.
    pub init: Duration,
}

/// Why a baseline could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A program the baseline needs is not installed: skip the baseline.
    #[error("{program} not found: install the Debian package {package}")]
    NotInstalled {
        program: &'static str,
        package: &'static str,
    },
    /// Preparing or starting something failed.
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// The process did not get as far as `stage` within [`TRIAL_TIMEOUT`].
    #[error("{baseline}: no {stage} within {timeout:?}{stderr}", timeout = TRIAL_TIMEOUT)]
    TimedOut {
        baseline: &'static str,
        stage: &'static str,
        stderr: String,
    },
    /// The process exited before `stage`.
    #[error("{baseline}: the process exited ({status}) before its {stage}{stderr}")]
    Exited {
        baseline: &'static str,
        stage: &'static str,
        status: String,
        stderr: String,
    },
    /// The runtime reported an init error, or the invocation did not end in
    /// a response.
    #[error("{baseline}: {what}{stderr}")]
    Runtime {
        baseline: &'static str,
        what: String,
        stderr: String,
    },
    /// A process or container could not be removed.
    #[error("{baseline}: cannot clean up: {reason}")]
    Cleanup {
        baseline: &'static str,
        reason: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> BaselineError {
    let action = action.into();
    move |source| BaselineError::Io { action, source }
}

/// What every trial shares: the installed bootstraps, the task directory
/// holding the no-op handler, crun's state directory, and the tokio runtime
/// serving the Runtime APIs. Build one and run many trials on it; dropping
/// it removes everything it created.
#[derive(Debug)]
pub struct Fixture {
    runtime: Runtime,
    tokio: tokio::runtime::Runtime,
    /// The bootstraps as `hearth serve` installs them, precompiled.
    runtime_dir: PathBuf,
    task_dir: PathBuf,
    crun_state: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Installs the bootstraps and the handler in a fresh temporary
    /// directory and starts a multi-threaded tokio runtime (as `hearth
    /// serve` runs). Fails if `/usr/bin/python3` is missing.
    pub fn new() -> Result<Self, BaselineError> {
        if !is_executable(Path::new(PYTHON)) {
            return Err(BaselineError::NotInstalled {
                program: PYTHON,
                package: "python3",
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("hearth-baselines-")
            .tempdir()
            .map_err(io_error("create a temporary directory"))?;
        let runtime_dir = dir.path().join("runtime");
        bootstrap::install_precompiled(&runtime_dir, &[PathBuf::from(PYTHON)])
            .map_err(io_error("install the bootstraps"))?;
        let task_dir = dir.path().join("task");
        fs::create_dir(&task_dir).map_err(io_error("create the task directory"))?;
        fs::write(task_dir.join(HANDLER_MODULE), HANDLER_SOURCE)
            .map_err(io_error("write the handler"))?;
        let crun_state = dir.path().join("crun-state");
        fs::create_dir(&crun_state).map_err(io_error("create crun's state directory"))?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(io_error("start a tokio runtime"))?;
        Ok(Self {
            runtime: Runtime::Python { minor: 11 },
            tokio,
            runtime_dir,
            task_dir,
            crun_state,
            dir,
        })
    }

    /// Whether `kind` works here: its tool is installed and one trial
    /// succeeds. `Err` says why the baseline should be skipped.
    pub fn probe(&self, kind: PeerBaseline) -> Result<(), BaselineError> {
        self.first_invoke(kind).map(drop)
    }

    /// `n` trials of `kind` one after another, each process removed before
    /// the next starts.
    pub fn first_invokes(
        &self,
        kind: PeerBaseline,
        n: usize,
    ) -> Result<Vec<FirstInvoke>, BaselineError> {
        (0..n).map(|_| self.first_invoke(kind)).collect()
    }

    /// One trial: a fresh process of `kind` with its own Runtime API, timed
    /// to its first `next` and to its answer to the first invocation, then
    /// killed and cleaned up.
    pub fn first_invoke(&self, kind: PeerBaseline) -> Result<FirstInvoke, BaselineError> {
        // Unique in the process, not just in this fixture: crun names the
        // container's cgroups after its id, whatever its state directory.
        let trial = TRIALS.fetch_add(1, Ordering::Relaxed);
        let name = kind.name();
        self.tokio.block_on(async {
            let api = serve_runtime_api()?;
            let address = api.local_addr().to_string();
            let mut process = match kind {
                PeerBaseline::ForkExec => {
                    Process::spawn(self.plain_command(&address), None, false, name)?
                }
                PeerBaseline::Bubblewrap => {
                    let bwrap = find_program("bwrap").ok_or(BaselineError::NotInstalled {
                        program: "bwrap",
                        package: "bubblewrap",
                    })?;
                    let mut cmd = clean_command(bwrap);
                    cmd.args(bwrap_args(&self.runtime_dir, &self.task_dir))
                        .args(self.sandbox_argv())
                        .envs(self.function_env(&address, false));
                    Process::spawn(cmd, None, false, name)?
                }
                PeerBaseline::Crun => {
                    let crun = find_program("crun").ok_or(BaselineError::NotInstalled {
                        program: "crun",
                        package: "crun",
                    })?;
                    let id = format!("hearth-bench-{}-{trial}", std::process::id());
                    let bundle = self.crun_bundle(&id, &address)?;
                    let container = Container {
                        crun: crun.clone(),
                        state: self.crun_state.clone(),
                        id: id.clone(),
                        deleted: false,
                        bundle,
                    };
                    let mut cmd = clean_command(crun);
                    cmd.arg("--root")
                        .arg(&self.crun_state)
                        .args(["run", "--bundle"])
                        .arg(container.bundle.path())
                        .arg(&id);
                    Process::spawn(cmd, Some(container), is_cgroup_hybrid(), name)?
                }
            };
            let measured = first_invoke_of(&api, &mut process, trial).await;
            let stopped = process.stop().await;
            api.shutdown();
            let stderr = process.stderr_tail().await;
            let measured = measured.map_err(|f| f.into_error(name, stderr))?;
            stopped?;
            Ok(measured)
        })
    }

    /// `n` invocations, one at a time, of one resident bootstrap (a plain
    /// child process, initialised before the first is timed) through its
    /// Runtime API: each sample is invoke → response as the invoker sees it.
    pub fn runtime_api_round_trips(&self, n: usize) -> Result<Vec<Duration>, BaselineError> {
        const NAME: &str = "Runtime API round trip";
        self.tokio.block_on(async {
            let api = serve_runtime_api()?;
            let address = api.local_addr().to_string();
            let mut process = Process::spawn(self.plain_command(&address), None, false, NAME)?;
            let measured = round_trips(&api, &mut process, n).await;
            let stopped = process.stop().await;
            api.shutdown();
            let stderr = process.stderr_tail().await;
            let measured = measured.map_err(|f| f.into_error(NAME, stderr))?;
            stopped?;
            Ok(measured)
        })
    }

    /// The bootstrap as a plain child process, with the host paths of the
    /// runtime and task directories.
    fn plain_command(&self, address: &str) -> Command {
        let argv = bootstrap::command_at(
            &self.runtime,
            Path::new(PYTHON),
            &self.runtime_dir,
            &self.task_dir,
        );
        let mut cmd = clean_command(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.function_env(address, true))
            .current_dir(&self.task_dir);
        cmd
    }

    /// The bootstrap's argv inside a sandbox (`/var/runtime`, `/var/task`).
    fn sandbox_argv(&self) -> Vec<String> {
        bootstrap::command(&self.runtime, Path::new(PYTHON))
    }

    /// The function's whole environment, as Hearth gives it, pointed at
    /// `address`; `host_paths` when the process sees the runtime and task
    /// directories at their host paths rather than under `/var`.
    fn function_env(&self, address: &str, host_paths: bool) -> Vec<(String, String)> {
        let stream = log_stream_name("$LATEST", SystemTime::now());
        let mut env = runtime_environment(&RuntimeEnv {
            function_name: FUNCTION_NAME,
            function_version: "$LATEST",
            memory_mb: 128,
            runtime: &self.runtime,
            handler: HANDLER,
            region: "us-east-1",
            initialization_type: InitializationType::OnDemand,
            runtime_api: address,
            log_stream_name: &stream,
            user_env: &BTreeMap::new(),
        });
        if host_paths {
            let runtime_dir = self.runtime_dir.to_string_lossy().into_owned();
            for (k, v) in &mut env {
                match k.as_str() {
                    "LAMBDA_TASK_ROOT" => *v = self.task_dir.to_string_lossy().into_owned(),
                    "LAMBDA_RUNTIME_DIR" | "PYTHONPATH" if v == bootstrap::RUNTIME_DIR => {
                        v.clone_from(&runtime_dir)
                    }
                    _ => {}
                }
            }
        }
        env
    }

    /// A fresh OCI bundle for container `id`: a read-only root with the
    /// host directories, the bootstraps and the task bound in, and
    /// `config.json` from [`oci_config`].
    fn crun_bundle(&self, id: &str, address: &str) -> Result<tempfile::TempDir, BaselineError> {
        let bundle = tempfile::Builder::new()
            .prefix(&format!("bundle-{id}-"))
            .tempdir_in(self.dir.path())
            .map_err(io_error("create an OCI bundle"))?;
        let rootfs = bundle.path().join("rootfs");
        let mut binds = Vec::new();
        for host in HOST_DIRS {
            match host_dir(host) {
                HostDir::Symlink(target) => {
                    fs::create_dir_all(&rootfs).map_err(io_error("create the rootfs"))?;
                    std::os::unix::fs::symlink(&target, rootfs.join(&host[1..]))
                        .map_err(io_error(format!("link {host} in the rootfs")))?;
                }
                HostDir::Dir => binds.push((PathBuf::from(host), host.to_owned())),
                HostDir::Missing => {}
            }
        }
        binds.push((self.runtime_dir.clone(), bootstrap::RUNTIME_DIR.to_owned()));
        binds.push((self.task_dir.clone(), bootstrap::TASK_ROOT.to_owned()));
        let mut mount_points: Vec<&str> = vec!["proc", "dev", "sys", "tmp"];
        mount_points.extend(binds.iter().map(|(_, dest)| &dest[1..]));
        for p in mount_points {
            fs::create_dir_all(rootfs.join(p)).map_err(io_error("create the rootfs"))?;
        }
        let env: Vec<String> = self
            .function_env(address, false)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let config = oci_config(&self.sandbox_argv(), &env, &binds);
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| io_error("write config.json")(io::Error::other(e)))?;
        fs::write(bundle.path().join("config.json"), json)
            .map_err(io_error("write config.json"))?;
        Ok(bundle)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The installed bootstraps are read-only (0555 directories), which
        // only root could remove as they are.
        make_writable(&self.runtime_dir);
    }
}

/// [`Fixture::probe`] on a fresh fixture.
pub fn probe(kind: PeerBaseline) -> Result<(), BaselineError> {
    Fixture::new()?.probe(kind)
}

/// [`Fixture::first_invoke`] on a fresh fixture (which installs the
/// bootstraps each time: build a [`Fixture`] to run many trials).
pub fn first_invoke(kind: PeerBaseline) -> Result<FirstInvoke, BaselineError> {
    Fixture::new()?.first_invoke(kind)
}

/// [`Fixture::first_invokes`] on a fresh fixture.
pub fn first_invokes(kind: PeerBaseline, n: usize) -> Result<Vec<FirstInvoke>, BaselineError> {
    Fixture::new()?.first_invokes(kind, n)
}

/// [`Fixture::runtime_api_round_trips`] on a fresh fixture.
pub fn runtime_api_round_trips(n: usize) -> Result<Vec<Duration>, BaselineError> {
    Fixture::new()?.runtime_api_round_trips(n)
}

/// The arguments before the command for `bwrap`: the isolation a
/// bubblewrap-based platform would give a function.
///
/// New user, pid, ipc, uts and mount namespaces; the host's `/usr`, `/lib*`,
/// `/bin`, `/sbin` and `/etc` read-only (symlinks, as on a merged-`/usr`
/// host, recreated as symlinks); the bootstraps at `/var/runtime` and the
/// code at `/var/task`, read-only; a fresh `/tmp`, `/proc` and `/dev`;
/// `/var/task` as the working directory; the sandbox killed with `bwrap`.
/// The network namespace is the host's (see the module docs), so there is
/// no `--unshare-net`.
pub fn bwrap_args(runtime_dir: &Path, task_dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
    ]
    .map(OsString::from)
    .into();
    for host in HOST_DIRS {
        match host_dir(host) {
            HostDir::Symlink(target) => {
                args.extend(["--symlink".into(), target.into(), host.into()]);
            }
            HostDir::Dir => args.extend(["--ro-bind".into(), host.into(), host.into()]),
            HostDir::Missing => {}
        }
    }
    args.extend([
        "--ro-bind".into(),
        runtime_dir.into(),
        bootstrap::RUNTIME_DIR.into(),
        "--ro-bind".into(),
        task_dir.into(),
        bootstrap::TASK_ROOT.into(),
    ]);
    args.extend(
        [
            "--tmpfs",
            "/tmp",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--chdir",
            bootstrap::TASK_ROOT,
        ]
        .map(OsString::from),
    );
    args
}

/// The OCI runtime spec for a baseline container: `crun spec`'s defaults
/// (capabilities, masked and read-only `/proc` paths, `/dev`, `/dev/pts`,
/// `/dev/shm`, `/dev/mqueue`, `/sys` read-only, `noNewPrivileges`) as a
/// container-based platform starts from, with `args` and `env`, `/var/task`
/// as the working directory, a read-only root of `binds` (host path,
/// container path; read-only) and a fresh `/tmp`.
///
/// Left out on purpose: the `network` namespace (the bootstrap must reach
/// its Runtime API on the host's loopback, see the module docs), the
/// `/sys/fs/cgroup` mount and `linux.resources` (crun 1.8 cannot manage a
/// hybrid cgroup layout, see [`is_cgroup_hybrid`]). crun still puts the
/// container in a cgroup of its own in each v1 controller, named after the
/// container, and removes it with the container.
pub fn oci_config(
    args: &[String],
    env: &[String],
    binds: &[(PathBuf, String)],
) -> serde_json::Value {
    use serde_json::json;
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    mounts.extend(binds.iter().map(|(source, destination)| {
        json!({"destination": destination, "type": "bind", "source": source,
               "options": ["rbind", "ro", "nosuid", "nodev"]})
    }));
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": bootstrap::TASK_ROOT,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "hearth-bench",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

/// Whether this host mounts cgroup v1 controllers at `/sys/fs/cgroup` and
/// cgroup v2 at `/sys/fs/cgroup/unified` (the hybrid layout, even with no
/// controller in v2), which crun 1.8 refuses ("cgroups in hybrid mode not
/// supported"). crun is then started in a private mount namespace with a
/// tmpfs over `/sys/fs/cgroup/unified`, where it sees a v1-only host.
pub fn is_cgroup_hybrid() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let is_v2 = |p: &str| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
    is_v2(CGROUP_UNIFIED) && !is_v2("/sys/fs/cgroup")
}

/// Moves the calling thread into a private mount namespace (with its own
/// filesystem context, as a thread must) in which a tmpfs hides
/// `/sys/fs/cgroup/unified`; processes it spawns inherit that namespace.
/// Nothing propagates to the host, and the namespace and its tmpfs vanish
/// with the last process in it.
///
/// Done on a thread of its own rather than by wrapping crun in
/// `unshare -m sh -c 'mount -t tmpfs …; exec crun …'`, which works too but
/// adds three `exec`s (about 3.3 ms here) that no container platform pays.
fn hide_cgroup_unified() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("none"),
        CGROUP_UNIFIED,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k"),
    )
}

/// `program` with an empty environment: a started process gets exactly
/// what it is given (never this one's `PYTHONDONTWRITEBYTECODE`).
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    cmd
}

fn serve_runtime_api() -> Result<RuntimeApi, BaselineError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(io_error("bind a Runtime API listener"))?;
    RuntimeApi::serve(listener).map_err(io_error("serve the Runtime API"))
}

/// How a trial failed before its clean-up; made into a [`BaselineError`]
/// once the process's stderr has been collected.
#[derive(Debug)]
enum Failure {
    TimedOut(&'static str),
    Exited(&'static str, String),
    Runtime(String),
}

impl Failure {
    fn into_error(self, baseline: &'static str, stderr: String) -> BaselineError {
        match self {
            Self::TimedOut(stage) => BaselineError::TimedOut {
                baseline,
                stage,
                stderr,
            },
            Self::Exited(stage, status) => BaselineError::Exited {
                baseline,
                stage,
                status,
                stderr,
            },
            Self::Runtime(what) => BaselineError::Runtime {
                baseline,
                what,
                stderr,
            },
        }
    }
}

const INIT_STAGE: &str = "first GET /next";
const RESPONSE_STAGE: &str = "response to the invocation";

/// Waits for `process`'s first `next`, then hands it one invocation and
/// waits for its answer; both bounded by one [`TRIAL_TIMEOUT`] deadline.
async fn first_invoke_of(
    api: &RuntimeApi,
    process: &mut Process,
    trial: u64,
) -> Result<FirstInvoke, Failure> {
    let deadline = tokio::time::Instant::now() + TRIAL_TIMEOUT;
    let started = process.started;
    await_init(api, process, deadline).await?;
    let init = started.elapsed();
    let outcome = process
        .until_exit(RESPONSE_STAGE, deadline, api.invoke(invocation(trial)))
        .await?;
    let total = started.elapsed();
    expect_response(outcome)?;
    Ok(FirstInvoke { total, init })
}

async fn await_init(
    api: &RuntimeApi,
    process: &mut Process,
    deadline: tokio::time::Instant,
) -> Result<(), Failure> {
    match process.until_exit(INIT_STAGE, deadline, api.init()).await? {
        InitOutcome::Ready => Ok(()),
        InitOutcome::Failed { body, .. } => Err(Failure::Runtime(format!(
            "the runtime failed its init: {}",
            String::from_utf8_lossy(&body)
        ))),
        InitOutcome::Closed => Err(Failure::Runtime("the Runtime API closed".to_owned())),
    }
}

fn expect_response(outcome: InvokeOutcome) -> Result<(), Failure> {
    match outcome {
        InvokeOutcome::Response(_) => Ok(()),
        other => Err(Failure::Runtime(format!(
            "the invocation did not end in a response: {other:?}"
        ))),
    }
}

/// Initialises the resident `process`, then times `n` invocations from a
/// task on the runtime's workers, as the daemon's invoke path runs.
async fn round_trips(
    api: &RuntimeApi,
    process: &mut Process,
    n: usize,
) -> Result<Vec<Duration>, Failure> {
    await_init(api, process, tokio::time::Instant::now() + TRIAL_TIMEOUT).await?;
    let api = api.clone();
    let mut samples = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let inv = invocation(i as u64);
            let t = Instant::now();
            let outcome = tokio::time::timeout(TRIAL_TIMEOUT, api.invoke(inv))
                .await
                .map_err(|_| Failure::TimedOut(RESPONSE_STAGE))?;
            samples.push(t.elapsed());
            expect_response(outcome)?;
        }
        Ok(samples)
    });
    // The loop's own timeouts bound this wait; the process exiting ends it
    // early.
    let joined = tokio::select! {
        joined = &mut samples => joined,
        status = process.child.wait() => {
            samples.abort();
            return Err(Failure::Exited(RESPONSE_STAGE, describe_exit(status)));
        }
    };
    joined.map_err(|e| Failure::Runtime(format!("the timing task failed: {e}")))?
}

fn invocation(n: u64) -> Invocation {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let request_id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        n & 0xffff_ffff_ffff
    );
    Invocation::new(
        request_id,
        Bytes::from_static(b"{}"),
        now_ms + TRIAL_TIMEOUT.as_millis() as u64,
        FUNCTION_ARN,
    )
}

fn describe_exit(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// One started process (the bootstrap, or `bwrap` / `crun run` around it)
/// with its stderr collected and, for crun, its container. Dropped without
/// [`Process::stop`] (a panic), it still kills the process and deletes
/// the container; tokio reaps the process.
#[derive(Debug)]
struct Process {
    child: Child,
    started: Instant,
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: tokio::task::JoinHandle<()>,
    container: Option<Container>,
    baseline: &'static str,
}

impl Process {
    /// Spawns `cmd` (made by [`clean_command`]) with stdout discarded and
    /// stderr collected; inside [`hide_cgroup_unified`]'s namespace if
    /// `hide_unified`. Must run on the fixture's runtime.
    fn spawn(
        mut cmd: Command,
        container: Option<Container>,
        hide_unified: bool,
        baseline: &'static str,
    ) -> Result<Self, BaselineError> {
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = if hide_unified {
            let handle = tokio::runtime::Handle::current();
            // A short-lived thread, so that only it and what it spawns see
            // the private mount namespace.
            std::thread::spawn(move || {
                let _runtime = handle.enter();
                hide_cgroup_unified().map_err(|e| BaselineError::Io {
                    action: "give crun a cgroup v1-only view (a private mount namespace with a tmpfs over /sys/fs/cgroup/unified)".to_owned(),
                    source: e.into(),
                })?;
                let started = Instant::now();
                let child = cmd.spawn().map_err(io_error(format!("start {program}")))?;
                Ok((child, started))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(BaselineError::Io {
                    action: "start crun".to_owned(),
                    source: io::Error::other("the starting thread panicked"),
                })
            })
        } else {
            let started = Instant::now();
            cmd.spawn()
                .map(|child| (child, started))
                .map_err(io_error(format!("start {program}")))
        };
        let (mut child, started) = spawned?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drain = match child.stderr.take() {
            Some(pipe) => tokio::spawn(drain(pipe, stderr.clone())),
            None => tokio::spawn(async {}),
        };
        Ok(Self {
            child,
            started,
            stderr,
            drain,
            container,
            baseline,
        })
    }

    /// `fut`, unless the process exits or `deadline` passes first.
    async fn until_exit<T>(
        &mut self,
        stage: &'static str,
        deadline: tokio::time::Instant,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Failure> {
        tokio::select! {
            out = fut => Ok(out),
            status = self.child.wait() => Err(Failure::Exited(stage, describe_exit(status))),
            () = tokio::time::sleep_until(deadline) => Err(Failure::TimedOut(stage)),
        }
    }

    /// Deletes the container (which kills what runs in it), kills the
    /// process and reaps it, each step bounded.
    async fn stop(&mut self) -> Result<(), BaselineError> {
        let mut failed = Vec::new();
        if let Some(c) = &mut self.container {
            if let Err(e) = c.delete().await {
                failed.push(e);
            }
        }
        // Already gone if it exited; then this only reaps it.
        let _ = self.child.start_kill();
        match tokio::time::timeout(TRIAL_TIMEOUT, self.child.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failed.push(format!("cannot reap the process: {e}")),
            Err(_) => failed.push("the process outlived SIGKILL".to_owned()),
        }
        if let Some(c) = &self.container {
            if c.exists() {
                failed.push(format!("container {} still exists", c.id));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(BaselineError::Cleanup {
                baseline: self.baseline,
                reason: failed.join("; "),
            })
        }
    }

    /// The end of what the process wrote to stderr, as an error suffix
    /// (empty if nothing). Waits briefly for the pipe to close once the
    /// process is gone.
    async fn stderr_tail(&mut self) -> String {
        if tokio::time::timeout(Duration::from_secs(1), &mut self.drain)
            .await
            .is_err()
        {
            self.drain.abort();
        }
        let buf = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("; stderr: {}", &text[start..])
    }
}

/// Collects `pipe` into `buf`, keeping at most a few times [`STDERR_TAIL`].
async fn drain(mut pipe: tokio::process::ChildStderr, buf: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut buf = buf.lock().unwrap_or_else(PoisonError::into_inner);
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4 * STDERR_TAIL {
            let cut = buf.len() - 2 * STDERR_TAIL;
            buf.drain(..cut);
        }
    }
}

/// A crun container (possibly created) and its bundle; deleted on drop if
/// [`Container::delete`] has not run.
#[derive(Debug)]
struct Container {
    crun: PathBuf,
    state: PathBuf,
    id: String,
    deleted: bool,
    /// Removed after the container (fields drop in order).
    bundle: tempfile::TempDir,
}

impl Container {
    /// Whether crun still holds state for the container.
    fn exists(&self) -> bool {
        self.state.join(&self.id).exists()
    }

    /// `crun delete -f`: kills the container's processes, removes its
    /// cgroups and state. A container that `crun run` already removed is
    /// fine.
    async fn delete(&mut self) -> Result<(), String> {
        self.deleted = true;
        let out = clean_command(&self.crun)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "-f", &self.id])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(TRIAL_TIMEOUT, out).await {
            Ok(Ok(o)) if o.status.success() || !self.exists() => Ok(()),
            Ok(Ok(o)) => Err(format!(
                "crun delete -f {}: {}: {}",
                self.id,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("cannot run crun delete: {e}")),
            Err(_) => Err(format!("crun delete -f {} hung", self.id)),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.deleted || !self.exists() {
            return;
        }
        // Only after a panic mid-trial: block briefly rather than leave a
        // container running.
        let spawned = std::process::Command::new(&self.crun)
            .env_clear()
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "-f", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else {
            return;
        };
        let deadline = Instant::now() + TRIAL_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

enum HostDir {
    Dir,
    Symlink(PathBuf),
    Missing,
}

fn host_dir(path: &str) -> HostDir {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::read_link(path) {
            Ok(target) => HostDir::Symlink(target),
            Err(_) => HostDir::Missing,
        },
        Ok(m) if m.is_dir() => HostDir::Dir,
        _ => HostDir::Missing,
    }
}

/// `name` on `PATH`, or in the usual system directories (a service's `PATH`
/// may be minimal).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"].map(PathBuf::from))
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes a tree removable by its owner (best effort).
fn make_writable(p: &Path) {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
        if let Ok(entries) = fs::read_dir(p) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fixture() -> Option<Fixture> {
        match Fixture::new() {
            Ok(f) => Some(f),
            Err(e @ BaselineError::NotInstalled { .. }) => {
                eprintln!("skipped: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Two trials of `kind`, or `None` if its tool is absent here.
    fn two_trials(f: &Fixture, kind: PeerBaseline) -> Option<Vec<FirstInvoke>> {
        match f.first_invokes(kind, 2) {
            Ok(v) => Some(v),
            Err(e @ BaselineError::NotInstalled { .. }) => {
                eprintln!("skipped {kind}: {e}");
                None
            }
            Err(e) => panic!("{kind}: {e}"),
        }
    }

    fn check(f: &Fixture, kind: PeerBaseline) {
        let Some(trials) = two_trials(f, kind) else {
            return;
        };
        assert_eq!(trials.len(), 2);
        for t in &trials {
            assert!(t.init > Duration::ZERO && t.init <= t.total, "{t:?}");
        }
        assert_eq!(
            fs::read_dir(&f.crun_state).unwrap().count(),
            0,
            "no container left behind"
        );
    }

    #[test]
    fn fork_exec_answers_first_invocations() {
        if let Some(f) = fixture() {
            check(&f, PeerBaseline::ForkExec);
        }
    }

    #[test]
    fn bubblewrap_answers_first_invocations() {
        if let Some(f) = fixture() {
            check(&f, PeerBaseline::Bubblewrap);
        }
    }

    #[test]
    fn crun_answers_first_invocations() {
        let Some(f) = fixture() else {
            return;
        };
        check(&f, PeerBaseline::Crun);
        let bundles = fs::read_dir(f.dir.path())
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                e.file_name().to_string_lossy().starts_with("bundle-")
            })
            .count();
        assert_eq!(bundles, 0, "bundles are removed with their containers");
    }

    #[test]
    fn runtime_api_round_trips_through_a_resident_bootstrap() {
        let Some(f) = fixture() else {
            return;
        };
        let samples = f.runtime_api_round_trips(5).unwrap();
        assert_eq!(samples.len(), 5);
    }

    #[test]
    fn a_failing_runtime_is_reported_with_its_stderr() {
        let Some(f) = fixture() else {
            return;
        };
        fs::write(f.task_dir.join(HANDLER_MODULE), "import does_not_exist\n").unwrap();
        let err = f.first_invoke(PeerBaseline::ForkExec).unwrap_err();
        assert!(matches!(err, BaselineError::Runtime { .. }), "{err}");
        assert!(err.to_string().contains("does_not_exist"), "{err}");
    }

    #[test]
    fn the_fixture_removes_what_it_created() {
        let Some(f) = fixture() else {
            return;
        };
        let dir = f.dir.path().to_path_buf();
        f.first_invoke(PeerBaseline::ForkExec).unwrap();
        drop(f);
        assert!(!dir.exists());
    }

    #[test]
    fn bwrap_args_bind_what_exists() {
        let args: Vec<String> = bwrap_args(Path::new("/r"), Path::new("/t"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /r /var/runtime --ro-bind /t /var/task"));
        assert!(joined.ends_with("--chdir /var/task"));
        assert!(!joined.contains("--unshare-net"));
        assert!(joined.contains("/usr /usr"));
    }

    #[test]
    fn oci_config_shares_the_host_network() {
        let c = oci_config(
            &["/usr/bin/python3".into()],
            &["A=B".into()],
            &[(PathBuf::from("/t"), "/var/task".into())],
        );
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        assert!(c["linux"].get("resources").is_none());
        assert!(!c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "cgroup"));
    }

    /// `cargo test -p hearth-bench --release -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn measure_p50s() {
        let Some(f) = fixture() else {
            return;
        };
        let p50 = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let n = 20;
        let mut total: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let mut init: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let kinds: Vec<PeerBaseline> = PeerBaseline::ALL
            .into_iter()
            .filter(|&k| match f.probe(k) {
                Ok(()) => true,
                Err(e) => {
                    println!("{k}: skipped: {e}");
                    false
                }
            })
            .collect();
        // Interleaved, so every baseline sees the same machine.
        for _ in 0..n {
            for &k in &kinds {
                let t = f.first_invoke(k).unwrap();
                total.entry(k.name()).or_default().push(t.total);
                init.entry(k.name()).or_default().push(t.init);
            }
        }
        for k in &kinds {
            println!(
                "{:<20} first invoke p50 {:>8.2} ms  init p50 {:>8.2} ms  (n={n})",
                k.name(),
                p50(total[k.name()].clone()).as_secs_f64() * 1e3,
                p50(init[k.name()].clone()).as_secs_f64() * 1e3,
            );
        }
        let rt = f.runtime_api_round_trips(1000).unwrap();
        let mut sorted = rt.clone();
        sorted.sort();
        println!(
            "Runtime API round trip p50 {:.1} µs  p99 {:.1} µs  (n={})",
            p50(rt).as_secs_f64() * 1e6,
            sorted[sorted.len() * 99 / 100].as_secs_f64() * 1e6,
            sorted.len()
        );
    }
}
