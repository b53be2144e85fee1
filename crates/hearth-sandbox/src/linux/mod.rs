//! The Linux backend: namespaces, cgroups (v1 and v2), seccomp, `pivot_root`.
//!
//! Like Firecracker's jailer, the privileged setup is one small path that
//! ends in `exec`: the daemon (multi-threaded, so it never forks without
//! exec'ing) prepares the sandbox's cgroup and spawns the **launcher** — the
//! small `hearth-sandbox-init` binary, or its own binary as `hearth
//! sandbox-init`, see [`init_main`] — with a socketpair as stdin. The
//! launcher joins the v1 cgroups (by moving its one thread), enters a
//! network namespace the daemon made ahead (`netns.rs`) or makes one, sending
//! back the Runtime API listening socket (`127.0.0.1:9001` in it), unshares
//! its other namespaces and forks pid 1 (into the v2 cgroup:
//! `CLONE_INTO_CGROUP`), which builds the root, drops privileges, installs
//! seccomp and starts the runtime (ADR 0004, ADR 0017). `start` returns
//! once the runtime has been exec'd, with how long each stage took.
//!
//! **Warmth.** A spec with an empty `argv` gives a *shell-warm* sandbox: `start`
//! returns once pid 1 waits, and [`SandboxControl::exec`] later sends it the
//! program over the same socketpair (pid 1 inherited the launcher's end).
//! A spec without `task_root` gets, on the host, `<state_dir>/<id>/task`
//! bound onto itself as a shared mount in a peer group of its own; the
//! sandbox's `/var/task` is its slave, so the code that
//! [`SandboxControl::mount_task`] binds there later (read-only, from the
//! content-addressed unpacked directory every sandbox of that code shares)
//! appears inside without a copy. When the mount holding the state directory
//! is itself shared (systemd makes `/` shared), the backend first makes the
//! state directory a private mount, so these mounts stay out of the host's
//! other mount namespaces.
//!
//! ```no_run
//! use hearth_sandbox::linux::{LinuxBackend, LinuxConfig};
//! use hearth_sandbox::{SandboxBackend, SandboxSpec};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = LinuxBackend::new(LinuxConfig {
//!     state_dir: "/var/lib/hearth/sandboxes".into(),
//!     init_program: std::env::current_exe()?,
//!     init_args: vec!["sandbox-init".into()],
//!     ..LinuxConfig::default()
//! })?;
//! backend.reap_leftovers()?;
//! let sandbox = backend.start(&SandboxSpec {
//!     id: "sb1".into(),
//!     account_id: "000000000000".into(),
//!     memory_mb: 128,
//!     pids_max: 64,
//!     task_root: Some("/srv/code/abc".into()),
//!     opt_root: None,
//!     runtime_dir: None,
//!     tmp_mb: 512,
//!     argv: vec!["/usr/bin/python3".into(), "/var/task/main.py".into()],
//!     env: vec![("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into())],
//!     cwd: "/var/task".into(),
//!     runtime_channel: false,
//! })?;
//! let (conn, _) = sandbox.runtime_api.accept()?; // the runtime's first request
//! # drop(conn);
//! sandbox.control.destroy();
//! # Ok(()) }
//! ```
//!
//! Without root the backend uses a user namespace when the kernel allows
//! one (the sandbox's uid is then the daemon's on the host) and reports
//! what it cannot enforce in [`SandboxBackend::protections`].

mod cgroup;
mod launcher;
mod netns;
mod protocol;
mod rootfs;
mod runtime_fs;
mod seccomp;
mod sys;
mod uid;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{
    ExitStatus, Protections, Sandbox, SandboxBackend, SandboxControl, SandboxError, SandboxSpec,
};
use cgroup::{CgroupLayout, CgroupManager, HostCgroupFs, Limits, SandboxCgroup};
use protocol::{ExecRequest, IdMapping, LaunchRequest, ProbeReport, ProbeRequest, Report, Request};

pub use launcher::init_main;

/// Whether sandboxes get a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserNamespaceMode {
    /// Only when the daemon is not root (as root, each sandbox already has
    /// its own unprivileged host uid).
    #[default]
    Auto,
    /// Always. As root, the sandbox's uid maps to the same host uid (so the
    /// sandbox is unprivileged both inside and outside).
    Always,
    /// Never (without root, sandboxes then cannot be built).
    Never,
}

/// How the Linux backend is set up.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// Per-sandbox scratch (`<state_dir>/<id>/root` is the new root's mount
    /// point; `<state_dir>/<id>/task` the host side of a propagated
    /// `/var/task`) and the record of cgroups in use (`cgroups.json`).
    pub state_dir: PathBuf,
    /// The launcher program: the daemon's own binary.
    pub init_program: PathBuf,
    /// Its arguments, e.g. `["sandbox-init"]`.
    pub init_args: Vec<String>,
    /// Sandbox `n` runs as uid and gid `uid_base + n`.
    pub uid_base: u32,
    /// Name of the cgroup under the daemon's own that holds the sandboxes'.
    /// Two daemons in the same cgroup need different names.
    pub cgroup_name: String,
    pub user_namespace: UserNamespaceMode,
    /// How long `start` waits for the runtime to be exec'd.
    pub start_timeout: Duration,
}

/// `argv[0]` of the launcher, and so `/proc/1/cmdline` inside a sandbox.
pub const LAUNCHER_ARGV0: &str = "init";

impl Default for LinuxConfig {
    fn default() -> Self {
        LinuxConfig {
            state_dir: PathBuf::from("/var/lib/hearth/sandboxes"),
            init_program: PathBuf::from("/proc/self/exe"),
            init_args: vec!["sandbox-init".to_owned()],
            uid_base: 200_000,
            cgroup_name: "hearth".to_owned(),
            user_namespace: UserNamespaceMode::Auto,
            start_timeout: protocol::DEFAULT_START_TIMEOUT,
        }
    }
}

/// How a sandbox's ids are mapped, decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserNs {
    None,
    /// Root: the sandbox's uid maps to the same host uid (a helper writes it).
    Privileged,
    /// Not root: the sandbox's uid maps to the daemon's.
    SelfMapped {
        uid: u32,
        gid: u32,
    },
}

impl UserNs {
    fn mapping(self, uid: u32, gid: u32) -> Option<IdMapping> {
        match self {
            UserNs::None => None,
            UserNs::Privileged => Some(IdMapping {
                outside_uid: uid,
                outside_gid: gid,
                privileged: true,
            }),
            UserNs::SelfMapped { uid, gid } => Some(IdMapping {
                outside_uid: uid,
                outside_gid: gid,
                privileged: false,
            }),
        }
    }
}

/// The Linux sandbox backend.
#[derive(Debug)]
pub struct LinuxBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: LinuxConfig,
    cgroups: CgroupManager,
    seccomp: Vec<Vec<seccomp::WireInstruction>>,
    userns: UserNs,
    is_root: bool,
    protections: Protections,
    uids: Mutex<uid::UidAllocator>,
    /// Ids of the sandboxes this backend has started and not destroyed.
    live: Mutex<HashSet<String>>,
    /// Detached tmpfs copies of runtime directories (see [`runtime_fs`]),
    /// made on first use; `None` where one could not be made (the launcher
    /// then binds the directory itself).
    runtime_mounts: Mutex<HashMap<PathBuf, Option<Arc<OwnedFd>>>>,
    /// Network namespaces made ahead ([`netns`]); `None` where they cannot
    /// be (not root) or would not be used (a user namespace: the sandbox's
    /// network namespace must then belong to it).
    netns: Option<Arc<netns::NetnsPool>>,
}

impl Shared {
    /// The detached copy of `dir`, made once (as root only: the mount API
    /// needs CAP_SYS_ADMIN).
    fn runtime_mount(&self, dir: &Path) -> Option<Arc<OwnedFd>> {
        if !self.is_root {
            return None;
        }
        let mut mounts = self.runtime_mounts.lock();
        mounts
            .entry(dir.to_path_buf())
            .or_insert_with(|| match runtime_fs::detached_copy(dir) {
                Ok(fd) => Some(Arc::new(fd)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "cannot copy the bootstraps into a detached tmpfs; sandboxes bind the directory (its host path shows in their mountinfo)");
                    None
                }
            })
            .clone()
    }
}

const CGROUP_RECORD: &str = "cgroups.json";
/// How many network namespaces are kept made ahead: cold starts come one
/// at a time per placement, and the filler makes one in well under a
/// millisecond.
const NETNS_AHEAD: usize = 2;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CgroupRecord {
    parents: Vec<PathBuf>,
}

fn read_record(state_dir: &Path) -> CgroupRecord {
    std::fs::read(state_dir.join(CGROUP_RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_record(state_dir: &Path, record: &CgroupRecord) -> std::io::Result<()> {
    let tmp = state_dir.join(format!("{CGROUP_RECORD}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, state_dir.join(CGROUP_RECORD))
}

fn create_private_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl LinuxBackend {
    /// Detects what this host offers (cgroup layout, user namespaces,
    /// seccomp), prepares the cgroup parents and tries the launcher once.
    /// Fails only when the state directory or the seccomp policy is unusable;
    /// everything else becomes a warning in [`SandboxBackend::protections`].
    pub fn new(config: LinuxConfig) -> Result<Self, SandboxError> {
        // 0711: sandboxes' uids may traverse to their root's mount point,
        // nobody else can list it.
        create_private_dir(&config.state_dir, 0o711).map_err(|e| {
            SandboxError::Setup(format!(
                "cannot create the sandbox state directory {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let programs = seccomp::host_programs().map_err(SandboxError::Setup)?;
        let euid = nix::unistd::geteuid().as_raw();
        let is_root = euid == 0;
        let userns = match (config.user_namespace, is_root) {
            (UserNamespaceMode::Never, _) | (UserNamespaceMode::Auto, true) => UserNs::None,
            (UserNamespaceMode::Always, true) => UserNs::Privileged,
            (UserNamespaceMode::Always | UserNamespaceMode::Auto, false) => UserNs::SelfMapped {
                uid: euid,
                gid: nix::unistd::getegid().as_raw(),
            },
        };

        let layout = CgroupLayout::detect();
        let (cgroups, mut warnings) = CgroupManager::prepare(
            Arc::new(HostCgroupFs),
            &layout,
            &config.cgroup_name,
            std::process::id(),
        );
        let mut record = read_record(&config.state_dir);
        for p in cgroups.parents() {
            if !record.parents.contains(&p) {
                record.parents.push(p);
            }
        }
        if let Err(e) = write_record(&config.state_dir, &record) {
            warnings.push(format!(
                "cannot record the sandbox cgroups in {}: {e} (a restart may not find leftovers)",
                config.state_dir.display()
            ));
        }

        if is_root {
            if let Err(e) = isolate_state_dir(&config.state_dir) {
                warnings.push(format!(
                    "the host-side task mounts of sandboxes will propagate into other mount namespaces: {e}"
                ));
            }
        }

        let probe = run_probe(&config, userns, &seccomp::to_wire(programs));
        let (protections, seccomp_ok) = assess(&cgroups, userns, is_root, probe, warnings);
        let netns = (is_root && userns == UserNs::None && protections.can_isolate)
            .then(|| netns::NetnsPool::start(NETNS_AHEAD, launcher::RUNTIME_API_ADDR))
            .flatten();
        let shared = Shared {
            netns,
            seccomp: if seccomp_ok {
                seccomp::to_wire(programs)
            } else {
                Vec::new()
            },
            uids: Mutex::new(uid::UidAllocator::new(config.uid_base)),
            config,
            cgroups,
            userns,
            is_root,
            protections,
            live: Mutex::new(HashSet::new()),
            runtime_mounts: Mutex::new(HashMap::new()),
        };
        Ok(LinuxBackend {
            shared: Arc::new(shared),
        })
    }
}

/// Runs the launcher in probe mode: it tries the namespaces, procfs and the
/// seccomp filter in a throwaway process.
fn run_probe(
    config: &LinuxConfig,
    userns: UserNs,
    seccomp: &[Vec<seccomp::WireInstruction>],
) -> Result<ProbeReport, String> {
    let scratch = config.state_dir.join(".probe");
    let _ = std::fs::remove_dir(&scratch);
    create_private_dir(&scratch, 0o755)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let (uid, gid) = match userns {
        UserNs::SelfMapped { uid, gid } => (uid, gid),
        _ => (config.uid_base, config.uid_base),
    };
    let request = Request::Probe(ProbeRequest {
        user_namespace: userns.mapping(uid, gid),
        uid,
        gid,
        scratch_dir: scratch.clone(),
        seccomp: seccomp.to_vec(),
    });
    let result = (|| {
        let (mut child, sock) =
            spawn_launcher(config, &config.state_dir, Stdio::null(), Stdio::null())?;
        let answer = protocol::send(sock.as_fd(), &request, None)
            .map_err(|e| format!("cannot talk to the sandbox launcher: {e}"))
            .and_then(|()| {
                protocol::recv::<Report>(sock.as_fd(), Some(Instant::now() + config.start_timeout))
                    .map_err(|e| format!("the sandbox launcher did not answer: {e}"))
            });
        if answer.is_err() {
            let _ = child.kill();
        }
        let status = child.wait();
        match answer? {
            Some((Report::Probe(report), _)) => Ok(report),
            Some((other, _)) => Err(format!(
                "unexpected answer from the sandbox launcher: {other:?}"
            )),
            None => Err(format!(
                "the sandbox launcher {} exited without answering ({})",
                config.init_program.display(),
                status.map(|s| s.to_string()).unwrap_or_default()
            )),
        }
    })();
    let _ = std::fs::remove_dir(&scratch);
    result
}

/// Turns what detection and the probe found into [`Protections`]; returns
/// whether seccomp works.
fn assess(
    cgroups: &CgroupManager,
    userns: UserNs,
    is_root: bool,
    probe: Result<ProbeReport, String>,
    mut warnings: Vec<String>,
) -> (Protections, bool) {
    let unavailable = |what: &str, e: &str| format!("{what}: {e}");
    let (isolate, net, seccomp_ok) = match &probe {
        Ok(p) => {
            let isolate = match (&p.namespaces, &p.procfs) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(e), _) | (Ok(()), Err(e)) => Err(e.clone()),
            };
            if let Err(e) = &p.seccomp {
                warnings.push(unavailable(
                    "no seccomp filter in sandboxes",
                    &format!("{e}; the kernel needs CONFIG_SECCOMP_FILTER"),
                ));
            }
            (
                isolate,
                p.loopback.is_ok() && p.namespaces.is_ok(),
                p.seccomp.is_ok(),
            )
        }
        Err(e) => (Err(e.clone()), false, false),
    };
    if let Err(e) = &isolate {
        let advice = if is_root {
            "the kernel must offer mount, pid, ipc, uts, net and cgroup namespaces".to_owned()
        } else {
            userns_advice()
        };
        warnings.push(format!(
            "cannot isolate functions, so none will run: {e}; {advice}"
        ));
    }
    if let UserNs::SelfMapped { uid, .. } = userns {
        warnings.push(format!(
            "sandboxes run in a user namespace mapped to the daemon's own uid {uid}: every sandbox shares that host uid (an unprivileged daemon can map only itself), so a process escaping its sandbox acts as the daemon's user; run hearth as root for a private host uid per sandbox"
        ));
        if cgroups.pids.is_none() {
            warnings.push(
                "no pids limit and no RLIMIT_NPROC for sandboxes (the sandbox uid is shared with the daemon): a fork bomb is bounded only by the host; delegate a cgroup v2 subtree (systemd Delegate=yes)".to_owned(),
            );
        }
    }
    let protections = Protections {
        user_namespace: userns != UserNs::None && isolate.is_ok(),
        cgroup_version: cgroups.version().or_else(|| {
            cgroups.pids.as_ref().map(|s| match s.version {
                cgroup::CgroupVersion::V1 => 1,
                cgroup::CgroupVersion::V2 => 2,
            })
        }),
        memory_limit: cgroups.memory.is_some(),
        pids_limit: cgroups.pids.is_some(),
        cpu_weight: cgroups.cpu.is_some(),
        seccomp: seccomp_ok,
        network_namespace: net,
        warnings,
        can_isolate: isolate.is_ok(),
    };
    (protections, seccomp_ok)
}

/// What to do when unprivileged user namespaces are off, from the sysctls.
fn userns_advice() -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let mut steps = Vec::new();
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        steps.push("sysctl user.max_user_namespaces=15000");
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        steps.push("sysctl kernel.unprivileged_userns_clone=1");
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        steps.push("sysctl kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile allowing userns for hearth)");
    }
    if steps.is_empty() {
        "run hearth as root, or allow unprivileged user namespaces".to_owned()
    } else {
        format!(
            "run hearth as root, or allow unprivileged user namespaces: {}",
            steps.join(", ")
        )
    }
}

/// Spawns the launcher with a fresh socketpair as its stdin; returns the
/// child and the daemon's end.
fn spawn_launcher(
    config: &LinuxConfig,
    cwd: &Path,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<(Child, OwnedFd), String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let mut cmd = Command::new(&config.init_program);
    // The launcher becomes the sandbox's pid 1, whose command line every
    // process inside can read: it names nothing of the host.
    cmd.arg0(LAUNCHER_ARGV0)
        .args(&config.init_args)
        .env_clear()
        .current_dir(cwd)
        .stdin(Stdio::from(theirs))
        .stdout(stdout)
        .stderr(stderr);
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot run the sandbox launcher {}: {e}",
            config.init_program.display()
        )
    })?;
    // `cmd` holds the launcher's end; dropping it lets EOF mean "launcher gone".
    drop(cmd);
    Ok((child, ours))
}

/// What a sandbox needs on the host besides its directory: the host-side
/// task and opt mounts (without `task_root`), and its cgroups with their
/// limits. Recorded in `res` as they are made, so `res.release` undoes them.
fn prepare_host(res: &mut Resources, spec: &SandboxSpec) -> Result<(), String> {
    if spec.task_root.is_none() {
        let task = res.dir.join("task");
        make_task_mount(&task)?;
        res.task_mount = Some(task);
        let opt = res.dir.join("opt");
        make_task_mount(&opt)?;
        res.opt_mount = Some(opt);
    }
    let cgroups = &res.shared.cgroups;
    if !cgroups.parents().is_empty() {
        res.cgroup = Some(cgroups.create(
            &spec.id,
            Limits {
                memory_mb: spec.memory_mb,
                pids_max: spec.pids_max,
            },
        )?);
    }
    Ok(())
}

/// How long each stage of a start took: the daemon's preparation (state
/// directory, mounts for the code, cgroups with their limits), then each
/// launcher stage up to the runtime's exec (`await_request`: from its
/// `main` to its request read), then the report of it reaching the daemon.
/// `marks` are the launcher's stage ends, in order.
fn stage_durations(
    started_ns: u64,
    spawning_ns: u64,
    marks: &[(String, u64)],
) -> Vec<(String, Duration)> {
    let ns = |a: u64, b: u64| Duration::from_nanos(b.saturating_sub(a));
    let mut out = vec![("host_prepare".to_owned(), ns(started_ns, spawning_ns))];
    let mut last = spawning_ns;
    for (name, at) in marks {
        out.push((name.clone(), ns(last, *at)));
        last = *at;
    }
    out.push(("ready_report".to_owned(), ns(last, sys::monotonic_ns())));
    out
}

fn validate(spec: &SandboxSpec) -> Result<(), String> {
    let id_ok = !spec.id.is_empty()
        && spec.id.len() <= 40
        && spec
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(format!(
            "invalid sandbox id {:?} (want [a-z0-9-], at most 40)",
            spec.id
        ));
    }
    // A shell-warm sandbox's program, and its working directory, come later.
    if !spec.argv.is_empty() && !spec.cwd.starts_with('/') {
        return Err(format!(
            "the working directory {:?} is not absolute",
            spec.cwd
        ));
    }
    if spec.memory_mb == 0 || spec.tmp_mb == 0 {
        return Err("memory_mb and tmp_mb must be at least 1".to_owned());
    }
    // The launcher and the sandbox's init count against the pids limit too.
    if spec.pids_max < 3 {
        return Err(format!(
            "pids_max {} is below 3 (launcher, init, runtime)",
            spec.pids_max
        ));
    }
    let dirs = (spec.task_root.iter().map(|d| ("task_root", d)))
        .chain(spec.opt_root.iter().map(|d| ("opt_root", d)))
        .chain(spec.runtime_dir.iter().map(|d| ("runtime_dir", d)));
    for (what, d) in dirs {
        if !d.is_absolute() || !d.is_dir() {
            return Err(format!(
                "{what} {} is not an absolute path to a directory",
                d.display()
            ));
        }
    }
    Ok(())
}

/// What one sandbox holds on the host, released exactly once.
#[derive(Debug)]
struct Resources {
    shared: Arc<Shared>,
    id: String,
    uid: u32,
    dir: PathBuf,
    cgroup: Option<SandboxCgroup>,
    /// `<dir>/task`, once it is a shared mount (a sandbox without `task_root`).
    task_mount: Option<PathBuf>,
    /// `<dir>/opt`, likewise, for the function's layers.
    opt_mount: Option<PathBuf>,
}

impl Resources {
    fn release(&self) {
        let sh = &self.shared;
        if let Some(cg) = &self.cgroup {
            if !sh.cgroups.kill_all(cg, &sys::kill_pid) {
                tracing::warn!(sandbox = %self.id, "processes remain in the sandbox's cgroup after SIGKILL");
            }
            if let Err(e) = sh.cgroups.remove(cg) {
                tracing::warn!(sandbox = %self.id, "{e}");
            }
        }
        // Never remove a directory that may still have the shared code
        // mounted below it. (Tried whatever `task_mount` says: the directory
        // may be a leftover that `launch` refused to reuse.)
        let mut unmounted = true;
        for task in [self.dir.join("task"), self.dir.join("opt")] {
            if let Err(e) = unmount_all_at(&task) {
                tracing::warn!(sandbox = %self.id, "cannot unmount {}: {e}; leaving it", task.display());
                unmounted = false;
            }
        }
        if unmounted {
            match std::fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(sandbox = %self.id, "cannot remove {}: {e}", self.dir.display())
                }
                _ => {}
            }
        }
        sh.uids.lock().release(self.uid);
        sh.live.lock().remove(&self.id);
    }
}

/// Makes `<dir>/task` the host side of a propagated `/var/task`: a directory
/// bound onto itself and made shared in a peer group of its own (private
/// first: a bind of a shared mount would join the peer group of the mount
/// holding the state directory).
fn make_task_mount(task: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let none: Option<&str> = None;
    create_private_dir(task, 0o755)
        .map_err(|e| format!("cannot create {}: {e}", task.display()))?;
    mount(Some(task), task, none, MsFlags::MS_BIND, none)
        .map_err(|e| format!("cannot bind {} onto itself: {e}", task.display()))?;
    let made = mount(none, task, none, MsFlags::MS_PRIVATE, none)
        .and_then(|()| mount(none, task, none, MsFlags::MS_SHARED, none));
    made.map_err(|e| {
        let _ = unmount_all_at(task);
        format!("cannot make {} a shared mount: {e}", task.display())
    })
}

/// Lazily unmounts everything mounted at `path` (stacked mounts one by one,
/// each taking its submounts along) until nothing is: `Ok` means `path` is
/// a plain directory again (or gone).
fn unmount_all_at(path: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    for _ in 0..64 {
        match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // Not a mount point (any more), or no such directory.
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other("still mounted after 64 unmounts"))
}

/// When the mount holding `state_dir` is shared, every mount made under it
/// would also appear in the mount namespaces of its peers (on a systemd host:
/// every service with a namespace of its own). Binding the state directory
/// onto itself as a private mount stops that; an existing mount there is just
/// made private.
fn isolate_state_dir(state_dir: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let none: Option<&str> = None;
    let dir = std::fs::canonicalize(state_dir).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    // The mount that holds `dir`: the deepest mount point above it, the
    // last listed of those stacked there.
    let holder = cgroup::parse_mountinfo(&text)
        .into_iter()
        .filter(|m| dir.starts_with(&m.mount_point))
        .fold(None::<cgroup::MountInfo>, |best, m| match best {
            Some(b) if b.mount_point.components().count() > m.mount_point.components().count() => {
                Some(b)
            }
            _ => Some(m),
        })
        .ok_or("no mount holds it")?;
    if holder.mount_point == dir {
        return mount(none, &dir, none, MsFlags::MS_PRIVATE, none)
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()));
    }
    if !holder.is_shared() {
        return Ok(());
    }
    mount(
        Some(&dir),
        &dir,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| format!("cannot bind {} onto itself: {e}", dir.display()))?;
    mount(
        none,
        &dir,
        none,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none,
    )
    .map_err(|e| format!("cannot make {} private: {e}", dir.display()))
}

/// The handle of one running sandbox.
#[derive(Debug)]
struct LinuxSandboxControl {
    res: Resources,
    child: Mutex<Child>,
    /// Names the launcher without pid-reuse races, for polling and killing.
    pidfd: OwnedFd,
    status: Mutex<Option<ExitStatus>>,
    destroyed: Mutex<bool>,
    /// Started without `argv`.
    shell_warm: bool,
    /// The daemon's end of the launcher's socketpair, kept while a
    /// shell-warm sandbox's init waits for its program; `exec` takes it.
    control: Mutex<Option<OwnedFd>>,
    /// The memory cgroup's peak-usage file, opened at the first read and
    /// re-read in place (`pread` at 0 regenerates it): one syscall per
    /// invocation's REPORT, not a path walk, open and close.
    peak_file: Mutex<Option<std::fs::File>>,
    /// `mount_task` has succeeded.
    task_mounted: Mutex<bool>,
    /// `mount_opt` has succeeded.
    opt_mounted: Mutex<bool>,
}

impl LinuxSandboxControl {
    fn kill_launcher(&self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }
}

impl LinuxSandboxControl {
    /// Binds `dir` read-only on the host-side shared mount `host`, which
    /// the sandbox's `inside` receives by propagation; once.
    fn mount_propagated(
        &self,
        dir: &Path,
        host: Option<&Path>,
        done: &Mutex<bool>,
        inside: &str,
    ) -> Result<(), SandboxError> {
        let fail = |m: String| SandboxError::Setup(m);
        let Some(task) = host else {
            return Err(fail(format!(
                "sandbox {} was started with a task_root; {inside} cannot be mounted later",
                self.res.id
            )));
        };
        if !dir.is_absolute() || !dir.is_dir() {
            return Err(fail(format!(
                "{} is not an absolute path to a directory",
                dir.display()
            )));
        }
        // Held throughout: destroy waits, so it never removes the directory
        // between the check and the mount.
        let destroyed = self.destroyed.lock();
        if *destroyed {
            return Err(fail(format!("sandbox {} is destroyed", self.res.id)));
        }
        let mut mounted = done.lock();
        if *mounted {
            return Err(fail(format!(
                "sandbox {} already has {inside} mounted",
                self.res.id
            )));
        }
        sys::bind_ro_detached(dir, task).map_err(|e| {
            fail(format!(
                "cannot mount {} on {}: {e}{}",
                dir.display(),
                task.display(),
                if e.raw_os_error() == Some(libc::ENOSYS) {
                    " (needs Linux 5.12 or later)"
                } else {
                    ""
                }
            ))
        })?;
        *mounted = true;
        Ok(())
    }
}

impl SandboxControl for LinuxSandboxControl {
    fn exec(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: &str,
    ) -> Result<(), SandboxError> {
        let fail = |m: String| SandboxError::Setup(m);
        if !self.shell_warm {
            return Err(fail(format!(
                "sandbox {} was started with a program; exec is for shell-warm sandboxes",
                self.res.id
            )));
        }
        // Refused here, a bad command leaves the sandbox waiting.
        launcher::exec_plan(argv, env, cwd).map_err(fail)?;
        let Some(sock) = self.control.lock().take() else {
            return Err(fail(format!(
                "sandbox {} has already been given its program",
                self.res.id
            )));
        };
        let request = Request::Exec(ExecRequest {
            argv: argv.to_vec(),
            env: env.to_vec(),
            cwd: cwd.to_owned(),
        });
        protocol::send(sock.as_fd(), &request, None)
            .map_err(|e| fail(format!("cannot send the program to the sandbox: {e}")))?;
        let timeout = self.res.shared.config.start_timeout;
        match protocol::recv::<Report>(sock.as_fd(), Some(Instant::now() + timeout)) {
            Ok(Some((Report::Ready { .. }, _))) => Ok(()),
            Ok(Some((Report::Error { message }, _))) => Err(fail(message)),
            Ok(Some((other, _))) => Err(fail(format!(
                "unexpected message from the sandbox: {other:?}"
            ))),
            Ok(None) => Err(fail(format!(
                "the sandbox ended before its program started ({:?})",
                self.wait()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(fail(format!(
                "the sandbox's program did not start within {timeout:?}"
            ))),
            Err(e) => Err(fail(format!("cannot read from the sandbox: {e}"))),
        }
    }

    fn mount_task(&self, dir: &Path) -> Result<(), SandboxError> {
        self.mount_propagated(
            dir,
            self.res.task_mount.as_deref(),
            &self.task_mounted,
            "/var/task",
        )
    }

    fn mount_opt(&self, dir: &Path) -> Result<(), SandboxError> {
        self.mount_propagated(
            dir,
            self.res.opt_mount.as_deref(),
            &self.opt_mounted,
            "/opt",
        )
    }

    fn set_memory_limit(&self, mb: u32) -> Result<(), SandboxError> {
        if mb == 0 {
            return Err(SandboxError::Setup(
                "the memory limit must be at least 1 MiB".to_owned(),
            ));
        }
        let Some(cg) = &self.res.cgroup else {
            return Ok(());
        };
        self.res
            .shared
            .cgroups
            .set_memory_limit(cg, mb)
            .map_err(SandboxError::Setup)
    }

    fn pss_bytes(&self) -> Option<u64> {
        let cg = self.res.cgroup.as_ref()?;
        let pids = cgroup::pids_in(self.res.shared.cgroups.fs(), &cg.dirs());
        let mut total: Option<u64> = None;
        for pid in pids {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
                continue;
            };
            if let Some(kb) = pss_kib(&text) {
                total = Some(total.unwrap_or(0) + kb * 1024);
            }
        }
        total
    }

    fn wait(&self) -> ExitStatus {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            // A pidfd turns readable when the process exits; block without
            // holding a lock so other threads can try_wait or destroy.
            let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::NONE);
        }
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        if let Some(s) = *self.status.lock() {
            return Some(s);
        }
        let mut child = self.child.lock();
        let status = match child.try_wait() {
            Ok(Some(st)) => match (st.code(), st.signal()) {
                (Some(c), _) => ExitStatus::Code(c),
                (None, Some(s)) => ExitStatus::Signal(s),
                (None, None) => ExitStatus::Code(255),
            },
            Ok(None) => return None,
            // Reaped elsewhere (cannot happen: only this handle waits).
            Err(_) => ExitStatus::Code(255),
        };
        *self.status.lock() = Some(status);
        Some(status)
    }

    fn peak_memory_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        let cg = self.res.cgroup.as_ref()?;
        let mut file = self.peak_file.lock();
        if file.is_none() {
            *file = self
                .res
                .shared
                .cgroups
                .peak_memory_path(cg)
                .and_then(|p| std::fs::File::open(p).ok());
        }
        let Some(f) = file.as_ref() else {
            return self.res.shared.cgroups.peak_memory(cg);
        };
        let mut buf = [0u8; 32];
        let n = f.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    fn oom_killed(&self) -> bool {
        self.res
            .cgroup
            .as_ref()
            .is_some_and(|cg| self.res.shared.cgroups.oom_killed(cg))
    }

    fn destroy(&self) {
        let mut destroyed = self.destroyed.lock();
        if *destroyed {
            return;
        }
        // Killing the launcher kills pid 1 (its parent-death signal), which
        // takes the whole pid namespace; the cgroup catches anything else.
        self.kill_launcher();
        if let Some(cg) = &self.res.cgroup {
            self.res.shared.cgroups.kill_all(cg, &sys::kill_pid);
        }
        self.wait();
        self.res.release();
        *destroyed = true;
    }
}

impl Drop for LinuxSandboxControl {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl LinuxBackend {
    fn launch(&self, spec: &SandboxSpec) -> Result<Sandbox, String> {
        let sh = &self.shared;
        let started_ns = sys::monotonic_ns();
        validate(spec)?;
        if spec.task_root.is_none() && !sh.is_root {
            return Err(
                "a sandbox without task_root needs a root daemon (its code is mounted from the host side)"
                    .to_owned(),
            );
        }
        if !sh.live.lock().insert(spec.id.clone()) {
            return Err(format!("a sandbox {} is already running", spec.id));
        }
        let Some(uid) = sh.uids.lock().alloc() else {
            sh.live.lock().remove(&spec.id);
            return Err("no free sandbox uid".to_owned());
        };
        let mut res = Resources {
            shared: sh.clone(),
            id: spec.id.clone(),
            uid,
            dir: sh.config.state_dir.join(&spec.id),
            cgroup: None,
            task_mount: None,
            opt_mount: None,
        };
        let mut spawning_ns = started_ns;
        let prepared = (|| {
            if res.dir.exists() {
                return Err(format!(
                    "{} exists (a leftover? reap first)",
                    res.dir.display()
                ));
            }
            create_private_dir(&res.dir, 0o711)
                .and_then(|()| create_private_dir(&res.dir.join("root"), 0o755))
                .map_err(|e| format!("cannot create {}: {e}", res.dir.display()))?;
            // Made before the launcher is spawned: made while it loads,
            // they competed with its exec for the CPU and the cgroup lock,
            // and the start took longer (bench first-invoke: the daemon's
            // preparation, the exec and the wait for the request 1.30 ms
            // in sequence, 1.71 ms overlapped).
            prepare_host(&mut res, spec)?;
            spawning_ns = sys::monotonic_ns();
            spawn_launcher(&sh.config, &res.dir, Stdio::piped(), Stdio::piped())
        })();
        let (mut child, sock) = match prepared {
            Ok(x) => x,
            Err(e) => {
                res.release();
                return Err(e);
            }
        };
        let pidfd = match sys::pidfd_open(child.id() as i32) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                res.release();
                return Err(format!("pidfd_open: {e}"));
            }
        };
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        let control = LinuxSandboxControl {
            res,
            child: Mutex::new(child),
            pidfd,
            status: Mutex::new(None),
            destroyed: Mutex::new(false),
            shell_warm: spec.argv.is_empty(),
            control: Mutex::new(None),
            task_mounted: Mutex::new(false),
            opt_mounted: Mutex::new(false),
            peak_file: Mutex::new(None),
        };
        // From here on, dropping `control` on an error destroys everything.
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err("the launcher's output pipes are missing".to_owned());
        };
        // A network namespace made ahead: its listener is the Runtime API's,
        // its descriptor goes to the launcher and is closed here once sent.
        let ahead = sh.netns.as_ref().and_then(|p| p.take());
        let request = Request::Launch(Box::new(LaunchRequest {
            spec: spec.clone(),
            uid,
            gid: uid,
            cgroups: control
                .res
                .cgroup
                .as_ref()
                .map(SandboxCgroup::joins)
                .transpose()?
                .unwrap_or_default(),
            root_dir: control.res.dir.join("root"),
            task_mount: control.res.task_mount.clone(),
            opt_mount: control.res.opt_mount.clone(),
            user_namespace: sh.userns.mapping(uid, uid),
            seccomp: sh.seccomp.clone(),
            nproc_limit: (sh.is_root && sh.userns == UserNs::None)
                .then_some(u64::from(spec.pids_max)),
            runtime_mount: None,
            pooled_netns: ahead.is_some(),
            netns: None,
            channel: None,
        }));
        // The program's Unix socket to the Runtime API: its end travels to
        // the launcher (closed here once sent), ours is served as a
        // connection.
        let channel = if spec.runtime_channel {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| format!("cannot make the Runtime API channel: {e}"))?;
            Some((ours, OwnedFd::from(theirs)))
        } else {
            None
        };
        let runtime_mount = spec
            .runtime_dir
            .as_deref()
            .and_then(|d| sh.runtime_mount(d));
        let fds: Vec<std::os::fd::BorrowedFd<'_>> = runtime_mount
            .as_deref()
            .map(AsFd::as_fd)
            .into_iter()
            .chain(channel.as_ref().map(|(_, theirs)| theirs.as_fd()))
            .chain(ahead.as_ref().map(|n| n.ns.as_fd()))
            .collect();
        protocol::send_all(sock.as_fd(), &request, &fds)
            .map_err(|e| format!("cannot send the launch request: {e}"))?;
        drop(fds);
        let runtime_channel = channel.map(|(ours, _)| ours);
        let deadline = Instant::now() + sh.config.start_timeout;
        let mut listener = ahead.map(|n| n.listener);
        let mut start_stages = Vec::new();
        loop {
            match protocol::recv::<Report>(sock.as_fd(), Some(deadline)) {
                Ok(Some((Report::Listener, Some(fd)))) => {
                    listener = Some(std::net::TcpListener::from(fd));
                }
                Ok(Some((Report::Ready { stages }, _))) if !control.shell_warm => {
                    start_stages = stage_durations(started_ns, spawning_ns, &stages);
                    break;
                }
                Ok(Some((Report::Waiting, _))) if control.shell_warm => break,
                Ok(Some((Report::Error { message }, _))) => return Err(message),
                Ok(Some((other, _))) => {
                    return Err(format!("unexpected message from the launcher: {other:?}"))
                }
                Ok(None) => {
                    let status = control.wait();
                    return Err(format!(
                        "the sandbox launcher exited before the runtime started ({status:?})"
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(format!(
                        "the sandbox did not start within {:?}",
                        sh.config.start_timeout
                    ))
                }
                Err(e) => return Err(format!("cannot read from the launcher: {e}")),
            }
        }
        let runtime_api = listener.ok_or("the launcher sent no Runtime API socket")?;
        if control.shell_warm {
            *control.control.lock() = Some(sock);
        }
        Ok(Sandbox {
            id: spec.id.clone(),
            start_stages,
            runtime_api,
            runtime_channel,
            stdout,
            stderr,
            uid,
            control: Box::new(control),
        })
    }
}

impl SandboxBackend for LinuxBackend {
    fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let p = &self.shared.protections;
        if !p.can_isolate {
            let why = p
                .warnings
                .iter()
                .find(|w| w.starts_with("cannot isolate"))
                .cloned()
                .unwrap_or_else(|| "namespaces are unavailable".to_owned());
            return Err(SandboxError::Unsupported(why));
        }
        self.launch(spec).map_err(SandboxError::Setup)
    }

    fn protections(&self) -> Protections {
        self.shared.protections.clone()
    }

    fn reap_leftovers(&self) -> Result<usize, SandboxError> {
        let sh = &self.shared;
        let live = sh.live.lock().clone();
        let state_dir = &sh.config.state_dir;
        let mut reaped: BTreeSet<String> = BTreeSet::new();

        // Launchers of an earlier run: their working directory is their
        // sandbox's state directory. Killing one kills its pid namespace.
        for (pid, id) in launchers_under(state_dir) {
            if !live.contains(&id) {
                sys::kill_pid(pid);
                reaped.insert(id);
            }
        }

        // Cgroups under every parent this daemon (or an earlier one) used.
        let record = read_record(state_dir);
        let current = sh.cgroups.parents();
        let mut parents = current.clone();
        for p in &record.parents {
            if !parents.contains(p) {
                parents.push(p.clone());
            }
        }
        let fs = sh.cgroups.fs();
        for (name, dirs) in sh.cgroups.leftovers(&parents) {
            if live.contains(&name) {
                continue;
            }
            if !cgroup::kill_dirs(fs, &dirs, &sys::kill_pid) {
                tracing::warn!(sandbox = %name, "processes survive SIGKILL in a leftover cgroup");
            }
            cgroup::remove_dirs(fs, &dirs).map_err(SandboxError::Setup)?;
            reaped.insert(name);
        }
        for old in record.parents.iter().filter(|p| !current.contains(p)) {
            let _ = fs.rmdir(old);
        }
        let _ = write_record(state_dir, &CgroupRecord { parents: current });

        // Mounts: the host-side task mounts (and the code mounted on them)
        // of sandboxes that are not live, and anything else that reached
        // the host under state_dir. Never the state directory itself.
        unmount_under(state_dir, &live);
        let still_mounted = mount_points_under(state_dir);
        for entry in std::fs::read_dir(state_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || live.contains(&name) {
                continue;
            }
            let path = entry.path();
            if let Some(m) = still_mounted.iter().find(|m| m.starts_with(&path)) {
                tracing::warn!(sandbox = %name, "{} is still mounted; leaving {}", m.display(), path.display());
                continue;
            }
            std::fs::remove_dir_all(&path)?;
            if name != ".probe" {
                reaped.insert(name);
            }
        }
        Ok(reaped.len())
    }
}

/// Processes whose working directory is `<state_dir>/<id>[/...]`: launchers
/// (pid 1s and runtimes have pivoted away; they die with their launcher).
fn launchers_under(state_dir: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) else {
            continue;
        };
        if let Ok(rest) = cwd.strip_prefix(state_dir) {
            if let Some(id) = rest.components().next() {
                out.push((pid, id.as_os_str().to_string_lossy().into_owned()));
            }
        }
    }
    out
}

/// Host mount points strictly below `dir` (as `dir` is named: the
/// returned paths start with it even if it is not canonical).
fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    cgroup::parse_mountinfo(&text)
        .into_iter()
        .filter_map(|m| {
            let rest = m.mount_point.strip_prefix(&real).ok()?;
            (!rest.as_os_str().is_empty()).then(|| dir.join(rest))
        })
        .collect()
}

/// Lazily unmounts every host mount strictly below `dir` that does not
/// belong to a live sandbox (`<dir>/<live id>/...`), deepest first; stacked
/// mounts are listed once each, so each gets its own unmount.
fn unmount_under(dir: &Path, live: &HashSet<String>) {
    let mut points: Vec<PathBuf> = mount_points_under(dir)
        .into_iter()
        .filter(|p| {
            p.strip_prefix(dir)
                .ok()
                .and_then(|rest| rest.components().next())
                .is_none_or(|id| !live.contains(id.as_os_str().to_string_lossy().as_ref()))
        })
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            // Gone with a mount above it, detached first.
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => tracing::warn!("cannot unmount leftover {}: {e}", p.display()),
        }
    }
}

/// The `Pss:` line of a `smaps_rollup`, KiB.
fn pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|l| {
        let rest = l.strip_prefix("Pss:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(task: &Path) -> SandboxSpec {
        SandboxSpec {
            id: "sb-1".into(),
            account_id: "a".into(),
            memory_mb: 128,
            pids_max: 16,
            task_root: Some(task.to_path_buf()),
            opt_root: None,
            runtime_dir: None,
            tmp_mb: 8,
            argv: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/var/task".into(),
            runtime_channel: false,
        }
    }

    #[test]
    fn specs_are_validated() {
        let t = tempfile::tempdir().unwrap();
        assert!(validate(&spec(t.path())).is_ok());
        let mut s = spec(t.path());
        s.id = "Bad_Id".into();
        assert!(validate(&s).is_err());
        let mut s = spec(t.path());
        s.id = "a".repeat(41);
        assert!(validate(&s).is_err());
        let mut s = spec(t.path());
        s.task_root = Some("relative".into());
        assert!(validate(&s).is_err());
        let mut s = spec(t.path());
        s.task_root = None;
        assert!(validate(&s).is_ok());
        let mut s = spec(t.path());
        s.cwd = "var/task".into();
        assert!(validate(&s).is_err());
        let mut s = spec(t.path());
        s.pids_max = 2;
        assert!(validate(&s).is_err());
        // No program: a shell-warm sandbox (its cwd comes with exec).
        let mut s = spec(t.path());
        s.argv.clear();
        s.cwd = String::new();
        assert!(validate(&s).is_ok());
    }

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        let text =
            "55d0c0a00000-7ffd4b1f6000 ---p 00000000 00:00 0                          [rollup]
Rss:                9316 kB
Pss:                2417 kB
Pss_Dirty:          1220 kB
Pss_Anon:           1204 kB
Pss_File:           1213 kB
";
        assert_eq!(pss_kib(text), Some(2417));
        assert_eq!(pss_kib("Rss: 1 kB\n"), None);
    }

    #[test]
    fn userns_mappings() {
        assert_eq!(UserNs::None.mapping(5, 5), None);
        assert_eq!(
            UserNs::Privileged.mapping(200_001, 200_001),
            Some(IdMapping {
                outside_uid: 200_001,
                outside_gid: 200_001,
                privileged: true
            })
        );
        assert_eq!(
            UserNs::SelfMapped {
                uid: 1000,
                gid: 100
            }
            .mapping(200_001, 200_001),
            Some(IdMapping {
                outside_uid: 1000,
                outside_gid: 100,
                privileged: false
            })
        );
    }

    #[test]
    fn cgroup_record_round_trips() {
        let t = tempfile::tempdir().unwrap();
        assert!(read_record(t.path()).parents.is_empty());
        write_record(
            t.path(),
            &CgroupRecord {
                parents: vec!["/a/hearth".into()],
            },
        )
        .unwrap();
        assert_eq!(
            read_record(t.path()).parents,
            vec![PathBuf::from("/a/hearth")]
        );
    }
}
