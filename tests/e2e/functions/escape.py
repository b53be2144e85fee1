"""The isolation suite's function (handler `escape.handler`).

Each operation tries a way out of the sandbox and reports what happened as
data (errno names), so the test decides what counts as contained. Nothing
here sends traffic anywhere but 127.0.0.1; every loop is bounded.
"""

import ctypes
import errno
import json
import os
import platform
import signal
import socket
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# System call numbers (x86_64, aarch64).
_NR = {
    "x86_64": dict(mount=165, umount2=166, ptrace=101, init_module=175, finit_module=313, delete_module=176,
                   unshare=272, setns=308, bpf=321, perf_event_open=298, keyctl=250, kexec_load=246,
                   reboot=169, swapon=167, pivot_root=155, chroot=161, modify_ldt=154, mbind=237,
                   set_mempolicy=238, get_mempolicy=239, migrate_pages=256, move_pages=279, process_madvise=440,
                   sethostname=170, cachestat=451, open_tree_attr=467),
    "aarch64": dict(mount=40, umount2=39, ptrace=117, init_module=105, finit_module=273, delete_module=106,
                    unshare=97, setns=268, bpf=280, perf_event_open=241, keyctl=219, kexec_load=104,
                    reboot=142, swapon=224, pivot_root=41, chroot=51, mbind=235, get_mempolicy=236,
                    set_mempolicy=237, migrate_pages=238, move_pages=239, process_madvise=440, sethostname=161,
                    cachestat=451, open_tree_attr=467),
}[platform.machine()]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


def _ename(n):
    return errno.errorcode.get(n, str(n))


def attempt(fn, *args):
    """{"ok": True, "value": ...} or {"ok": False, "errno": "EPERM", "error": "..."}."""
    try:
        return {"ok": True, "value": fn(*args)}
    except OSError as e:
        return {"ok": False, "errno": _ename(e.errno) if e.errno else None, "error": str(e)}
    except Exception as e:  # noqa: BLE001 (reported, not raised)
        return {"ok": False, "errno": None, "error": "%s: %s" % (type(e).__name__, e)}


def raw_syscall(name, *args):
    """The syscall's result: {"ok": True, "value": ret} or the errno's name."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(_NR[name]), *cargs)
    if ret == -1:
        return {"ok": False, "errno": _ename(ctypes.get_errno())}
    return {"ok": True, "value": ret}


def read_text(path, limit=65536):
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def status_fields():
    out = {}
    for line in read_text("/proc/self/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Groups"):
            out[k] = v.strip()
    return out


def identity():
    return {
        "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(), "pid": os.getpid(),
        "status": status_fields(),
        "cgroup": read_text("/proc/self/cgroup").splitlines(),
        "hostname": socket.gethostname(),
    }


def op_identity(event):
    out = identity()
    out["passwd"] = attempt(read_text, "/etc/passwd")
    out["etc"] = attempt(lambda: sorted(os.listdir("/etc")))
    out["root_dir"] = attempt(lambda: sorted(os.listdir("/")))
    out["mounts"] = attempt(read_text, "/proc/self/mounts")
    out["setuid0"] = attempt(os.setuid, 0)
    out["setgid0"] = attempt(os.setgid, 0)
    return out


def op_read(event):
    out = {}
    for p in event["paths"]:
        if os.path.isdir(p):
            out[p] = attempt(lambda p=p: sorted(os.listdir(p)))
        else:
            out[p] = attempt(read_text, p)
    return out


def _write(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"escaped\n")
    finally:
        os.close(fd)
    os.unlink(path)
    return "written"


def op_write(event):
    out = {}
    for d in event["dirs"]:
        out[d] = {
            "file": attempt(_write, os.path.join(d, "e2e-escape-%d" % os.getpid())),
            "mkdir": attempt(lambda d=d: (os.mkdir(os.path.join(d, "e2e-escape-dir")),
                                          os.rmdir(os.path.join(d, "e2e-escape-dir")))[1]),
        }
    for f in event.get("existing", []):
        out[f] = {"append": attempt(lambda f=f: open(f, "ab").close())}
    return out


def _listeners():
    """Listening TCP sockets (address:port) in this network namespace."""
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = read_text(table).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 3 and f[3] == "0A":  # TCP_LISTEN
                addr, port = f[1].split(":")
                if not v6:
                    ip = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
                else:
                    ip = addr
                out.append("%s:%d" % (ip, int(port, 16)))
    return sorted(out)


def _connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", port))
        return "connected"
    finally:
        s.close()


def _runtime_api_probe():
    """A bogus request id on this sandbox's own Runtime API is refused."""
    s = socket.create_connection(("127.0.0.1", 9001), timeout=3)
    try:
        body = b'"hijack"'
        s.sendall(b"POST /2018-06-01/runtime/invocation/00000000-0000-0000-0000-000000000000/response HTTP/1.1\r\n"
                  b"Host: 127.0.0.1:9001\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n%s" % (len(body), body))
        data = b""
        for _ in range(100):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                break
        return data.split(b"\r\n", 1)[0].decode("latin-1")
    finally:
        s.close()


def op_net(event):
    routes = read_text("/proc/net/route").splitlines()[1:]
    v6 = attempt(read_text, "/proc/net/ipv6_route")
    return {
        "interfaces": [name for _, name in socket.if_nameindex()],
        "routes": [r for r in routes if r.strip()],
        "ipv6_route_devices": sorted({ln.split()[-1] for ln in v6["value"].splitlines() if ln.strip()}) if v6["ok"] else None,
        "listeners": _listeners(),
        "connect": {str(p): attempt(_connect, p) for p in event.get("ports", [])},
        "own_runtime_api": attempt(_runtime_api_probe),
    }


def _proc_list():
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmd = read_text("/proc/%s/cmdline" % name).replace("\0", " ").strip()
                uid = [ln.split()[1] for ln in read_text("/proc/%s/status" % name).splitlines() if ln.startswith("Uid:")][0]
            except (OSError, IndexError):
                continue
            out.append({"pid": int(name), "uid": int(uid), "cmdline": cmd})
    return out


def op_procs(event):
    out = {"self": os.getpid(), "procs": _proc_list()}
    out["kill_init"] = attempt(os.kill, 1, signal.SIGKILL)
    time.sleep(0.2)
    out["init_alive_after"] = os.path.exists("/proc/1")
    out["host_pids"] = {str(p): attempt(os.kill, p, signal.SIGKILL) for p in event.get("host_pids", [])}
    out["setuid_other"] = {str(u): attempt(os.setuid, u) for u in event.get("other_uids", [])}
    if event.get("kill_all"):
        out["kill_all"] = attempt(os.kill, -1, signal.SIGKILL)
    return out


def op_syscalls(event):
    nul = ctypes.c_char_p(None)
    out = {
        "mount": raw_syscall("mount", ctypes.c_char_p(b"none"), ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"tmpfs"), 0, nul),
        "mount_bind": raw_syscall("mount", ctypes.c_char_p(b"/"), ctypes.c_char_p(b"/tmp"), nul, 4096, nul),
        "umount2": raw_syscall("umount2", ctypes.c_char_p(b"/proc"), 2),
        "ptrace_traceme": raw_syscall("ptrace", 0, 0, 0, 0),
        "ptrace_attach_init": raw_syscall("ptrace", 16, 1, 0, 0),
        "init_module": raw_syscall("init_module", nul, 0, ctypes.c_char_p(b"")),
        "finit_module": raw_syscall("finit_module", -1, ctypes.c_char_p(b""), 0),
        "delete_module": raw_syscall("delete_module", ctypes.c_char_p(b"e2e_nothing"), 0),
        "bpf": raw_syscall("bpf", 0, nul, 0),
        "perf_event_open": raw_syscall("perf_event_open", nul, 0, -1, -1, 0),
        "keyctl": raw_syscall("keyctl", 0, -3, 0),
        "kexec_load": raw_syscall("kexec_load", 0, 0, nul, 0),
        "reboot": raw_syscall("reboot", 0, 0, 0, nul),  # bad magic: EINVAL if it got through
        "swapon": raw_syscall("swapon", ctypes.c_char_p(b"/tmp/e2e-no-swap"), 0),
        "setns_net": attempt(lambda: _setns("/proc/self/ns/net", CLONE_NEWNET)),
        "setns_mnt": attempt(lambda: _setns("/proc/self/ns/mnt", CLONE_NEWNS)),
    }
    for label, flag in (("user", CLONE_NEWUSER), ("mount", CLONE_NEWNS), ("net", CLONE_NEWNET),
                        ("pid", CLONE_NEWPID), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC),
                        ("cgroup", CLONE_NEWCGROUP)):
        out["unshare_" + label] = raw_syscall("unshare", flag)
    out["chroot"] = raw_syscall("chroot", ctypes.c_char_p(b"/tmp"))
    # What Docker's default profile allows only with added capabilities.
    buf = ctypes.create_string_buffer(64)
    out["mbind"] = raw_syscall("mbind", 0, 4096, 0, nul, 0, 0)
    out["set_mempolicy"] = raw_syscall("set_mempolicy", 0, nul, 0)
    out["get_mempolicy"] = raw_syscall("get_mempolicy", nul, nul, 0, nul, 0)
    out["migrate_pages"] = raw_syscall("migrate_pages", 0, 0, nul, nul)
    out["move_pages"] = raw_syscall("move_pages", 0, 0, nul, nul, nul, 0)
    out["process_madvise"] = raw_syscall("process_madvise", -1, nul, 0, 0, 0)
    out["sethostname"] = raw_syscall("sethostname", ctypes.c_char_p(b"e2e"), 3)
    if "modify_ldt" in _NR:
        out["modify_ldt"] = raw_syscall("modify_ldt", 0, buf, 64)  # read the LDT
    return out


def op_unvetted(event):
    """Syscalls newer than the sandbox policy was reviewed against (with bad
    arguments: if they got through, the kernel would say EBADF or EFAULT)."""
    nul = ctypes.c_char_p(None)
    return {
        "cachestat": raw_syscall("cachestat", -1, nul, nul, 0),
        "open_tree_attr": raw_syscall("open_tree_attr", -1, ctypes.c_char_p(b"/"), 0, nul, 0),
    }


def _open_socket(family, kind, proto):
    s = socket.socket(family, kind, proto)
    s.close()
    return True


def op_families(event):
    """Every address family 0..45 (by stream, datagram, raw and seqpacket
    sockets) and socketpair, and every netlink protocol 0..31: which open."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET)
    families, pairs = {}, {}
    for fam in range(46):
        tries = [attempt(_open_socket, fam, k, 0) for k in kinds]
        opened = [t for t in tries if t["ok"]]
        families[str(fam)] = {"ok": True} if opened else {"ok": False, "errnos": sorted({str(t["errno"]) for t in tries})}
        pairs[str(fam)] = attempt(lambda f=fam: [s.close() for s in socket.socketpair(f, socket.SOCK_STREAM)] and True)
    netlink = {}
    for proto in range(32):
        tries = [attempt(_open_socket, socket.AF_NETLINK, k, proto) for k in (socket.SOCK_RAW, socket.SOCK_DGRAM)]
        netlink[str(proto)] = next((t for t in tries if t["ok"]), tries[0])
    return {"families": families, "socketpair": pairs, "netlink": netlink,
            "vsock": attempt(_open_socket, 40, socket.SOCK_STREAM, 0)}


def op_proc(event):
    """What /proc shows of the host."""
    def readlink(p):
        return os.readlink(p)
    return {
        "init_cmdline": attempt(lambda: read_text("/proc/1/cmdline")),
        "init_exe": attempt(readlink, "/proc/1/exe"),
        "init_maps": attempt(lambda: read_text("/proc/1/maps")),
        "mountinfo": attempt(read_text, "/proc/self/mountinfo"),
        "sys": attempt(lambda: sorted(os.listdir("/proc/sys"))),
        "sys_write": attempt(lambda: open("/proc/sys/kernel/hostname", "w").write("x")),
        "files": {f: attempt(read_text, "/proc/" + f, 4096) for f in
                  ("kallsyms", "timer_list", "sched_debug", "keys", "modules", "kcore")},
        # A sandbox still reads what describes itself and the machine's size.
        "own": {f: attempt(lambda f=f: len(read_text("/proc/" + f)) > 0) for f in
                ("meminfo", "cpuinfo", "self/status", "self/maps", "stat", "uptime")},
    }


def _setns(path, nstype):
    fd = os.open(path, os.O_RDONLY)
    try:
        r = raw_syscall("setns", fd, nstype)
        if not r["ok"]:
            raise OSError(getattr(errno, r["errno"], 0), r["errno"])
        return r["value"]
    finally:
        os.close(fd)


def op_forkbomb(event):
    """Forks until fork fails (bounded); the children wait on a pipe and are
    released and reaped before returning."""
    limit = event.get("max", 2000)
    r, w = os.pipe()
    pids = []
    failure = None
    for _ in range(limit):
        try:
            pid = os.fork()
        except OSError as e:
            failure = _ename(e.errno)
            break
        if pid == 0:
            try:
                os.close(w)
                os.read(r, 1)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    os.close(r)
    return {"forked": len(pids), "failure": failure}


def op_fill_tmp(event):
    chunk = b"\xa5" * (16 << 20)
    written = 0
    failure = None
    paths = []
    for i in range(event.get("max_chunks", 48)):
        path = "/tmp/e2e-fill-%d" % i
        paths.append(path)
        try:
            with open(path, "wb") as f:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            written += len(chunk)
        except OSError as e:
            failure = _ename(e.errno)
            break
    st = os.statvfs("/tmp")
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    return {"written_mb": written >> 20, "failure": failure, "tmp_size_mb": (st.f_blocks * st.f_frsize) >> 20}


def op_alloc(event):
    chunks = []
    for _ in range(event["mb"] // 16):
        chunks.append(b"\x01" * (16 << 20))
    return {"allocated_mb": 16 * len(chunks)}


def op_daemonize(event):
    """Leaves a grandchild behind (double fork, setsid) running `sleep <seconds>`,
    then returns (or sleeps past the timeout when asked)."""
    seconds = str(event["seconds"])
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execv("/bin/sleep", ["sleep", seconds])
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    me = identity()
    print("E2E-IDENTITY " + json.dumps(me), flush=True)
    if event.get("then_sleep"):
        time.sleep(event["then_sleep"])
    return me


def op_marker(event):
    path = "/tmp/e2e-marker"
    existed = os.path.exists(path)
    before = sorted(os.listdir("/tmp"))
    with open(path, "w") as f:
        f.write(event.get("tag", ""))
    return {"uid": os.getuid(), "existed": existed, "tmp_before": before}


def op_sleep(event):
    print("E2E-IDENTITY " + json.dumps(identity()), flush=True)
    time.sleep(event["seconds"])
    return {"slept": event["seconds"]}


OPS = {
    "identity": op_identity, "read": op_read, "write": op_write, "net": op_net, "procs": op_procs,
    "syscalls": op_syscalls, "forkbomb": op_forkbomb, "fill_tmp": op_fill_tmp, "alloc": op_alloc,
    "daemonize": op_daemonize, "marker": op_marker, "sleep": op_sleep, "unvetted": op_unvetted,
    "families": op_families, "proc": op_proc,
}


def handler(event, context):
    if not isinstance(event, dict) or "op" not in event:
        return event
    return OPS[event["op"]](event)
