//! Root-only tests of the Linux backend: each starts real sandboxes running
//! Debian's `/usr/bin/python3` scripts that try to escape and report what
//! they saw as JSON. Without root (or without the facility a test needs)
//! they skip and say why.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hearth_sandbox::linux::{LinuxBackend, LinuxConfig, UserNamespaceMode};
use hearth_sandbox::{ExitStatus, Sandbox, SandboxBackend, SandboxSpec};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

struct Harness {
    dir: tempfile::TempDir,
    backend: LinuxBackend,
    prefix: String,
    n: AtomicU32,
}

/// Distinct uid ranges per harness and per test process: the tests look for
/// processes by uid, and neither a parallel test nor a daemon running on the
/// same machine (default base 200000) may be mistaken for a sandbox's.
fn uid_base() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    1_000_000 + (std::process::id() % 1000) * 100_000 + NEXT.fetch_add(1, Ordering::Relaxed) * 2_000
}

fn config(state_dir: PathBuf, cgroup_name: &str) -> LinuxConfig {
    LinuxConfig {
        state_dir,
        init_program: env!("CARGO_BIN_EXE_hearth-sandbox-init").into(),
        init_args: vec![],
        cgroup_name: cgroup_name.to_owned(),
        uid_base: uid_base(),
        ..LinuxConfig::default()
    }
}

/// Host mount points strictly below `dir`, one per mount (stacked ones repeat).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|p| p != &dir && p.starts_with(&dir))
        .collect()
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Where the state directory's mount is shared (systemd hosts), the
        // backend made it a private mount of its own: undo that so the
        // temporary directory can go.
        let state = self.state_dir();
        if let Ok(real) = std::fs::canonicalize(&state) {
            let mounted = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(real.to_string_lossy().as_ref()));
            if mounted {
                let _ = nix::mount::umount2(&real, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Harness {
    /// A backend with its own state directory; `None` (printed) when the
    /// test cannot run here.
    fn new(test: &str) -> Option<Harness> {
        Harness::with(test, "hearth", UserNamespaceMode::Auto)
    }

    fn with(test: &str, cgroup_name: &str, userns: UserNamespaceMode) -> Option<Harness> {
        if !is_root() {
            println!("SKIP {test}: needs root (the CI runs as root)");
            return None;
        }
        if !Path::new(PYTHON).exists() {
            println!("SKIP {test}: {PYTHON} is absent");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path().join("state"), cgroup_name);
        cfg.user_namespace = userns;
        let backend = LinuxBackend::new(cfg).expect("backend");
        let p = backend.protections();
        if !p.can_isolate {
            println!("SKIP {test}: this host cannot isolate: {:?}", p.warnings);
            return None;
        }
        Some(Harness {
            dir,
            backend,
            prefix: test.replace('_', "-").chars().take(24).collect(),
            n: AtomicU32::new(0),
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A task directory holding `x.py`.
    fn task(&self, script: &str) -> PathBuf {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let task = self.dir.path().join(format!("task{n}"));
        std::fs::create_dir(&task).expect("task dir");
        std::fs::write(task.join("x.py"), script).expect("script");
        std::fs::set_permissions(&task, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        task
    }

    fn spec(&self, script: &str) -> SandboxSpec {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        SandboxSpec {
            id: format!("{}-{n}", self.prefix),
            account_id: "000000000000".into(),
            memory_mb: 128,
            pids_max: 64,
            task_root: Some(self.task(script)),
            opt_root: None,
            runtime_dir: None,
            tmp_mb: 16,
            argv: vec![PYTHON.into(), "/var/task/x.py".into()],
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
            ],
            cwd: "/var/task".into(),
            runtime_channel: false,
        }
    }

    fn start(&self, spec: &SandboxSpec) -> Sandbox {
        match self.backend.start(spec) {
            Ok(s) => s,
            Err(e) => panic!("start {}: {e}", spec.id),
        }
    }

    /// Runs a sandbox to its end; returns its status, stdout, stderr.
    fn run(&self, spec: &SandboxSpec) -> Outcome {
        let sb = self.start(spec);
        let (stdout, stderr) = drain(sb.stdout, sb.stderr);
        let status = sb.control.wait();
        let outcome = Outcome {
            status,
            report: stdout
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok()),
            stdout,
            stderr,
            uid: sb.uid,
            oom_killed: sb.control.oom_killed(),
            peak: sb.control.peak_memory_bytes(),
        };
        sb.control.destroy();
        outcome
    }

    /// Runs a script and returns its JSON report (last stdout line).
    fn report(&self, script: &str) -> (Value, Outcome) {
        let o = self.run(&self.spec(script));
        let r = o
            .report
            .clone()
            .unwrap_or_else(|| panic!("no report: {o:#?}"));
        (r, o)
    }
}

fn drain(stdout: std::os::fd::OwnedFd, stderr: std::os::fd::OwnedFd) -> (String, String) {
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::from(stderr).read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    let _ = std::fs::File::from(stdout).read_to_string(&mut out);
    (out, err.join().unwrap_or_default())
}

#[derive(Debug)]
#[allow(dead_code)]
struct Outcome {
    status: ExitStatus,
    report: Option<Value>,
    stdout: String,
    stderr: String,
    uid: u32,
    oom_killed: bool,
    peak: Option<u64>,
}

/// Host pids of processes running as `uid`.
fn processes_of(uid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if real == Some(uid) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Polls (bounded) until no process runs as `uid`; returns the survivors.
fn wait_no_processes_of(uid: u32) -> Vec<i32> {
    for _ in 0..200 {
        let left = processes_of(uid);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    processes_of(uid)
}

/// Directories named `id` anywhere under /sys/fs/cgroup (bounded depth).
fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: u32, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == id {
                    out.push(e.path());
                } else {
                    walk(&e.path(), id, depth - 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 7, &mut out);
    out
}

#[test]
fn identity_and_filesystem_view() {
    let Some(h) = Harness::new("identity") else {
        return;
    };
    let state = h.state_dir();
    let script = format!(
        r#"
import json, os, pwd, socket
def exists(p):
    try:
        os.stat(p); return True
    except OSError:
        return False
def readable(p):
    try:
        open(p, 'rb').read(1); return True
    except OSError:
        return False
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
print(json.dumps({{
    'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
    'user': pwd.getpwuid(os.getuid()).pw_name,
    'root': sorted(os.listdir('/')), 'etc': sorted(os.listdir('/etc')),
    'dev': sorted(os.listdir('/dev')), 'var': sorted(os.listdir('/var')),
    'shadow': exists('/etc/shadow'), 'root_home': exists('/root'), 'home': exists('/home'),
    'state_dir': exists({state:?}), 'host_tmp_marker': exists('/tmp/hearth-host-marker'),
    'machine_id': exists('/etc/machine-id'), 'sys': exists('/sys/kernel'),
    'passwd': open('/etc/passwd').read(),
    'hostname': socket.gethostname(),
    'cap_eff': status['CapEff'].strip(), 'cap_bnd': status['CapBnd'].strip(),
    'cap_prm': status['CapPrm'].strip(), 'cap_amb': status['CapAmb'].strip(),
    'nnp': status['NoNewPrivs'].strip(), 'seccomp': status['Seccomp'].strip(),
    'devnull_write': open('/dev/null', 'w').write('x'),
    'urandom': len(open('/dev/urandom', 'rb').read(8)),
    'certs': exists('/etc/ssl/certs/ca-certificates.crt'),
    'cgroup': open('/proc/self/cgroup').read(),
    'oom_score_adj': open('/proc/self/oom_score_adj').read().strip(),
    'nofile': __import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE),
    'core': __import__('resource').getrlimit(__import__('resource').RLIMIT_CORE),
}}))
"#
    );
    std::fs::write("/tmp/hearth-host-marker", "x").expect("marker");
    let (r, o) = h.report(&script);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    let uid = u64::from(o.uid);
    assert_ne!(uid, 0);
    assert_eq!(r["uid"], uid);
    assert_eq!(r["euid"], uid);
    assert_eq!(r["gid"], uid);
    assert_eq!(r["groups"], serde_json::json!([uid]));
    assert_eq!(r["user"], "sbx_user1051");
    assert_eq!(
        r["root"],
        serde_json::json!([
            "bin", "dev", "etc", "lib", "lib64", "opt", "proc", "sbin", "tmp", "usr", "var"
        ])
    );
    assert_eq!(
        r["etc"],
        serde_json::json!([
            "group",
            "hosts",
            "ld.so.cache",
            "ld.so.conf",
            "ld.so.conf.d",
            "localtime",
            "nsswitch.conf",
            "passwd",
            "resolv.conf",
            "ssl"
        ])
    );
    assert_eq!(
        r["dev"],
        serde_json::json!([
            "fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"
        ])
    );
    assert_eq!(r["var"], serde_json::json!(["task"]));
    for hidden in [
        "shadow",
        "root_home",
        "home",
        "state_dir",
        "host_tmp_marker",
        "machine_id",
        "sys",
    ] {
        assert_eq!(r[hidden], false, "{hidden} is visible");
    }
    assert_eq!(r["passwd"].as_str().map(|p| p.lines().count()), Some(3));
    assert_eq!(r["hostname"], "localhost");
    for cap in ["cap_eff", "cap_bnd", "cap_prm", "cap_amb"] {
        assert_eq!(r[cap], "0000000000000000", "{cap}");
    }
    assert_eq!(r["nnp"], "1");
    assert_eq!(r["seccomp"], "2");
    assert_eq!(r["devnull_write"], 1);
    assert_eq!(r["urandom"], 8);
    assert_eq!(r["certs"], true);
    // A cgroup namespace: the sandbox does not learn the host's cgroup paths.
    assert!(
        r["cgroup"]
            .as_str()
            .unwrap_or("")
            .lines()
            .all(|l| l.ends_with(":/")),
        "{}",
        r["cgroup"]
    );
    // Whatever the daemon's own OOM score, sandboxes start from 0.
    assert_eq!(r["oom_score_adj"], "0");
    assert_eq!(r["nofile"], serde_json::json!([1024, 4096]));
    assert_eq!(r["core"], serde_json::json!([0, 0]));
}

#[test]
fn writes_fail_everywhere_but_a_bounded_tmp() {
    let Some(h) = Harness::new("writes") else {
        return;
    };
    let script = r#"
import errno, json, os
res = {}
for p in ['/var/task/new', '/var/task/x.py', '/usr/new', '/usr/bin/python3', '/etc/new', '/etc/passwd', '/new', '/opt/new', '/dev/new', '/proc/new', '/tmp/ok']:
    try:
        with open(p, 'a') as f:
            f.write('x')
        res[p] = 'ok'
    except OSError as e:
        res[p] = errno.errorcode[e.errno]
for p in ['/var/task', '/tmp']:
    try:
        os.mkdir(p + '/d'); res['mkdir ' + p] = 'ok'
    except OSError as e:
        res['mkdir ' + p] = errno.errorcode[e.errno]
try:
    os.chmod('/var/task/x.py', 0o777); res['chmod'] = 'ok'
except OSError as e:
    res['chmod'] = errno.errorcode[e.errno]
# Fill /tmp (16 MiB) with at most 32 MiB: the tmpfs must stop it.
written = 0
try:
    with open('/tmp/fill', 'wb') as f:
        for _ in range(32):
            f.write(b'\0' * (1 << 20)); f.flush(); written += 1
    res['fill'] = 'ok'
except OSError as e:
    res['fill'] = errno.errorcode[e.errno]
res['written_mib'] = written
os.remove('/tmp/fill')
print(json.dumps(res))
"#;
    let (r, o) = h.report(script);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    for p in [
        "/var/task/new",
        "/var/task/x.py",
        "/usr/new",
        "/usr/bin/python3",
        "/etc/new",
        "/etc/passwd",
        "/new",
        "/opt/new",
        "/dev/new",
    ] {
        let e = r[p].as_str().unwrap_or("");
        assert!(e == "EROFS" || e == "EACCES", "{p}: {e}");
    }
    assert_ne!(r["/proc/new"], "ok");
    assert_eq!(r["/tmp/ok"], "ok");
    assert_eq!(r["mkdir /tmp"], "ok");
    assert_ne!(r["mkdir /var/task"], "ok");
    assert_ne!(r["chmod"], "ok");
    assert_eq!(r["fill"], "ENOSPC");
    assert!(r["written_mib"].as_u64().unwrap_or(99) <= 16, "{r}");
}

#[test]
fn processes_outside_the_sandbox_are_invisible() {
    let Some(h) = Harness::new("pids") else {
        return;
    };
    let host_pid = std::process::id();
    let script = format!(
        r#"
import errno, json, os, signal, time
res = {{'pid': os.getpid(), 'ppid': os.getppid()}}
res['procs'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
try:
    os.kill({host_pid}, 0); res['host_kill'] = 'ok'
except OSError as e:
    res['host_kill'] = errno.errorcode[e.errno]
# pid 1 ignores what its namespace sends it.
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        os.kill(1, s)
    except OSError:
        pass
time.sleep(0.05)
res['init_alive'] = os.path.exists('/proc/1')
try:
    res['init_cmdline'] = open('/proc/1/environ').read()
except OSError as e:
    res['init_cmdline'] = errno.errorcode[e.errno]
print(json.dumps(res))
"#
    );
    let (r, o) = h.report(&script);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    assert_eq!(r["ppid"], 1);
    let pid = r["pid"].as_i64().unwrap_or(0);
    assert_eq!(r["procs"], serde_json::json!([1, pid]));
    assert_eq!(r["host_kill"], "ESRCH");
    assert_eq!(r["init_alive"], true);
    // pid 1 is not dumpable: its environment is not the runtime's to read.
    assert_eq!(r["init_cmdline"], "EACCES");
}

/// Answers one `ping` with `pong` on `c` (a Runtime API connection).
fn pong_once(mut c: impl Read + std::io::Write) {
    let mut b = [0u8; 4];
    if c.read_exact(&mut b).is_ok() && &b == b"ping" {
        let _ = c.write_all(b"pong");
    }
}

/// Runs `sb` to its end while `server` answers it, then destroys it;
/// returns its status and its JSON report (last stdout line).
fn run_beside(sb: Sandbox, server: std::thread::JoinHandle<()>) -> (ExitStatus, Value) {
    let (stdout, stderr) = drain(sb.stdout, sb.stderr);
    let status = sb.control.wait();
    sb.control.destroy();
    let _ = server.join();
    let r = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    (status, r)
}

#[test]
fn network_is_loopback_only_with_the_runtime_api_at_9001() {
    let Some(h) = Harness::new("network") else {
        return;
    };
    // A port the host listens on: the sandbox must not reach it.
    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("host listener");
    let host_port = host.local_addr().map(|a| a.port()).unwrap_or(0);
    let script = format!(
        r#"
import errno, json, os, socket
res = {{'ifaces': socket.if_nameindex()}}
res['routes'] = open('/proc/net/route').read().splitlines()[1:]
res['ipv6_routes'] = [l for l in open('/proc/net/ipv6_route').read().splitlines() if not l.split()[-1] == 'lo'] if os.path.exists('/proc/net/ipv6_route') else []
def connect(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(('127.0.0.1', port)); return s
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
api = connect(9001)
if isinstance(api, socket.socket):
    api.sendall(b'ping'); res['api'] = api.recv(4).decode()
else:
    res['api'] = api
res['host_port'] = connect({host_port})
res['other'] = connect(22)
try:
    socket.create_connection(('10.0.0.1', 80), timeout=0.01); res['unroutable'] = 'ok'
except OSError as e:
    res['unroutable'] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(res))
"#
    );
    let spec = h.spec(&script);
    let sb = h.start(&spec);
    let api = sb.runtime_api.try_clone().expect("listener");
    let server = std::thread::spawn(move || {
        if let Ok((c, _)) = api.accept() {
            pong_once(c);
        }
    });
    let (status, r) = run_beside(sb, server);
    assert_eq!(status, ExitStatus::Code(0));
    assert_eq!(r["ifaces"], serde_json::json!([[1, "lo"]]));
    assert_eq!(r["routes"], serde_json::json!([]));
    assert_eq!(r["ipv6_routes"], serde_json::json!([]));
    assert_eq!(r["api"], "pong");
    assert_eq!(r["host_port"], "ECONNREFUSED");
    assert_eq!(r["other"], "ECONNREFUSED");
    assert_eq!(r["unroutable"], "ENETUNREACH");
    drop(host);
}

/// With `runtime_channel`, the program inherits exactly one more
/// descriptor, named by `HEARTH_RUNTIME_API_FD`: a connected Unix socket
/// whose other end is the daemon's `runtime_channel`; without it, neither.
#[test]
fn the_runtime_channel_is_one_inherited_socket_to_the_daemon() {
    let Some(h) = Harness::new("channel") else {
        return;
    };
    let script = r#"
import json, os, socket, stat
fd = os.environ.get('HEARTH_RUNTIME_API_FD')
res = {'fd': fd, 'open': sorted(int(f) for f in os.listdir('/proc/self/fd'))}
if fd is not None:
    n = int(fd)
    res['socket'] = stat.S_ISSOCK(os.fstat(n).st_mode)
    s = socket.socket(fileno=n)
    s.sendall(b'ping'); res['reply'] = s.recv(4).decode()
print(json.dumps(res))
"#;
    // Open: the standard three and the listing's own descriptor.
    let listing = |r: &Value| -> Vec<u64> {
        r["open"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let without = h.run(&h.spec(script));
    let r = without
        .report
        .clone()
        .unwrap_or_else(|| panic!("{without:#?}"));
    assert_eq!(r["fd"], Value::Null, "{r}");
    let open = listing(&r);
    assert!(open.len() == 4 && open[..3] == [0, 1, 2], "{r}");

    let mut spec = h.spec(script);
    spec.runtime_channel = true;
    let mut sb = h.start(&spec);
    let ours = sb
        .runtime_channel
        .take()
        .expect("the daemon's end of the channel");
    let server = std::thread::spawn(move || pong_once(ours));
    let (status, r) = run_beside(sb, server);
    assert_eq!(status, ExitStatus::Code(0));
    let fd: u64 = r["fd"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(r["socket"], true, "{r}");
    assert_eq!(r["reply"], "pong", "{r}");
    let mut open = listing(&r);
    assert!(open.contains(&fd), "{r}");
    open.retain(|&f| f != fd);
    assert!(open.len() == 4 && open[..3] == [0, 1, 2], "{r}");
}

#[test]
fn privileged_syscalls_fail() {
    let Some(h) = Harness::new("syscalls") else {
        return;
    };
    let script = r#"
import ctypes, errno, json, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(f, *args):
    ctypes.set_errno(0)
    r = f(*args)
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
res = {}
res['unshare_user'] = call(libc.unshare, 0x10000000)
res['unshare_net'] = call(libc.unshare, 0x40000000)
res['unshare_ns'] = call(libc.unshare, 0x00020000)
res['mount'] = call(libc.mount, b'none', b'/tmp', b'tmpfs', ctypes.c_ulong(0), None)
res['umount'] = call(libc.umount2, b'/tmp', 0)
res['chroot'] = call(libc.chroot, b'/tmp')
res['setns'] = call(libc.setns, 0, 0)
res['pivot_root'] = call(libc.syscall, 155, b'/tmp', b'/tmp')
res['keyctl'] = call(libc.syscall, 250, 0, 0, 0, 0, 0)
res['bpf'] = call(libc.syscall, 321, 0, 0, 0)
res['perf_event_open'] = call(libc.syscall, 298, 0, 0, -1, -1, 0)
res['init_module'] = call(libc.syscall, 175, 0, 0, b'')
res['finit_module'] = call(libc.syscall, 313, 0, b'', 0)
res['kexec_load'] = call(libc.syscall, 246, 0, 0, 0, 0)
res['reboot'] = call(libc.syscall, 169, 0xfee1dead, 672274793, 0x4321fedc, 0)
res['swapon'] = call(libc.syscall, 167, b'/tmp/x', 0)
res['io_uring_setup'] = call(libc.syscall, 425, 1, None)
res['userfaultfd'] = call(libc.syscall, 323, 0)
res['personality_bad'] = call(libc.personality, 0x0040000)
res['personality_query'] = call(libc.personality, 0xffffffff)
res['clone_newnet'] = call(libc.syscall, 56, 0x40000000 | 17, 0, 0, 0, 0)
res['clone_newuser'] = call(libc.syscall, 56, 0x10000000 | 17, 0, 0, 0, 0)
res['clone3'] = call(libc.syscall, 435, 0, 0)
# ptrace: attach to our own child.
pid = os.fork()
if pid == 0:
    time.sleep(5); os._exit(0)
res['ptrace_attach'] = call(libc.ptrace, 16, pid, None, None)
res['process_vm_readv'] = call(libc.syscall, 310, pid, 0, 0, 0, 0, 0)
os.kill(pid, 9); os.waitpid(pid, 0)
# Ordinary processes and threads still work (threads go through clone3 -> ENOSYS -> clone).
t = threading.Thread(target=lambda: res.__setitem__('thread', 'ran')); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
res['fork_exit'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(res))
"#;
    let (r, o) = h.report(script);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    for k in [
        "unshare_user",
        "unshare_net",
        "unshare_ns",
        "mount",
        "umount",
        "chroot",
        "setns",
        "pivot_root",
        "keyctl",
        "bpf",
        "perf_event_open",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "swapon",
        "io_uring_setup",
        "userfaultfd",
        "personality_bad",
        "clone_newnet",
        "clone_newuser",
        "ptrace_attach",
        "process_vm_readv",
    ] {
        assert_eq!(r[k], "EPERM", "{k}: {}", r[k]);
    }
    assert_eq!(r["clone3"], "ENOSYS");
    assert_eq!(r["personality_query"], "ok");
    assert_eq!(r["thread"], "ran");
    assert_eq!(r["fork_exit"], 7);
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    let Some(h) = Harness::new("forkbomb") else {
        return;
    };
    if !h.backend.protections().pids_limit {
        println!("SKIP a_fork_bomb_stops_at_pids_max: no pids cgroup controller here");
        return;
    }
    let script = r#"
import errno, json, os, time
children, failure = [], None
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        failure = errno.errorcode[e.errno]; break
    if pid == 0:
        time.sleep(30); os._exit(0)
    children.append(pid)
print(json.dumps({'forked': len(children), 'failure': failure}))
"#;
    let mut spec = h.spec(script);
    spec.pids_max = 16;
    let o = h.run(&spec);
    let r = o.report.clone().unwrap_or_else(|| panic!("{o:#?}"));
    assert_eq!(r["failure"], "EAGAIN", "{r}");
    // launcher + init + the runtime itself count against the limit.
    assert!(r["forked"].as_u64().unwrap_or(99) <= 13, "{r}");
    // The sleeping children died with the sandbox.
    assert!(wait_no_processes_of(o.uid).is_empty());
}

#[test]
fn a_memory_bomb_is_killed_by_the_cgroup() {
    let Some(h) = Harness::new("membomb") else {
        return;
    };
    if !h.backend.protections().memory_limit {
        println!("SKIP a_memory_bomb_is_killed_by_the_cgroup: no memory cgroup controller here");
        return;
    }
    let script = r#"
import sys
chunks = []
for i in range(1024):
    chunks.append(bytearray(1 << 20))
    if i % 16 == 0:
        print(i, flush=True)
print('survived 1 GiB', flush=True)
"#;
    let mut spec = h.spec(script);
    spec.memory_mb = 64;
    let o = h.run(&spec);
    assert!(!o.stdout.contains("survived"), "{o:#?}");
    assert_eq!(o.status, ExitStatus::Signal(9), "{o:#?}");
    assert!(o.oom_killed, "{o:#?}");
    assert!(o.peak.is_some_and(|p| p > 32 << 20), "{o:#?}");
}

#[test]
fn a_daemonized_grandchild_dies_with_the_sandbox() {
    let Some(h) = Harness::new("daemonized") else {
        return;
    };
    let script = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(1); os.close(2)
        time.sleep(60)
        os._exit(0)
    os._exit(0)
os.wait()
print('parent exits', flush=True)
"#;
    let spec = h.spec(script);
    let sb = h.start(&spec);
    let uid = sb.uid;
    let (out, _) = drain(sb.stdout, sb.stderr);
    assert!(out.contains("parent exits"));
    assert_eq!(sb.control.wait(), ExitStatus::Code(0));
    // The runtime is gone, so is its pid namespace: nothing runs as its uid.
    assert_eq!(wait_no_processes_of(uid), Vec::<i32>::new());
    sb.control.destroy();
    assert!(cgroup_dirs_named(&spec.id).is_empty());
}

#[test]
fn destroy_kills_a_running_sandbox_and_removes_its_cgroups() {
    let Some(h) = Harness::new("destroy") else {
        return;
    };
    let mut spec = h.spec("");
    spec.argv = vec!["/bin/sleep".into(), "1000".into()];
    let sb = h.start(&spec);
    assert!(sb.control.try_wait().is_none());
    // Every stage of the start is accounted for, in order.
    let stages: Vec<&str> = sb.start_stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        stages,
        [
            "host_prepare",
            "launcher_exec",
            "await_request",
            "cgroup_join",
            "unshare",
            "runtime_api_socket",
            "fork_init",
            "mounts",
            "privileges_seccomp",
            "runtime_exec",
            "ready_report"
        ]
    );
    let cgroups = cgroup_dirs_named(&spec.id);
    assert!(!cgroups.is_empty() || !h.backend.protections().memory_limit);
    assert!(!processes_of(sb.uid).is_empty());
    sb.control.destroy();
    sb.control.destroy(); // idempotent
    assert_eq!(sb.control.wait(), ExitStatus::Signal(9));
    assert_eq!(wait_no_processes_of(sb.uid), Vec::<i32>::new());
    for d in cgroups {
        assert!(!d.exists(), "{} remains", d.display());
    }
    assert!(!h.state_dir().join(&spec.id).exists());
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let Some(h) = Harness::new("status") else {
        return;
    };
    let o = h.run(&h.spec("import sys; sys.exit(3)"));
    assert_eq!(o.status, ExitStatus::Code(3));
    let o = h.run(&h.spec("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"));
    assert_eq!(o.status, ExitStatus::Signal(15));
    let o = h.run(&h.spec("import os; os.abort()"));
    assert_eq!(o.status, ExitStatus::Signal(6));
    // 137 is a code, not a SIGKILL.
    let o = h.run(&h.spec("import sys; sys.exit(137)"));
    assert_eq!(o.status, ExitStatus::Code(137));
}

#[test]
fn setup_failures_are_reported_and_cleaned_up() {
    let Some(h) = Harness::new("setupfail") else {
        return;
    };
    let mut spec = h.spec("");
    spec.argv = vec!["/var/task/missing".into()];
    let e = h
        .backend
        .start(&spec)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("cannot exec /var/task/missing") && e.contains("No such file"),
        "{e}"
    );
    let mut spec2 = h.spec("");
    spec2.cwd = "/nonexistent".into();
    let e = h
        .backend
        .start(&spec2)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("working directory /nonexistent"), "{e}");
    for s in [&spec, &spec2] {
        assert!(cgroup_dirs_named(&s.id).is_empty());
        assert!(!h.state_dir().join(&s.id).exists());
    }
    // The same id can be used again afterwards.
    let mut again = h.spec("print('{}')");
    again.id = spec.id.clone();
    assert_eq!(h.run(&again).status, ExitStatus::Code(0));
}

#[test]
fn the_environment_is_exactly_the_spec() {
    let Some(h) = Harness::new("environ") else {
        return;
    };
    // This machine's environment has PYTHONDONTWRITEBYTECODE=1 (so the test
    // process, standing in for the daemon, has it): it must not leak.
    if std::env::var_os("PYTHONDONTWRITEBYTECODE").is_none() {
        println!("note: PYTHONDONTWRITEBYTECODE is not set in this environment");
    }
    let script = r#"
import json
raw = open('/proc/self/environ', 'rb').read().split(b'\0')
print(json.dumps(sorted(e.decode() for e in raw if e)))
"#;
    let mut spec = h.spec(script);
    spec.env = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into()),
        ("EMPTY".into(), String::new()),
        ("UNICODE".into(), "héllo=wörld".into()),
    ];
    let o = h.run(&spec);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    assert_eq!(
        o.report,
        Some(serde_json::json!([
            "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001",
            "EMPTY=",
            "UNICODE=héllo=wörld"
        ]))
    );
}

#[test]
fn two_sandboxes_share_neither_uid_nor_tmp() {
    let Some(h) = Harness::new("twouids") else {
        return;
    };
    let writer = h.spec("import time\nopen('/tmp/secret', 'w').write('a')\nprint('written', flush=True)\ntime.sleep(30)\n");
    let a = h.start(&writer);
    let mut line = [0u8; 8];
    let mut out = std::fs::File::from(a.stdout.try_clone().expect("dup"));
    let _ = out.read(&mut line);
    let mut reader = h.spec("import json, os\nprint(json.dumps({'uid': os.getuid(), 'secret': os.path.exists('/tmp/secret'), 'tmp': os.listdir('/tmp')}))\n");
    reader.account_id = "111111111111".into();
    let b = h.start(&reader);
    let (bout, _) = drain(b.stdout, b.stderr);
    assert_eq!(b.control.wait(), ExitStatus::Code(0));
    let r: Value = serde_json::from_str(bout.trim()).unwrap_or_default();
    assert_ne!(a.uid, b.uid);
    assert!(a.uid != 0 && b.uid != 0);
    assert_eq!(r["uid"], u64::from(b.uid));
    assert_eq!(r["secret"], false);
    assert_eq!(r["tmp"], serde_json::json!([]));
    a.control.destroy();
    b.control.destroy();
}

#[test]
fn reap_leftovers_cleans_a_leaked_sandbox() {
    // Its own cgroup name: reaping must not touch the other tests' sandboxes.
    let Some(h) = Harness::with("reap", "hearth-reap-test", UserNamespaceMode::Auto) else {
        return;
    };
    let mut spec = h.spec("");
    spec.argv = vec!["/bin/sleep".into(), "1000".into()];
    let sb = h.start(&spec);
    let uid = sb.uid;
    let cgroups = cgroup_dirs_named(&spec.id);
    // The daemon "crashes": its handle is lost without destroy.
    std::mem::forget(sb);
    let again = LinuxBackend::new(config(h.state_dir(), "hearth-reap-test")).expect("backend");
    let n = again.reap_leftovers().expect("reap");
    assert_eq!(n, 1);
    assert_eq!(wait_no_processes_of(uid), Vec::<i32>::new());
    for d in cgroups {
        assert!(!d.exists(), "{} remains", d.display());
    }
    assert!(!h.state_dir().join(&spec.id).exists());
    assert_eq!(mounts_below(&h.state_dir()), Vec::<PathBuf>::new());
    assert_eq!(again.reap_leftovers().expect("reap"), 0);
    // Leave no trace of this test's cgroup name on the host.
    for parent in cgroup_dirs_named("hearth-reap-test") {
        let _ = std::fs::remove_dir(parent);
    }
}

#[test]
fn a_user_namespace_as_root_maps_the_sandbox_uid_to_itself() {
    let Some(h) = Harness::with("userns", "hearth", UserNamespaceMode::Always) else {
        return;
    };
    if !h.backend.protections().user_namespace {
        println!(
            "SKIP a_user_namespace_as_root...: {:?}",
            h.backend.protections().warnings
        );
        return;
    }
    let script = r#"
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
r = libc.unshare(0x10000000)
print(json.dumps({'uid': os.getuid(), 'uid_map': open('/proc/self/uid_map').read().split(),
  'gid_map': open('/proc/self/gid_map').read().split(), 'cap_eff': status['CapEff'].strip(),
  'unshare': errno.errorcode.get(ctypes.get_errno()) if r else 'ok', 'root': sorted(os.listdir('/')),
  'tmp_write': open('/tmp/x', 'w').write('y')}))
"#;
    let (r, o) = h.report(script);
    assert_eq!(o.status, ExitStatus::Code(0), "{o:#?}");
    let uid = o.uid.to_string();
    assert_eq!(r["uid"], u64::from(o.uid));
    assert_eq!(r["uid_map"], serde_json::json!([uid, uid, "1"]));
    assert_eq!(r["gid_map"], serde_json::json!([uid, uid, "1"]));
    assert_eq!(r["cap_eff"], "0000000000000000");
    assert_eq!(r["unshare"], "EPERM");
    assert_eq!(r["tmp_write"], 1);
}

#[test]
fn protections_are_reported() {
    let Some(h) = Harness::new("protections") else {
        return;
    };
    let p = h.backend.protections();
    println!("{p:#?}");
    assert!(p.can_isolate && p.network_namespace && p.seccomp);
    assert!(!p.user_namespace);
    if p.memory_limit {
        assert!(p.cgroup_version.is_some());
    }
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// Prints start latency (spawn -> runtime exec'd) and time to exit; asserts
/// nothing. "after idle" spaces the starts out: the first cgroup migration
/// after a quiet period waits for an RCU grace period in the kernel.
#[test]
fn start_latency_report() {
    let Some(h) = Harness::new("latency") else {
        return;
    };
    let cases = [
        (
            "/bin/true",
            vec!["/bin/true".to_owned()],
            50,
            Duration::ZERO,
        ),
        (
            "python3 -c pass",
            vec![PYTHON.to_owned(), "-c".to_owned(), "pass".to_owned()],
            50,
            Duration::ZERO,
        ),
        (
            "/bin/true, after idle",
            vec!["/bin/true".to_owned()],
            10,
            Duration::from_millis(100),
        ),
    ];
    for (name, argv, runs, idle) in cases {
        let mut ready = Vec::new();
        let mut done = Vec::new();
        for _ in 0..runs {
            std::thread::sleep(idle);
            let mut spec = h.spec("");
            spec.argv = argv.clone();
            let t = Instant::now();
            let sb = h.start(&spec);
            ready.push(t.elapsed());
            let (_o, _e) = drain(sb.stdout, sb.stderr);
            sb.control.wait();
            done.push(t.elapsed());
            sb.control.destroy();
        }
        println!(
            "LATENCY {name:>22}: spawn->ready p50 {:.2?} p90 {:.2?}; spawn->exit p50 {:.2?} p90 {:.2?} ({runs} runs)",
            percentile(&mut ready, 0.5),
            percentile(&mut ready, 0.9),
            percentile(&mut done, 0.5),
            percentile(&mut done, 0.9)
        );
    }
}

/// Set in the re-executed child of `an_unprivileged_daemon_isolates_with_a_user_namespace`.
const UNPRIVILEGED_ENV: &str = "HEARTH_SANDBOX_TEST_UNPRIVILEGED_STATE";
/// The uid the unprivileged "daemon" runs as (no passwd entry needed).
const UNPRIVILEGED_UID: u32 = 4242;

/// Issue item 9: without root, the backend still isolates with a user
/// namespace and says what it cannot enforce. As root, the test re-executes
/// itself as an unprivileged uid and checks what that child reports.
#[test]
fn an_unprivileged_daemon_isolates_with_a_user_namespace() {
    if let Some(state) = std::env::var_os(UNPRIVILEGED_ENV) {
        unprivileged_child(PathBuf::from(state));
        return;
    }
    if !is_root() {
        println!("SKIP an_unprivileged_daemon...: needs root to become an unprivileged uid");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state");
    nix::unistd::chown(
        &state,
        Some(nix::unistd::Uid::from_raw(UNPRIVILEGED_UID)),
        Some(nix::unistd::Gid::from_raw(UNPRIVILEGED_UID)),
    )
    .expect("chown");
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "an_unprivileged_daemon_isolates_with_a_user_namespace",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(UNPRIVILEGED_ENV, &state)
        .uid(UNPRIVILEGED_UID)
        .gid(UNPRIVILEGED_UID)
        .output()
        .expect("re-exec as an unprivileged uid");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if stdout.contains("SKIP") {
        return;
    }
    assert!(
        out.status.success(),
        "unprivileged run failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("UNPRIVILEGED OK"), "{stdout}\n{stderr}");
}

fn unprivileged_child(state: PathBuf) {
    assert_eq!(nix::unistd::geteuid().as_raw(), UNPRIVILEGED_UID);
    let backend = LinuxBackend::new(config(state.clone(), "hearth")).expect("backend without root");
    let p = backend.protections();
    println!("{p:#?}");
    if !p.can_isolate {
        println!(
            "SKIP unprivileged: this kernel refuses unprivileged user namespaces: {:?}",
            p.warnings
        );
        return;
    }
    assert!(p.user_namespace && p.network_namespace && p.seccomp);
    // No cgroup is delegated to uid 4242 here: said, with what to do.
    assert!(!p.memory_limit);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("memory") && w.contains("Delegate=yes")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("share")),
        "{:?}",
        p.warnings
    );

    let task = state.join("task");
    std::fs::create_dir(&task).expect("task");
    std::fs::write(
        task.join("x.py"),
        r#"
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
def attempt(f):
    try:
        f(); return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
r = libc.unshare(0x10000000)
print(json.dumps({'uid': os.getuid(), 'uid_map': open('/proc/self/uid_map').read().split(),
  'cap_eff': status['CapEff'].strip(), 'seccomp': status['Seccomp'].strip(), 'nnp': status['NoNewPrivs'].strip(),
  'shadow': os.path.exists('/etc/shadow'), 'root': sorted(os.listdir('/')),
  'usr_write': attempt(lambda: open('/usr/x', 'w')), 'tmp_write': attempt(lambda: open('/tmp/x', 'w')),
  'ifaces': socket.if_nameindex(), 'unshare': errno.errorcode.get(ctypes.get_errno()) if r else 'ok',
  'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}))
"#,
    )
    .expect("script");
    let spec = |id: &str, argv: Vec<String>| SandboxSpec {
        id: id.into(),
        account_id: "000000000000".into(),
        memory_mb: 128,
        pids_max: 64,
        task_root: Some(task.clone()),
        opt_root: None,
        runtime_dir: None,
        tmp_mb: 16,
        argv,
        env: vec![],
        cwd: "/var/task".into(),
        runtime_channel: false,
    };
    let sb = backend
        .start(&spec(
            "unpriv-1",
            vec![PYTHON.into(), "/var/task/x.py".into()],
        ))
        .unwrap_or_else(|e| panic!("start without root: {e}"));
    let (out, err) = drain(sb.stdout, sb.stderr);
    assert_eq!(sb.control.wait(), ExitStatus::Code(0), "{out}\n{err}");
    sb.control.destroy();
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}\n{err}"));
    println!("{r}");
    assert_eq!(r["uid"], u64::from(sb.uid));
    assert_eq!(
        r["uid_map"],
        serde_json::json!([sb.uid.to_string(), UNPRIVILEGED_UID.to_string(), "1"])
    );
    assert_eq!(r["cap_eff"], "0000000000000000");
    assert_eq!(r["seccomp"], "2");
    assert_eq!(r["nnp"], "1");
    assert_eq!(r["shadow"], false);
    assert_eq!(r["usr_write"], "EROFS");
    assert_eq!(r["tmp_write"], "ok");
    assert_eq!(r["ifaces"], serde_json::json!([[1, "lo"]]));
    assert_eq!(r["unshare"], "EPERM");
    assert_eq!(r["procs"].as_array().map(Vec::len), Some(2));

    // Shell-warm works without root too; code by mount_task needs host-side
    // mounts, which only a root daemon can make: refused, saying so.
    let mut warm = spec("unpriv-3", vec![]);
    let sb = backend
        .start(&warm)
        .unwrap_or_else(|e| panic!("shell-warm start without root: {e}"));
    sb.control
        .exec(&["/bin/sh".into(), "-c".into(), "exit 4".into()], &[], "/")
        .unwrap_or_else(|e| panic!("exec without root: {e}"));
    assert_eq!(sb.control.wait(), ExitStatus::Code(4));
    sb.control.destroy();
    warm.id = "unpriv-4".into();
    warm.task_root = None;
    let e = backend.start(&warm).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("root")), "{e:?}");
    assert!(!state.join("unpriv-4").exists());

    // Without a cgroup, destroy still takes the whole sandbox (the launcher's
    // death kills pid 1, whose death kills its namespace).
    let sb = backend
        .start(&spec("unpriv-2", vec!["/bin/sleep".into(), "1000".into()]))
        .unwrap_or_else(|e| panic!("start without root: {e}"));
    sb.control.destroy();
    assert_eq!(sb.control.wait(), ExitStatus::Signal(9));
    let me = std::process::id() as i32;
    let others: Vec<i32> = wait_no_other_processes_of(UNPRIVILEGED_UID, me);
    assert!(others.is_empty(), "left running: {others:?}");
    assert!(!state.join("unpriv-2").exists());
    println!("UNPRIVILEGED OK");
}

fn wait_no_other_processes_of(uid: u32, me: i32) -> Vec<i32> {
    for _ in 0..200 {
        let left: Vec<i32> = processes_of(uid).into_iter().filter(|p| *p != me).collect();
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    processes_of(uid).into_iter().filter(|p| *p != me).collect()
}

// ---------------------------------------------------------------------------
// Warmth levels: shell-warm sandboxes, code by mount propagation, limits on
// assignment, PSS.

impl Harness {
    /// A spec with no program (shell-warm) and, if `task` is false, no
    /// task_root (code by `mount_task`).
    fn warm_spec(&self, task: bool) -> SandboxSpec {
        let mut spec = self.spec("");
        spec.argv.clear();
        spec.env.clear();
        if !task {
            spec.task_root = None;
        }
        spec
    }

    /// A directory of "code" (content-addressed in the daemon; here a
    /// temporary directory) holding the given files.
    fn code(&self, files: &[(&str, &str, u32)]) -> PathBuf {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("code{n}"));
        std::fs::create_dir(&dir).expect("code dir");
        for (name, text, mode) in files {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("code file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn env_of(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Reads stdout up to and including the first newline (without consuming
/// more than that line).
fn read_line(f: &mut std::fs::File) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = f.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Host mount lines whose mount point is at or below `dir`.
fn mounts_at_or_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(&dir))
        })
        .map(str::to_owned)
        .collect()
}

const REPORT_SCRIPT: &str = r#"
import json, os, sys
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
raw = open('/proc/self/environ', 'rb').read().split(b'\0')
print(json.dumps({'argv': sys.argv, 'env': sorted(e.decode() for e in raw if e), 'cwd': os.getcwd(),
  'pid': os.getpid(), 'ppid': os.getppid(), 'uid': os.getuid(),
  'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
  'seccomp': status['Seccomp'].strip(), 'nnp': status['NoNewPrivs'].strip(),
  'cap_eff': status['CapEff'].strip()}), flush=True)
sys.exit(int(os.environ.get('EXIT', '0')))
"#;

#[test]
fn a_shell_warm_sandbox_runs_the_program_exec_sends() {
    let Some(h) = Harness::new("shellwarm") else {
        return;
    };
    let spec = h.warm_spec(true);
    let sb = h.start(&spec);
    // start returned: the sandbox is built and its init waits, alone.
    assert!(sb.control.try_wait().is_none());
    assert_eq!(processes_of(sb.uid).len(), 1, "only the init runs");
    let argv = strings(&[PYTHON, "-c", REPORT_SCRIPT, "a b", "ü"]);
    let env = env_of(&[("EXIT", "7"), ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")]);
    sb.control
        .exec(&argv, &env, "/tmp")
        .unwrap_or_else(|e| panic!("exec: {e}"));
    // Once only.
    let again = sb
        .control
        .exec(&argv, &env, "/tmp")
        .err()
        .map(|e| e.to_string());
    assert!(
        again.as_deref().is_some_and(|e| e.contains("already")),
        "{again:?}"
    );
    let (out, err) = drain(sb.stdout, sb.stderr);
    // The program's exit ends the sandbox, with its status.
    assert_eq!(sb.control.wait(), ExitStatus::Code(7), "{out}\n{err}");
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(r["argv"], serde_json::json!(["-c", "a b", "ü"]));
    assert_eq!(
        r["env"],
        serde_json::json!(["AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001", "EXIT=7"])
    );
    assert_eq!(r["cwd"], "/tmp");
    assert_eq!(r["ppid"], 1);
    assert_eq!(r["procs"], serde_json::json!([1, r["pid"]]));
    assert_eq!(r["uid"], u64::from(sb.uid));
    assert_eq!(r["seccomp"], "2");
    assert_eq!(r["nnp"], "1");
    assert_eq!(r["cap_eff"], "0000000000000000");
    assert!(sb.control.exec(&argv, &env, "/tmp").is_err());
    sb.control.destroy();
    assert_eq!(wait_no_processes_of(sb.uid), Vec::<i32>::new());
    assert!(cgroup_dirs_named(&spec.id).is_empty());
    assert!(!h.state_dir().join(&spec.id).exists());

    // Killed by a signal: passed through as for a program started by start.
    let sb = h.start(&h.warm_spec(true));
    sb.control
        .exec(
            &strings(&[
                PYTHON,
                "-c",
                "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
            ]),
            &[],
            "/",
        )
        .unwrap_or_else(|e| panic!("exec: {e}"));
    assert_eq!(sb.control.wait(), ExitStatus::Signal(15));
    sb.control.destroy();

    // exec is for shell-warm sandboxes only.
    let mut spec = h.spec("");
    spec.argv = vec!["/bin/sleep".into(), "1000".into()];
    let sb = h.start(&spec);
    let e = sb
        .control
        .exec(&strings(&["/bin/true"]), &[], "/")
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("shell-warm")),
        "{e:?}"
    );
    sb.control.destroy();
}

#[test]
fn a_failed_exec_is_reported_and_ends_the_sandbox() {
    let Some(h) = Harness::new("execfail") else {
        return;
    };
    let spec = h.warm_spec(true);
    let sb = h.start(&spec);
    // Refused before it reaches the sandbox, which keeps waiting.
    for (argv, env, cwd) in [
        (vec![], vec![], "/"),
        (strings(&["/bin/true"]), vec![], "relative"),
        (strings(&["/bin/true"]), env_of(&[("A=B", "1")]), "/"),
    ] {
        assert!(sb.control.exec(&argv, &env, cwd).is_err());
    }
    assert!(sb.control.try_wait().is_none());
    let e = sb
        .control
        .exec(&strings(&["/var/task/missing"]), &[], "/")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("cannot exec /var/task/missing") && e.contains("No such file"),
        "{e}"
    );
    assert_eq!(sb.control.wait(), ExitStatus::Code(1));
    assert!(sb.control.exec(&strings(&["/bin/true"]), &[], "/").is_err());
    sb.control.destroy();
    assert_eq!(wait_no_processes_of(sb.uid), Vec::<i32>::new());
    assert!(!h.state_dir().join(&spec.id).exists());

    // The same reporting as start's for a working directory that is not there.
    let sb = h.start(&h.warm_spec(true));
    let e = sb
        .control
        .exec(&strings(&["/bin/true"]), &[], "/nonexistent")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("working directory /nonexistent"), "{e}");
    sb.control.destroy();
}

/// Observes `/var/task` from inside: empty first, the code once mounted.
const WATCH_TASK: &str = r#"
import errno, json, os, sys, time
def attempt(f):
    try:
        f(); return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
print(json.dumps({'before': sorted(os.listdir('/var/task'))}), flush=True)
for _ in range(1000):
    if os.path.exists('/var/task/x.py'):
        break
    time.sleep(0.01)
mounts = []
for line in open('/proc/self/mountinfo'):
    f = line.split()
    mounts.append({'at': f[4], 'opts': f[5].split(','), 'prop': f[6:f.index('-')]})
st = os.stat('/var/task/x.py')
print(json.dumps({'after': sorted(os.listdir('/var/task')), 'x': open('/var/task/x.py').read(),
  'ino': st.st_ino, 'write': attempt(lambda: open('/var/task/x.py', 'a')),
  'create': attempt(lambda: open('/var/task/new', 'w')), 'mkdir': attempt(lambda: os.mkdir('/var/task/d')),
  'mounts': mounts}), flush=True)
"#;

#[test]
fn code_mounted_later_appears_read_only_at_var_task() {
    let Some(h) = Harness::new("mounttask") else {
        return;
    };
    let code = h.code(&[("x.py", "print('hi')\n", 0o666), ("data.txt", "42", 0o644)]);
    // World-writable on the host: only the read-only mount stands in the way.
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut spec = h.spec("");
    spec.task_root = None;
    spec.argv = strings(&[PYTHON, "-c", WATCH_TASK]);
    spec.cwd = "/tmp".into();
    let sb = h.start(&spec);
    let mut out = std::fs::File::from(sb.stdout);
    let first: Value = serde_json::from_str(&read_line(&mut out)).unwrap_or_default();
    assert_eq!(first["before"], serde_json::json!([]), "{first}");
    let host_task = h.state_dir().join(&spec.id).join("task");
    assert_eq!(
        mounts_at_or_below(&host_task).len(),
        1,
        "the shared self-bind"
    );

    let t = Instant::now();
    sb.control
        .mount_task(&code)
        .unwrap_or_else(|e| panic!("mount_task: {e}"));
    println!("mount_task took {:.2?}", t.elapsed());
    let e = sb.control.mount_task(&code).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("already")), "{e:?}");
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    assert_eq!(sb.control.wait(), ExitStatus::Code(0), "{rest}");
    let r: Value = serde_json::from_str(rest.trim()).unwrap_or_else(|_| panic!("{rest}"));
    assert_eq!(r["after"], serde_json::json!(["data.txt", "x.py"]));
    assert_eq!(r["x"], "print('hi')\n");
    for k in ["write", "create", "mkdir"] {
        assert_eq!(r[k], "EROFS", "{k}");
    }
    // The very file on the host, not a copy.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(code.join("x.py"))
        .map(|m| m.ino())
        .unwrap_or(0);
    assert_eq!(r["ino"], ino);
    // Inside, every mount is private except /var/task, a receive-only slave;
    // nothing is shared (nothing can propagate back to the host), and the
    // code on /var/task is read-only, nosuid, nodev.
    let mounts = r["mounts"].as_array().cloned().unwrap_or_default();
    let prop = |m: &Value| -> Vec<String> {
        m["prop"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for m in &mounts {
        let p = prop(m);
        assert!(!p.iter().any(|o| o.starts_with("shared:")), "{m}");
        // `/var/task` and `/opt` (the layers, mounted at specialisation)
        // receive from the host's shared mounts; nothing else does.
        if m["at"] == "/var/task" || m["at"] == "/opt" {
            assert!(p.iter().any(|o| o.starts_with("master:")), "{m}");
        } else {
            assert!(p.is_empty(), "{m} receives propagation");
        }
    }
    let task: Vec<&Value> = mounts.iter().filter(|m| m["at"] == "/var/task").collect();
    assert_eq!(task.len(), 2, "{mounts:?}");
    for m in task {
        for o in ["ro", "nosuid", "nodev"] {
            assert!(
                m["opts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == o)),
                "{m}"
            );
        }
    }

    // On the host: the shared self-bind and the code on it, each in a peer
    // group of its own (no other host mount propagates to or from them).
    let host = mounts_at_or_below(&host_task);
    assert_eq!(host.len(), 2, "self-bind + code: {host:#?}");
    let all = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in &host {
        let group = line
            .split(' ')
            .find(|f| f.starts_with("shared:"))
            .unwrap_or_else(|| panic!("not shared: {line}"));
        let members = all
            .lines()
            .filter(|l| l.split(' ').take_while(|f| *f != "-").any(|f| f == group))
            .count();
        assert_eq!(members, 1, "{group} has other members on the host");
    }
    // When the mount holding the state directory is shared (systemd's `/`),
    // the state directory is a private mount of its own, so none of this
    // reaches the host's other mount namespaces.
    let state = std::fs::canonicalize(h.state_dir()).expect("state dir");
    let state_line = all
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(state.to_string_lossy().as_ref()));
    let holder_shared = all
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| state.parent().is_some_and(|s| s.starts_with(p)))
        })
        .max_by_key(|l| l.split(' ').nth(4).map_or(0, |p| p.len()))
        .is_some_and(|l| l.contains(" shared:"));
    println!("state dir holder shared: {holder_shared}; state dir mount: {state_line:?}");
    if holder_shared {
        let line = state_line.expect("the state directory is a mount point");
        assert!(
            !line
                .split(' ')
                .take_while(|f| *f != "-")
                .any(|f| f.starts_with("shared:")),
            "{line}"
        );
    }
    sb.control.destroy();
    // The host-side mounts are gone, the shared code is intact.
    assert_eq!(
        mounts_at_or_below(&h.state_dir().join(&spec.id)),
        Vec::<String>::new()
    );
    assert!(!h.state_dir().join(&spec.id).exists());
    assert_eq!(
        std::fs::read_to_string(code.join("x.py")).ok().as_deref(),
        Some("print('hi')\n")
    );
    assert!(sb.control.mount_task(&code).is_err());

    // mount_task is for sandboxes without task_root.
    let mut spec = h.spec("");
    spec.argv = vec!["/bin/sleep".into(), "1000".into()];
    let sb = h.start(&spec);
    let e = sb.control.mount_task(&code).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("task_root")),
        "{e:?}"
    );
    sb.control.destroy();
}

#[test]
fn two_sandboxes_see_the_same_mounted_code() {
    let Some(h) = Harness::new("sharedcode") else {
        return;
    };
    let code = h.code(&[("x.py", "print('shared')\n", 0o644)]);
    let script = r#"
import json, os, sys, time
print('up', flush=True)
for _ in range(1000):
    if os.path.exists('/var/task/x.py'):
        break
    time.sleep(0.01)
print(json.dumps({'x': open('/var/task/x.py').read(), 'ino': os.stat('/var/task/x.py').st_ino}), flush=True)
time.sleep(30)
"#;
    let mut sbs = Vec::new();
    for _ in 0..2 {
        let mut spec = h.spec("");
        spec.task_root = None;
        spec.argv = strings(&[PYTHON, "-c", script]);
        spec.cwd = "/".into();
        let sb = h.start(&spec);
        let mut out = std::fs::File::from(sb.stdout.try_clone().expect("dup"));
        assert_eq!(read_line(&mut out), "up");
        sbs.push((spec, sb, out));
    }
    for (_, sb, _) in &sbs {
        sb.control
            .mount_task(&code)
            .unwrap_or_else(|e| panic!("mount_task: {e}"));
    }
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(code.join("x.py"))
        .map(|m| m.ino())
        .unwrap_or(0);
    for (_, _, out) in &mut sbs {
        let r: Value = serde_json::from_str(&read_line(out)).unwrap_or_default();
        assert_eq!(r["x"], "print('shared')\n", "{r}");
        assert_eq!(r["ino"], ino);
    }
    // Destroying one leaves the other's code (and the code itself) alone.
    let (spec0, sb0, _) = sbs.remove(0);
    sb0.control.destroy();
    assert!(mounts_at_or_below(&h.state_dir().join(&spec0.id)).is_empty());
    let (spec1, sb1, _) = sbs.remove(0);
    // Its shared `task` with the code on it, and its (empty) shared `opt`.
    assert_eq!(mounts_at_or_below(&h.state_dir().join(&spec1.id)).len(), 3);
    assert!(sb1.control.try_wait().is_none());
    sb1.control.destroy();
    assert_eq!(mounts_below(&h.state_dir()), Vec::<PathBuf>::new());
    assert!(code.join("x.py").exists());
}

#[test]
fn a_shell_warm_sandbox_gets_code_then_execs_its_bootstrap() {
    let Some(h) = Harness::new("provided") else {
        return;
    };
    // A `provided` function: its own bootstrap executable in its code.
    let code = h.code(&[(
        "bootstrap",
        "#!/bin/sh\necho \"$0 $1 $HANDLER $(pwd)\"\nexit 5\n",
        0o755,
    )]);
    let sb = h.start(&h.warm_spec(false));
    sb.control
        .mount_task(&code)
        .unwrap_or_else(|e| panic!("mount_task: {e}"));
    sb.control
        .exec(
            &strings(&["/var/task/bootstrap", "arg"]),
            &env_of(&[("HANDLER", "h.x"), ("PATH", "/usr/bin:/bin")]),
            "/var/task",
        )
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let (out, err) = drain(sb.stdout, sb.stderr);
    assert_eq!(sb.control.wait(), ExitStatus::Code(5), "{out}\n{err}");
    assert_eq!(out.trim(), "/var/task/bootstrap arg h.x /var/task");
    sb.control.destroy();
}

#[test]
fn reap_leftovers_unmounts_a_leaked_sandboxs_code() {
    let Some(h) = Harness::with("reapmount", "hearth-reapm-test", UserNamespaceMode::Auto) else {
        return;
    };
    let code = h.code(&[("x.py", "", 0o644)]);
    let mut spec = h.warm_spec(false);
    spec.argv = vec!["/bin/sleep".into(), "1000".into()];
    let sb = h.start(&spec);
    sb.control
        .mount_task(&code)
        .unwrap_or_else(|e| panic!("mount_task: {e}"));
    let uid = sb.uid;
    // The shared `task` with the code on it, and the shared `opt`.
    assert_eq!(mounts_below(&h.state_dir()).len(), 3);
    std::mem::forget(sb);
    let again = LinuxBackend::new(config(h.state_dir(), "hearth-reapm-test")).expect("backend");
    assert_eq!(again.reap_leftovers().expect("reap"), 1);
    assert_eq!(wait_no_processes_of(uid), Vec::<i32>::new());
    assert_eq!(mounts_below(&h.state_dir()), Vec::<PathBuf>::new());
    assert!(!h.state_dir().join(&spec.id).exists());
    assert!(code.join("x.py").exists());
    for parent in cgroup_dirs_named("hearth-reapm-test") {
        let _ = std::fs::remove_dir(parent);
    }
}

fn memory_limit_file(id: &str) -> Option<PathBuf> {
    cgroup_dirs_named(id)
        .into_iter()
        .flat_map(|d| [d.join("memory.limit_in_bytes"), d.join("memory.max")])
        .find(|f| f.exists())
}

#[test]
fn set_memory_limit_lowers_the_limit_a_memory_bomb_meets() {
    let Some(h) = Harness::new("setmem") else {
        return;
    };
    if !h.backend.protections().memory_limit {
        println!("SKIP set_memory_limit...: no memory cgroup controller here");
        return;
    }
    // Built for the 512 MiB class, assigned to a 64 MiB function.
    let mut spec = h.warm_spec(true);
    spec.memory_mb = 512;
    let sb = h.start(&spec);
    let limit = memory_limit_file(&spec.id).expect("memory cgroup");
    let read = || {
        std::fs::read_to_string(&limit)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(read(), (512u64 << 20).to_string());
    sb.control.set_memory_limit(256).expect("lower to 256");
    assert_eq!(read(), (256u64 << 20).to_string());
    sb.control.set_memory_limit(1024).expect("raise to 1024");
    assert_eq!(read(), (1024u64 << 20).to_string());
    sb.control.set_memory_limit(64).expect("lower to 64");
    assert_eq!(read(), (64u64 << 20).to_string());
    assert!(sb.control.set_memory_limit(0).is_err());
    let bomb = r#"
chunks = []
for i in range(1024):
    chunks.append(bytearray(1 << 20))
    if i % 16 == 0:
        print(i, flush=True)
print('survived 1 GiB', flush=True)
"#;
    sb.control
        .exec(&strings(&[PYTHON, "-c", bomb]), &[], "/")
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let (out, err) = drain(sb.stdout, sb.stderr);
    let status = sb.control.wait();
    let peak = sb.control.peak_memory_bytes();
    let printed: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    println!(
        "memory bomb at 64 MiB: {status:?}, peak {peak:?}, last MiB printed {:?}",
        printed.last()
    );
    assert!(!out.contains("survived"), "{out}\n{err}");
    assert_eq!(status, ExitStatus::Signal(9), "{out}\n{err}");
    assert!(sb.control.oom_killed());
    // Killed near 64 MiB, far below the class's 512.
    assert!(peak.is_some_and(|p| p <= 66 << 20), "{peak:?}");
    assert!(printed.last().is_some_and(|n| *n < 64), "{printed:?}");
    sb.control.destroy();
}

#[test]
fn pss_of_an_idle_python_sandbox_is_plausible() {
    let Some(h) = Harness::new("pss") else {
        return;
    };
    let warm = h.start(&h.warm_spec(true));
    let shell = warm.control.pss_bytes();
    let mut spec = h.spec("");
    spec.argv = strings(&[
        PYTHON,
        "-c",
        "import time; print('idle', flush=True); time.sleep(60)",
    ]);
    let sb = h.start(&spec);
    let mut out = std::fs::File::from(sb.stdout.try_clone().expect("dup"));
    assert_eq!(read_line(&mut out), "idle");
    let pss = sb.control.pss_bytes();
    println!(
        "PSS: idle shell-warm sandbox (launcher + init) {:.2} MiB; idle python3 sandbox (launcher + init + python3) {:.2} MiB",
        shell.unwrap_or(0) as f64 / 1048576.0,
        pss.unwrap_or(0) as f64 / 1048576.0
    );
    if h.backend.protections().cgroup_version.is_none() {
        assert_eq!(pss, None);
        return;
    }
    assert!(
        shell.is_some_and(|p| p > 100 << 10 && p < 16 << 20),
        "{shell:?}"
    );
    assert!(pss.is_some_and(|p| p > 2 << 20 && p < 64 << 20), "{pss:?}");
    assert!(pss > shell);
    warm.control.destroy();
    sb.control.destroy();
    assert_eq!(sb.control.pss_bytes(), None);
}

/// Prints (asserts nothing) what warmth saves: `python3 -c pass` started
/// cold (start: spawn -> exec'd; -> exit) against exec on a shell-warm
/// sandbox (exec -> exec'd; -> exit), and the time of `mount_task`.
#[test]
fn warmth_latency_report() {
    let Some(h) = Harness::new("warmlatency") else {
        return;
    };
    let argv = strings(&[PYTHON, "-c", "pass"]);
    let runs = 30;
    let (mut cold_ready, mut cold_exit) = (Vec::new(), Vec::new());
    let (mut warm_build, mut exec_ready, mut exec_exit) = (Vec::new(), Vec::new(), Vec::new());
    let mut mount = Vec::new();
    let code = h.code(&[("x.py", "", 0o644)]);
    for _ in 0..runs {
        let mut spec = h.spec("");
        spec.argv = argv.clone();
        let t = Instant::now();
        let sb = h.start(&spec);
        cold_ready.push(t.elapsed());
        let _ = drain(sb.stdout, sb.stderr);
        sb.control.wait();
        cold_exit.push(t.elapsed());
        sb.control.destroy();

        let t = Instant::now();
        let sb = h.start(&h.warm_spec(false));
        warm_build.push(t.elapsed());
        let t = Instant::now();
        sb.control
            .mount_task(&code)
            .unwrap_or_else(|e| panic!("mount_task: {e}"));
        mount.push(t.elapsed());
        let t = Instant::now();
        sb.control
            .exec(&argv, &[], "/var/task")
            .unwrap_or_else(|e| panic!("exec: {e}"));
        exec_ready.push(t.elapsed());
        let _ = drain(sb.stdout, sb.stderr);
        sb.control.wait();
        exec_exit.push(t.elapsed());
        sb.control.destroy();
    }
    let p = |v: &mut Vec<Duration>| {
        format!(
            "p50 {:.2?} p90 {:.2?}",
            percentile(v, 0.5),
            percentile(v, 0.9)
        )
    };
    println!("WARMTH python3 -c pass, {runs} runs each:");
    println!(
        "  cold start:         spawn->exec'd {}; spawn->exit {}",
        p(&mut cold_ready),
        p(&mut cold_exit)
    );
    println!(
        "  shell-warm build:   spawn->waiting {}",
        p(&mut warm_build)
    );
    println!(
        "  shell-warm exec:    exec->exec'd  {}; exec->exit  {}",
        p(&mut exec_ready),
        p(&mut exec_exit)
    );
    println!("  mount_task:         {}", p(&mut mount));
}

#[test]
fn warmth_works_in_a_user_namespace_too() {
    let Some(h) = Harness::with("warmuserns", "hearth", UserNamespaceMode::Always) else {
        return;
    };
    if !h.backend.protections().user_namespace {
        println!("SKIP warmth_works_in_a_user_namespace_too: no user namespaces here");
        return;
    }
    let code = h.code(&[("x.py", "import json, os\nprint(json.dumps({'uid_map': open('/proc/self/uid_map').read().split(), 'ls': sorted(os.listdir('/var/task'))}))\n", 0o644)]);
    let sb = h.start(&h.warm_spec(false));
    sb.control
        .mount_task(&code)
        .unwrap_or_else(|e| panic!("mount_task: {e}"));
    sb.control
        .exec(&strings(&[PYTHON, "/var/task/x.py"]), &[], "/var/task")
        .unwrap_or_else(|e| panic!("exec: {e}"));
    let (out, err) = drain(sb.stdout, sb.stderr);
    assert_eq!(sb.control.wait(), ExitStatus::Code(0), "{out}\n{err}");
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let uid = sb.uid.to_string();
    assert_eq!(r["uid_map"], serde_json::json!([uid, uid, "1"]));
    assert_eq!(r["ls"], serde_json::json!(["x.py"]));
    sb.control.destroy();
    assert_eq!(mounts_below(&h.state_dir()), Vec::<PathBuf>::new());
}
