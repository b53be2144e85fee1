//! The launcher: the privileged path from "the daemon exec'd me" to "the
//! runtime is running, isolated". It runs as a fresh, single-threaded exec
//! of the daemon's binary (`hearth sandbox-init`), in three stages:
//!
//! 1. **outer** (host pid namespace): reads the [`LaunchRequest`] from stdin
//!    (the daemon's socketpair), joins the sandbox's cgroups, unshares the
//!    mount, pid, ipc, uts, net and cgroup namespaces (and the user namespace
//!    when configured), brings `lo` up, listens on `127.0.0.1:9001` and sends
//!    that socket to the daemon, then forks pid 1 and waits for it. It exits
//!    the way the runtime did (same code, or killed by the same signal), so
//!    the daemon's child status is the runtime's.
//! 2. **init** (pid 1 of the new pid namespace): builds the root and pivots
//!    into it, drops every privilege, installs the seccomp filter, forks the
//!    runtime, tells the daemon `Ready` once the exec succeeded, then reaps
//!    until the runtime exits and exits with its status — the kernel then
//!    kills whatever else is left in the namespace. A **shell-warm** sandbox
//!    (empty `spec.argv`) reports `Waiting` instead of forking, and reads the
//!    program from the control socket (which it inherited) when the daemon
//!    sends it; from there on it is the same path.
//! 3. **runtime**: execs `spec.argv` (or the exec request's `argv`) with
//!    exactly its environment in its working directory — and, with
//!    `spec.runtime_channel`, the one descriptor it inherits: its end of the
//!    Unix socket to the Runtime API, named by `HEARTH_RUNTIME_API_FD`.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::protocol::{
    self, ExecRequest, IdMapping, LaunchRequest, ProbeReport, ProbeRequest, Report, Request,
};
use super::rootfs::{self, OptSource, RootSpec, TaskSource};
use super::seccomp;
use super::sys::{self, Forked, SingleThreaded};

/// The sandbox's hostname.
const HOSTNAME: &str = "localhost";
/// Where the Runtime API listens inside the sandbox.
pub(crate) const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";

fn namespace_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
}

/// When each launcher stage ended, for the daemon's start-up figures. A
/// process-wide list: pid 1 inherits the outer stage's entries with its
/// memory, and the launcher is single-threaded throughout.
static STAGES: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Records that the stage `name` ended now.
fn stage_done(name: &str) {
    let now = sys::monotonic_ns();
    if let Ok(mut s) = STAGES.lock() {
        s.push((name.to_owned(), now));
    }
}

fn stages() -> Vec<(String, u64)> {
    STAGES.lock().map(|s| s.clone()).unwrap_or_default()
}

/// The launcher's entry point (`hearth sandbox-init`). Never returns.
pub fn init_main() -> ! {
    std::process::exit(launcher().unwrap_or(1))
}

/// How the runtime ended, as pid 1 tells the outer stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Code(i32),
    Signal(i32),
}

impl Ended {
    fn encode(self) -> [u8; 5] {
        let (kind, v) = match self {
            Ended::Code(c) => (0u8, c),
            Ended::Signal(s) => (1u8, s),
        };
        let b = v.to_le_bytes();
        [kind, b[0], b[1], b[2], b[3]]
    }
    fn decode(b: &[u8]) -> Option<Ended> {
        let v = i32::from_le_bytes(b.get(1..5)?.try_into().ok()?);
        match b.first()? {
            0 => Some(Ended::Code(v)),
            1 => Some(Ended::Signal(v)),
            _ => None,
        }
    }
    /// pid 1's own exit code: the runtime's, or 128 + signal.
    fn exit_code(self) -> i32 {
        match self {
            Ended::Code(c) => c,
            Ended::Signal(s) => 128 + s,
        }
    }
}

fn launcher() -> Result<i32, ()> {
    stage_done("launcher_exec");
    let Some(one_thread) = SingleThreaded::check() else {
        return Err(());
    };
    // stdin is the control socket: keep a close-on-exec copy, and give fd 0
    // /dev/null so nothing later can read the socket by accident.
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|_| ())?;
    let _ = sys::cloexec_from(3);
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let (request, passed_fds) = match protocol::recv_all::<Request>(control.as_fd(), None) {
        Ok(Some((r, fds))) => (r, fds),
        _ => return Err(()),
    };
    stage_done("await_request");
    match request {
        Request::Probe(p) => {
            let report = probe(one_thread, &p);
            let _ = protocol::send(control.as_fd(), &Report::Probe(report), None);
            Ok(0)
        }
        Request::Launch(mut req) => {
            // Kept open for this process's whole life (pid 1 inherits them):
            // the runtime directory's mount, then the pooled namespace.
            let mut fds = passed_fds.into_iter();
            if req.pooled_netns {
                req.netns = fds.next_back();
            }
            if req.spec.runtime_channel {
                req.channel = fds.next_back();
            }
            req.runtime_mount = fds.next().map(std::os::fd::IntoRawFd::into_raw_fd);
            launch(one_thread, control.as_fd(), &req)
        }
        Request::Exec(_) => Err(()),
    }
}

fn launch(
    one_thread: SingleThreaded,
    control: BorrowedFd<'_>,
    req: &LaunchRequest,
) -> Result<i32, ()> {
    match outer(one_thread, control, req) {
        Ok(code) => Ok(code),
        Err(message) => {
            let _ = protocol::send(control, &Report::Error { message }, None);
            Ok(1)
        }
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

/// Unshares the sandbox's namespaces (with a user namespace if `userns`),
/// writing the id maps.
fn enter_namespaces(
    one_thread: SingleThreaded,
    flags: CloneFlags,
    userns: Option<IdMapping>,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    let Some(map) = userns else {
        return nix::sched::unshare(flags)
            .map_err(|e| format!("cannot create namespaces: {}", sys::errno_text(e as i32)));
    };
    let uid_map = format!("{uid} {} 1\n", map.outside_uid);
    let gid_map = format!("{gid} {} 1\n", map.outside_gid);
    if !map.privileged {
        // Unprivileged: the only map allowed is of our own ids, written by us.
        nix::sched::unshare(flags | CloneFlags::CLONE_NEWUSER).map_err(|e| {
            format!(
                "cannot create a user namespace: {}",
                sys::errno_text(e as i32)
            )
        })?;
        write_file(Path::new("/proc/self/setgroups"), "deny")?;
        write_file(Path::new("/proc/self/uid_map"), &uid_map)?;
        return write_file(Path::new("/proc/self/gid_map"), &gid_map);
    }
    // Privileged: a helper that stays in the parent user namespace maps the
    // sandbox's own host uid for us once we have unshared.
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let me = nix::unistd::getpid();
    match sys::fork(one_thread).map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            drop(go_w);
            drop(err_r);
            let mut b = [0u8; 1];
            let ok = File::from(go_r).read(&mut b).is_ok_and(|n| n == 1);
            let result = if ok {
                write_file(&PathBuf::from(format!("/proc/{me}/uid_map")), &uid_map).and_then(|()| {
                    write_file(&PathBuf::from(format!("/proc/{me}/gid_map")), &gid_map)
                })
            } else {
                Err("the launcher died before its user namespace was mapped".to_owned())
            };
            if let Err(e) = &result {
                let _ = File::from(err_w).write_all(e.as_bytes());
            }
            sys::exit_now(i32::from(result.is_err()))
        }
        Forked::Parent(helper) => {
            drop(go_r);
            drop(err_w);
            let unshared = nix::sched::unshare(flags | CloneFlags::CLONE_NEWUSER);
            if unshared.is_ok() {
                let _ = File::from(go_w).write_all(b"g");
            } else {
                drop(go_w);
            }
            let status = waitpid(Pid::from_raw(helper), None);
            unshared.map_err(|e| {
                format!(
                    "cannot create a user namespace: {}",
                    sys::errno_text(e as i32)
                )
            })?;
            let mut why = String::new();
            let _ = File::from(err_r).read_to_string(&mut why);
            if !matches!(status, Ok(WaitStatus::Exited(_, 0))) {
                return Err(format!("cannot map the sandbox's user namespace: {why}"));
            }
            // Our host root uid has no mapping inside, and files cannot be
            // created by an unmapped uid: become the sandbox's (mapped) ids
            // now. Capabilities stay, since the namespace has no root to lose.
            use nix::unistd::{Gid, Uid};
            let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
            nix::unistd::setgroups(&[g])
                .and_then(|()| nix::unistd::setresgid(g, g, g))
                .and_then(|()| nix::unistd::setresuid(u, u, u))
                .map_err(|e| format!("cannot take the sandbox's ids: {e}"))
        }
    }
}

/// Stage 1, in the host's pid namespace.
fn outer(
    one_thread: SingleThreaded,
    control: BorrowedFd<'_>,
    req: &LaunchRequest,
) -> Result<i32, String> {
    // Out of the daemon's session: a terminal's ^C must not reach sandboxes.
    let _ = nix::unistd::setsid();
    let me = std::process::id().to_string();
    let join_by_pid = |dir: &Path| {
        write_file(&dir.join("cgroup.procs"), &me)
            .map_err(|e| format!("cannot join the sandbox's cgroup: {e}"))
    };
    // Writing a pid to `cgroup.procs` takes the kernel's cgroup
    // threadgroup lock for writing, which waits for an RCU grace period:
    // 14-30 ms on a nested-virtualised host, more than the rest of a cold
    // start. Neither way used here takes it. v1: this process has one
    // thread (the proof), so moving that thread ("0" to `tasks`) moves the
    // process.
    for dir in &req.cgroups.v1 {
        write_file(&dir.join("tasks"), "0")
            .map_err(|e| format!("cannot join the sandbox's cgroup: {e}"))?;
    }
    // v2: pid 1 is cloned straight into it (`CLONE_INTO_CGROUP`, below);
    // this stage stays in the daemon's v2 cgroup. In a user namespace that
    // clone's permission check would run as the namespace's user, so then
    // this stage joins by pid, before unsharing.
    let clone_into = match (&req.cgroups.v2, &req.user_namespace) {
        (Some(dir), None) => Some((
            dir,
            File::open(dir).map_err(|e| format!("cannot open the sandbox's cgroup: {e}"))?,
        )),
        (Some(dir), Some(_)) => {
            join_by_pid(dir)?;
            None
        }
        (None, _) => None,
    };
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    stage_done("cgroup_join");

    // The cgroup namespace must be rooted at the sandbox's cgroups, which
    // pid 1 is in only once cloned: then pid 1 unshares it.
    let pid1_unshares_cgroupns = req.user_namespace.is_none();
    let mut flags = namespace_flags();
    if pid1_unshares_cgroupns {
        flags.remove(CloneFlags::CLONE_NEWCGROUP);
    }
    // A network namespace the daemon made ahead, with the Runtime API
    // already listening in it: entered, not made.
    if let Some(ns) = &req.netns {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!(
                "cannot enter the sandbox's network namespace: {}",
                sys::errno_text(e as i32)
            )
        })?;
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    enter_namespaces(one_thread, flags, req.user_namespace, req.uid, req.gid)?;
    stage_done("unshare");
    // No core dumps or ptrace of the launcher (after the id maps: a
    // non-dumpable process's /proc files belong to root).
    let _ = nix::sys::prctl::set_dumpable(false);

    if req.netns.is_none() {
        sys::loopback_up().map_err(|e| format!("cannot bring up lo: {e}"))?;
        let listener = std::net::TcpListener::bind(RUNTIME_API_ADDR)
            .map_err(|e| format!("cannot listen on {RUNTIME_API_ADDR}: {e}"))?;
        protocol::send(control, &Report::Listener, Some(listener.as_fd()))
            .map_err(|e| format!("cannot send the Runtime API socket: {e}"))?;
        drop(listener);
    }
    stage_done("runtime_api_socket");

    let (status_r, status_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // Held open by this stage only: pid 1 sees it hang up if we are gone.
    let (life_r, life_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let forked = match &clone_into {
        Some((dir, fd)) => match sys::fork_into_cgroup(one_thread, fd.as_fd()) {
            // A kernel older than 5.7: join by pid (the slow way), then fork.
            Err(e)
                if [
                    nix::errno::Errno::ENOSYS,
                    nix::errno::Errno::E2BIG,
                    nix::errno::Errno::EINVAL,
                ]
                .iter()
                .any(|n| e.raw_os_error() == Some(*n as i32)) =>
            {
                join_by_pid(dir)?;
                sys::fork(one_thread)
            }
            other => other,
        },
        None => sys::fork(one_thread),
    };
    drop(clone_into);
    match forked.map_err(|e| format!("cannot fork the sandbox's init: {e}"))? {
        Forked::Child => {
            drop(status_r);
            drop(life_w);
            let code = if pid1_unshares_cgroupns {
                nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
                    format!(
                        "cannot create the cgroup namespace: {}",
                        sys::errno_text(e as i32)
                    )
                })
            } else {
                Ok(())
            }
            .inspect(|()| stage_done("fork_init"))
            .map_or_else(
                |message| {
                    let _ = protocol::send(control, &Report::Error { message }, None);
                    1
                },
                |()| init(one_thread, control, req, status_w, life_r),
            );
            sys::exit_now(code)
        }
        Forked::Parent(pid1) => {
            drop(status_w);
            drop(life_r);
            // Kept (unused) until this process exits.
            let _lifeline = life_w;
            // The daemon's pipes now belong to the sandbox alone.
            if let Ok(null) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(&null);
                let _ = nix::unistd::dup2_stderr(&null);
            }
            sys::release_free_heap();
            let ended = wait_for_init(pid1, status_r);
            Ok(match ended {
                Ended::Code(c) => c,
                Ended::Signal(s) => {
                    sys::die_by_signal(s);
                    128 + s
                }
            })
        }
    }
}

/// Waits for pid 1 and returns how the runtime ended.
fn wait_for_init(pid1: i32, status_r: OwnedFd) -> Ended {
    let status = loop {
        match waitpid(Pid::from_raw(pid1), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let mut buf = Vec::new();
    let _ = File::from(status_r).read_to_end(&mut buf);
    match status {
        Ok(WaitStatus::Exited(_, code)) => Ended::decode(&buf).unwrap_or(Ended::Code(code)),
        // pid 1 itself was killed: by the OOM killer, or from the host.
        Ok(WaitStatus::Signaled(_, sig, _)) => Ended::Signal(sig as i32),
        _ => Ended::Code(255),
    }
}

/// Stage 2: pid 1 of the sandbox. Returns its exit code.
fn init(
    one_thread: SingleThreaded,
    control: BorrowedFd<'_>,
    req: &LaunchRequest,
    status_w: OwnedFd,
    lifeline: OwnedFd,
) -> i32 {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // If the outer stage dies (destroy kills it), so does the sandbox; and if
    // it died before this was set, the lifeline has already hung up.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let mut fds = [PollFd::new(lifeline.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return 1;
    }
    drop(lifeline);
    let _ = nix::unistd::setsid();
    let runtime = match build_and_spawn(one_thread, control, req) {
        Ok(pid) => pid,
        Err(message) => {
            let _ = protocol::send(control, &Report::Error { message }, None);
            return 1;
        }
    };
    stage_done("runtime_exec");
    let _ = protocol::send(control, &Report::Ready { stages: stages() }, None);
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    sys::release_free_heap();
    let ended = reap_until(runtime);
    let _ = File::from(status_w).write_all(&ended.encode());
    ended.exit_code()
}

/// Reaps every child (orphans are re-parented to pid 1) until `runtime` exits.
fn reap_until(runtime: i32) -> Ended {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == runtime => {
                return Ended::Code(code)
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == runtime => {
                return Ended::Signal(sig as i32)
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Ended::Code(255),
        }
    }
}

/// Everything the runtime's exec needs, prepared before privileges go.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    /// A descriptor the program inherits (its Runtime API channel).
    inherit: Option<RawFd>,
}

impl ExecPlan {
    /// The program also inherits `fd`, its Unix socket to the Runtime API,
    /// and finds its number in `HEARTH_RUNTIME_API_FD` (this process keeps
    /// its own copy until it ends, which is when the program ends).
    fn with_channel(mut self, fd: RawFd) -> Result<Self, String> {
        self.env
            .push(cstring(&format!("{CHANNEL_ENV}={fd}"), "the environment")?);
        self.inherit = Some(fd);
        Ok(self)
    }
}

/// Where a program given a Runtime API channel finds its descriptor.
pub(crate) const CHANNEL_ENV: &str = "HEARTH_RUNTIME_API_FD";

fn cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

/// Checks a program's command line, environment and working directory and
/// turns them into what `execve` takes (the daemon runs it too, to refuse a
/// bad `exec` before it reaches a sandbox).
pub(crate) fn exec_plan(
    argv: &[String],
    environment: &[(String, String)],
    cwd: &str,
) -> Result<ExecPlan, String> {
    let program = argv.first().ok_or("argv is empty")?;
    if program.is_empty() {
        return Err("argv[0] is empty".to_owned());
    }
    if !cwd.starts_with('/') {
        return Err(format!("the working directory {cwd:?} is not absolute"));
    }
    let argv = argv
        .iter()
        .map(|a| cstring(a, "argv"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = Vec::with_capacity(environment.len());
    for (k, v) in environment {
        if k.is_empty() || k.contains('=') {
            return Err(format!("invalid environment variable name {k:?}"));
        }
        env.push(cstring(&format!("{k}={v}"), "the environment")?);
    }
    // A bare name is looked up in the sandbox's PATH, as execvpe would.
    let candidates = if program.contains('/') {
        vec![cstring(program, "argv[0]")?]
    } else {
        let path = environment
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstring(&format!("{}/{program}", d.trim_end_matches('/')), "PATH"))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(ExecPlan {
        candidates,
        argv,
        env,
        cwd: cstring(cwd, "cwd")?,
        inherit: None,
    })
}

/// Builds the sandbox and starts its program: `spec.argv`, or for a
/// shell-warm sandbox the one the daemon sends once this init waits.
/// Returns the program's pid once its exec succeeded.
fn build_and_spawn(
    one_thread: SingleThreaded,
    control: BorrowedFd<'_>,
    req: &LaunchRequest,
) -> Result<i32, String> {
    let spec = &req.spec;
    // A bad spec fails before anything is built.
    let plan = if spec.argv.is_empty() {
        None
    } else {
        Some(exec_plan(&spec.argv, &spec.env, &spec.cwd)?)
    };
    prepare(req)?;
    stage_done("privileges_seccomp");
    let plan = match plan {
        Some(plan) => plan,
        None => {
            protocol::send(control, &Report::Waiting, None)
                .map_err(|e| format!("cannot report the sandbox ready: {e}"))?;
            let cmd = wait_for_exec(control)?;
            exec_plan(&cmd.argv, &cmd.env, &cmd.cwd)?
        }
    };
    let plan = match &req.channel {
        Some(fd) => plan.with_channel(fd.as_raw_fd())?,
        None => plan,
    };
    spawn(one_thread, &plan)
}

/// A shell-warm init's wait: the next message on the control socket must be
/// the program to start. The daemon closing the socket ends the sandbox.
fn wait_for_exec(control: BorrowedFd<'_>) -> Result<ExecRequest, String> {
    match protocol::recv::<Request>(control, None) {
        Ok(Some((Request::Exec(cmd), _))) => Ok(cmd),
        Ok(Some((other, _))) => Err(format!("expected a program to start, got {other:?}")),
        Ok(None) => Err("the daemon closed the control socket".to_owned()),
        Err(e) => Err(format!("cannot read the program to start: {e}")),
    }
}

/// Builds the root, drops privileges and installs seccomp: from here on
/// this process is as unprivileged as the program it will start.
fn prepare(req: &LaunchRequest) -> Result<(), String> {
    let programs = seccomp::from_wire(&req.seccomp);
    let task = match (&req.spec.task_root, &req.task_mount) {
        (Some(dir), _) => TaskSource::Bind(dir.clone()),
        (None, Some(host)) => TaskSource::Propagated(host.clone()),
        (None, None) => return Err("no task_root and no host-side task mount".to_owned()),
    };
    let opt = match (&req.spec.opt_root, &req.opt_mount) {
        (Some(dir), _) => OptSource::Bind(dir.clone()),
        (None, Some(host)) => OptSource::Propagated(host.clone()),
        (None, None) => OptSource::Empty,
    };
    rootfs::build(
        &RootSpec {
            root: req.root_dir.clone(),
            task,
            opt,
            runtime_dir: req.spec.runtime_dir.clone(),
            runtime_mount: req.runtime_mount,
            tmp_mb: req.spec.tmp_mb,
            uid: req.uid,
            gid: req.gid,
        },
        &rootfs::HostSyscall,
    )?;
    stage_done("mounts");
    nix::unistd::sethostname(HOSTNAME).map_err(|e| format!("sethostname: {e}"))?;
    drop_privileges(req)?;
    seccomp::install(&programs)
}

/// Forks and execs the program. Returns its pid once its exec succeeded.
fn spawn(one_thread: SingleThreaded, plan: &ExecPlan) -> Result<i32, String> {
    let (exec_r, exec_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    match sys::fork(one_thread).map_err(|e| format!("cannot fork the runtime: {e}"))? {
        Forked::Child => {
            drop(exec_r);
            let failure = exec_runtime(plan);
            let _ = File::from(exec_w).write_all(failure.as_bytes());
            sys::exit_now(127)
        }
        Forked::Parent(pid) => {
            drop(exec_w);
            let mut why = String::new();
            let _ = File::from(exec_r).read_to_string(&mut why);
            if why.is_empty() {
                Ok(pid)
            } else {
                let _ = waitpid(Pid::from_raw(pid), None);
                Err(why)
            }
        }
    }
}

/// Stage 3, in the runtime's process: only returns (a message) on failure.
fn exec_runtime(plan: &ExecPlan) -> String {
    sys::reset_signals();
    match File::open("/dev/null") {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdin(&null);
        }
        Err(e) => return format!("cannot open /dev/null: {e}"),
    }
    if let Some(fd) = plan.inherit {
        if let Err(e) = sys::inherit_on_exec(fd) {
            return format!("cannot pass the Runtime API channel: {e}");
        }
    }
    if let Err(e) = nix::unistd::chdir(plan.cwd.as_c_str()) {
        return format!(
            "cannot change to the working directory {}: {}",
            plan.cwd.to_string_lossy(),
            sys::errno_text(e as i32)
        );
    }
    let mut last = nix::errno::Errno::ENOENT;
    for path in &plan.candidates {
        let Err(e) = nix::unistd::execve(path, &plan.argv, &plan.env);
        // Keep the most telling error, as execvp does: EACCES over ENOENT.
        if last == nix::errno::Errno::ENOENT || e != nix::errno::Errno::ENOENT {
            last = e;
        }
    }
    format!(
        "cannot exec {}: {}",
        plan.argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sys::errno_text(last as i32)
    )
}

/// Becomes the sandbox's unprivileged uid with no capabilities, no way to
/// gain any, and the sandbox's rlimits.
fn drop_privileges(req: &LaunchRequest) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use nix::unistd::{Gid, Uid};
    // A daemon's own (often negative) OOM score is not the sandbox's: start
    // from 0 (lowering a positive one needs CAP_SYS_RESOURCE; best effort).
    let _ = write_file(Path::new("/proc/self/oom_score_adj"), "0");
    // Limits first: raising a hard limit needs the privilege about to go.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    let (_, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 4096));
    if setrlimit(Resource::RLIMIT_NOFILE, 1024, 4096).is_err() {
        let hard = nofile_hard.min(4096);
        let _ = setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard);
    }
    if let Some(n) = req.nproc_limit {
        setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(|e| format!("RLIMIT_NPROC: {e}"))?;
    }
    sys::drop_bounding_and_ambient().map_err(|e| format!("cannot drop capabilities: {e}"))?;
    let uid = Uid::from_raw(req.uid);
    let gid = Gid::from_raw(req.gid);
    let self_mapped = req.user_namespace.is_some_and(|m| !m.privileged);
    if !self_mapped {
        nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid({gid}): {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid({uid}): {e}"))?;
    // setresuid from root already emptied the sets; in a user namespace the
    // uid does not change, so empty them explicitly.
    sys::clear_capabilities().map_err(|e| format!("cannot clear capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    let _ = nix::sys::prctl::set_dumpable(false);
    if nix::unistd::getuid().as_raw() != req.uid || nix::unistd::geteuid().as_raw() != req.uid {
        return Err("the sandbox uid did not stick".to_owned());
    }
    Ok(())
}

/// Tries, in a throwaway process, what sandboxes will need.
fn probe(one_thread: SingleThreaded, p: &ProbeRequest) -> ProbeReport {
    let mut report = ProbeReport {
        namespaces: Err("not tried".to_owned()),
        loopback: Err("not tried".to_owned()),
        procfs: Err("not tried".to_owned()),
        seccomp: Err("not tried".to_owned()),
    };
    report.namespaces = enter_namespaces(
        one_thread,
        namespace_flags(),
        p.user_namespace,
        p.uid,
        p.gid,
    );
    if report.namespaces.is_ok() {
        report.loopback = sys::loopback_up().map_err(|e| e.to_string());
        report.procfs = probe_procfs(one_thread, &p.scratch_dir);
    }
    report.seccomp = seccomp::install(&seccomp::from_wire(&p.seccomp));
    report
}

/// Whether pid 1 of the new pid namespace can mount its procfs (a user
/// namespace cannot when the host's /proc is partly hidden by overmounts).
fn probe_procfs(one_thread: SingleThreaded, scratch: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    match sys::fork(one_thread).map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(r);
            let none: Option<&str> = None;
            let result = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
                .map_err(|e| format!("make / private: {e}"))
                .and_then(|()| {
                    mount(
                        Some("proc"),
                        scratch,
                        Some("proc"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                        none,
                    )
                    .map_err(|e| format!("mount proc: {}", sys::errno_text(e as i32)))
                });
            if let Err(e) = &result {
                let _ = File::from(w).write_all(e.as_bytes());
            }
            sys::exit_now(0)
        }
        Forked::Parent(pid) => {
            drop(w);
            let mut why = String::new();
            let _ = File::from(r).read_to_string(&mut why);
            let _ = waitpid(Pid::from_raw(pid), None);
            if why.is_empty() {
                Ok(())
            } else {
                Err(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SandboxSpec;

    fn req(argv: &[&str], env: &[(&str, &str)]) -> LaunchRequest {
        LaunchRequest {
            spec: SandboxSpec {
                id: "t".into(),
                account_id: "a".into(),
                memory_mb: 128,
                pids_max: 64,
                task_root: Some("/tmp".into()),
                opt_root: None,
                runtime_dir: None,
                tmp_mb: 16,
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                cwd: "/var/task".into(),
                runtime_channel: false,
            },
            uid: 1,
            gid: 1,
            cgroups: protocol::CgroupJoin::default(),
            pooled_netns: false,
            netns: None,
            channel: None,
            root_dir: "/x".into(),
            task_mount: None,
            opt_mount: None,
            user_namespace: None,
            seccomp: vec![],
            nproc_limit: None,
            runtime_mount: None,
        }
    }

    fn plan(r: &LaunchRequest) -> Result<ExecPlan, String> {
        exec_plan(&r.spec.argv, &r.spec.env, &r.spec.cwd)
    }

    #[test]
    fn exec_plan_uses_exactly_the_spec_environment() {
        let p = plan(&req(
            &["/usr/bin/python3", "x.py"],
            &[("A", "1"), ("B", "x=y")],
        ))
        .unwrap();
        assert_eq!(
            p.candidates,
            vec![CString::new("/usr/bin/python3").unwrap()]
        );
        assert_eq!(
            p.env,
            vec![CString::new("A=1").unwrap(), CString::new("B=x=y").unwrap()]
        );
        assert_eq!(p.argv.len(), 2);
    }

    #[test]
    fn bare_program_names_search_the_sandbox_path() {
        let p = plan(&req(&["python3"], &[("PATH", "/opt/bin:/usr/bin")])).unwrap();
        assert_eq!(
            p.candidates,
            vec![
                CString::new("/opt/bin/python3").unwrap(),
                CString::new("/usr/bin/python3").unwrap()
            ]
        );
        let p = plan(&req(&["true"], &[])).unwrap();
        assert_eq!(p.candidates.len(), 3);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(plan(&req(&[], &[])).is_err());
        assert!(plan(&req(&["/bin/true"], &[("A=B", "1")])).is_err());
        assert!(plan(&req(&["/bin/tr\0ue"], &[])).is_err());
        assert!(plan(&req(&[""], &[])).is_err());
        assert!(exec_plan(&["/bin/true".into()], &[], "var/task").is_err());
        assert!(exec_plan(&["/bin/true".into()], &[], "/var/t\0ask").is_err());
    }

    #[test]
    fn exit_status_encoding_round_trips() {
        for e in [
            Ended::Code(0),
            Ended::Code(137),
            Ended::Signal(9),
            Ended::Signal(11),
        ] {
            assert_eq!(Ended::decode(&e.encode()), Some(e));
        }
        assert_eq!(Ended::decode(&[]), None);
        assert_eq!(Ended::Signal(9).exit_code(), 137);
    }
}
