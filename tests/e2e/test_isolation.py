"""The isolation suite: each test runs a function that tries to get out of
its sandbox (tests/e2e/functions/escape.py reports every attempt as data),
asserts that the attempt failed, and that the daemon is healthy afterwards
(a normal function still invokes).

Host-side checks (processes by uid, cgroup directories) need root, as
Hearth needs root for a private uid and cgroup per sandbox; CI runs as root.
No test traffic leaves 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from pathlib import Path

import pytest

from hearth_e2e import (
    FUNCTIONS_DIR,
    REPO,
    SANDBOX_UID_MAX,
    SANDBOX_UID_MIN,
    HostProcess,
    create_fn,
    hearth_bin,
    host_processes,
    invoke,
    invoke_error,
    invoke_ok,
    is_root,
    make_zip,
    nonce,
    processes_of_uid,
    sandbox_cgroup_dirs,
    py_zip,
    unique_name,
    wait_until,
)

ESCAPE = (FUNCTIONS_DIR / "escape.py").read_text()
GONE_TIMEOUT_S = 30  # bound on waiting for a retired sandbox's processes and cgroups to go

needs_root = pytest.mark.skipif(
    not is_root(),
    reason="needs root: only as root does Hearth give each sandbox its own host uid and cgroup to check from outside",
)


def escape_zip() -> bytes:
    return make_zip({"escape.py": ESCAPE, "nonce.txt": nonce()})


@pytest.fixture(scope="module")
def fns(lam) -> dict[str, str]:
    """esc: 1 GB (room for the fork bomb's children and a full /tmp), 60 s;
    small: 128 MB, 3 s; canary: a plain echo function."""
    names = {k: unique_name(f"iso-{k}") for k in ("esc", "small", "canary", "victim")}
    create_fn(lam, names["esc"], zip_bytes=escape_zip(), handler="escape.handler", MemorySize=1024, Timeout=60)
    create_fn(lam, names["small"], zip_bytes=escape_zip(), handler="escape.handler", MemorySize=128, Timeout=3)
    create_fn(lam, names["victim"], zip_bytes=escape_zip(), handler="escape.handler", MemorySize=128, Timeout=30)
    create_fn(lam, names["canary"], zip_bytes=py_zip())
    return names


def assert_healthy(hearth, lam, fns) -> None:
    """The daemon is alive, answers, and a normal function still invokes."""
    assert hearth.proc is not None and hearth.proc.poll() is None, f"hearth serve died\n{hearth.log_tail()}"
    r = hearth.raw("GET", "/hearth/v1/health", sign=False)
    assert r.status == 200, (r.status, r.body)
    tag = nonce()
    inv = invoke_ok(lam, fns["canary"], {"tag": tag})
    assert inv.json() == {"ok": True, "event": {"tag": tag}}, inv.describe()


def run(lam, name: str, event: dict) -> dict:
    return invoke_ok(lam, name, event).json()


def refused(result: dict, *errnos: str) -> bool:
    return result.get("ok") is False and (not errnos or result.get("errno") in errnos)


def identity_from_log(log: str) -> dict:
    for line in (log or "").splitlines():
        if "E2E-IDENTITY " in line:
            return json.loads(line.split("E2E-IDENTITY ", 1)[1])
    raise AssertionError(f"no E2E-IDENTITY line in the log tail:\n{log}")


def wait_gone(hearth, uid: int, dirs: list[Path], what: str) -> None:
    """Waits (bounded) until the sandbox of `uid` has no process and `dirs` are gone."""
    left = wait_until(lambda: not processes_of_uid(uid, hearth) and not any(d.exists() for d in dirs),
                      timeout=GONE_TIMEOUT_S, interval=0.2)
    if not left:
        procs = [(p.pid, p.cmdline) for p in processes_of_uid(uid, hearth)]
        raise AssertionError(f"{what}: sandbox uid {uid} still has processes {procs} "
                             f"or cgroups {[str(d) for d in dirs if d.exists()]}")


# ---------------------------------------------------------------------------
# Who the function is


def test_runs_unprivileged_with_a_curated_root(hearth, lam, fns):
    me = run(lam, fns["esc"], {"op": "identity"})
    assert SANDBOX_UID_MIN <= me["uid"] < SANDBOX_UID_MAX or not is_root(), me["uid"]
    assert me["uid"] != 0 and me["euid"] != 0 and me["gid"] != 0, me
    st = me["status"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, f"{cap} = {st[cap]}"
    assert st["NoNewPrivs"] == "1", st
    assert st["Seccomp"] == "2", f"no seccomp filter: {st}"
    assert refused(me["setuid0"], "EPERM") and refused(me["setgid0"], "EPERM"), me
    # A curated /etc: a passwd naming the sandbox user, no shadow, no host secrets.
    assert me["passwd"]["ok"], me["passwd"]
    assert any(line.split(":")[2] == str(me["uid"]) for line in me["passwd"]["value"].splitlines()), me["passwd"]
    etc = set(me["etc"]["value"])
    for secret in ("shadow", "gshadow", "shadow-", "sudoers", "ssh", "machine-id", "hostname", "hearth"):
        assert secret not in etc, f"/etc/{secret} is visible: {sorted(etc)}"
    allowed = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr", "var"}
    assert set(me["root_dir"]["value"]) <= allowed, me["root_dir"]
    mounts = {ln.split()[1]: ln.split()[3].split(",") for ln in me["mounts"]["value"].splitlines()}
    for ro in ("/", "/usr", "/etc", "/var/task"):
        assert ro in mounts and "ro" in mounts[ro], (ro, mounts.get(ro))
    assert "rw" in mounts.get("/tmp", []), mounts.get("/tmp")
    assert_healthy(hearth, lam, fns)


def test_host_files_are_not_visible(hearth, lam, fns, work_dir):
    secret = work_dir / f"host-secret-{nonce()}.txt"
    secret.write_text("the host's secret\n")
    paths = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root", "/home", "/root/.ssh", "/etc/ssh",
             "/var/lib", "/var/log", "/sys/fs/cgroup", "/proc/1/root/etc/shadow", "/proc/1/cwd",
             str(hearth.data_dir), str(hearth.data_dir / "registry.sqlite"), str(work_dir), str(secret), str(REPO),
             str(Path(hearth.log_path))]
    got = run(lam, fns["esc"], {"op": "read", "paths": paths + ["/var/task", "/etc/passwd"]})
    readable = {p: r for p, r in got.items() if p in paths and r.get("ok")}
    assert not readable, f"host paths readable from the sandbox: {json.dumps(readable)[:2000]}"
    assert sorted(got["/var/task"]["value"]) == ["escape.py", "nonce.txt"], got["/var/task"]
    assert got["/etc/passwd"]["ok"]
    assert "the host's secret" not in json.dumps(got)
    assert_healthy(hearth, lam, fns)


def test_writes_outside_tmp_fail(hearth, lam, fns):
    dirs = ["/", "/usr", "/usr/bin", "/usr/lib", "/bin", "/lib", "/etc", "/var", "/var/task", "/var/runtime",
            "/opt", "/dev", "/proc", "/proc/sys/kernel"]
    existing = ["/etc/passwd", "/var/task/escape.py", "/usr/bin/env", "/var/runtime/python/bootstrap.py",
                "/proc/sys/kernel/hostname", "/proc/sysrq-trigger"]
    got = run(lam, fns["esc"], {"op": "write", "dirs": dirs + ["/tmp"], "existing": existing})
    leaks = {}
    for d in dirs:
        for kind, r in got[d].items():
            if r.get("ok"):
                leaks[f"{kind} in {d}"] = r
    for f in existing:
        if got[f]["append"].get("ok"):
            leaks[f"append to {f}"] = got[f]["append"]
    assert not leaks, f"writes outside /tmp succeeded: {leaks}"
    assert got["/tmp"]["file"] == {"ok": True, "value": "written"}, got["/tmp"]
    assert got["/tmp"]["mkdir"]["ok"], got["/tmp"]
    # Nothing appeared on the host either.
    assert not list(Path("/").glob("e2e-escape-*")) and not list(Path("/usr/bin").glob("e2e-escape-*"))
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Processes


@needs_root
def test_processes_of_the_host_and_other_sandboxes_are_out_of_reach(hearth, lam, fns):
    victim = run(lam, fns["victim"], {"op": "identity"})
    vuid = victim["uid"]
    vprocs = processes_of_uid(vuid, hearth)
    assert vprocs, f"the victim sandbox (uid {vuid}) has no processes on the host"
    host_pids = [hearth.pid] + [p.pid for p in vprocs]  # (pid 1 inside is its own init)

    got = run(lam, fns["esc"], {"op": "procs", "host_pids": host_pids, "other_uids": [vuid, 0], "kill_all": True})
    me = got["self"]
    procs = got["procs"]
    own_uid = {p["uid"] for p in procs}
    assert len(own_uid) == 1 and vuid not in own_uid, f"/proc shows other uids: {procs}"
    assert len(procs) <= 4, f"/proc shows more than the sandbox's own processes: {procs}"
    assert all(p["pid"] < 64 for p in procs), f"host pids visible: {procs}"
    assert not any("serve" in p["cmdline"] or "pytest" in p["cmdline"] for p in procs), procs
    assert any(p["pid"] == me for p in procs)
    # kill(1, SIGKILL) is refused or ignored: the sandbox's init survives.
    assert got["kill_init"].get("ok") or got["kill_init"].get("errno") == "EPERM", got["kill_init"]
    assert got["init_alive_after"], "the sandbox's init died"
    for pid, r in got["host_pids"].items():
        assert refused(r, "ESRCH", "EPERM"), f"signalling host pid {pid} did not fail: {r}"
    for uid, r in got["setuid_other"].items():
        assert refused(r, "EPERM"), f"setuid({uid}) did not fail: {r}"

    # The victim and the daemon are untouched.
    for p in vprocs:
        assert Path(f"/proc/{p.pid}").exists(), f"the other sandbox's process {p.pid} ({p.cmdline}) was killed"
    again = invoke_ok(lam, fns["victim"], {"op": "identity"})
    assert again.json()["uid"] == vuid and not again.cold, again.describe()
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Network


def test_network_is_loopback_only(hearth, lam, fns):
    run(lam, fns["victim"], {"op": "identity"})  # another live sandbox with its own Runtime API
    got = run(lam, fns["esc"], {"op": "net", "ports": [hearth.port]})
    assert got["interfaces"] == ["lo"], got["interfaces"]
    assert got["routes"] == [], f"IPv4 routes in the sandbox: {got['routes']}"
    assert got["ipv6_route_devices"] in (None, [], ["lo"]), got["ipv6_route_devices"]
    # Only its own Runtime API listens in its network namespace.
    assert got["listeners"] == ["127.0.0.1:9001"], got["listeners"]
    daemon = got["connect"][str(hearth.port)]
    assert refused(daemon, "ECONNREFUSED"), f"the daemon's port {hearth.port} is reachable from a sandbox: {daemon}"
    # Its own Runtime API refuses an id it never issued.
    api = got["own_runtime_api"]
    assert api.get("ok") and api["value"].split()[1] in ("400", "403", "404"), api
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Privileged system calls


def test_privileged_syscalls_fail_with_eperm(hearth, lam, fns):
    got = run(lam, fns["esc"], {"op": "syscalls"})
    wrong = {k: v for k, v in got.items() if not refused(v, "EPERM")}
    assert not wrong, f"not refused with EPERM: {wrong}"
    expected = {"mount", "umount2", "ptrace_traceme", "init_module", "finit_module", "unshare_user", "unshare_mount",
                "unshare_net", "unshare_pid", "setns_net", "bpf", "perf_event_open", "keyctl", "kexec_load",
                "reboot", "swapon", "mbind", "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages",
                "process_madvise", "sethostname"}
    if platform.machine() == "x86_64":
        expected.add("modify_ldt")
    assert expected <= set(got), sorted(got)
    assert_healthy(hearth, lam, fns)


def test_only_allowlisted_address_families_open(hearth, lam, fns):
    """Address families 0..45 and netlink protocols 0..31: only AF_UNIX,
    AF_INET, AF_INET6 and AF_NETLINK with NETLINK_ROUTE open, so that a
    future kernel (or a module autoloaded on a stock one) cannot widen the
    set silently. vsock, which network namespaces do not isolate, answers
    EAFNOSUPPORT."""
    got = run(lam, fns["esc"], {"op": "families"})
    opened = {int(f) for f, r in got["families"].items() if r["ok"]}
    assert opened <= {1, 2, 10, 16}, f"families beyond the allowlist open: {sorted(opened - {1, 2, 10, 16})}"
    assert {1, 2, 16} <= opened, f"allowlisted families do not open: {got['families']}"
    for fam, r in got["families"].items():
        if int(fam) not in {1, 2, 10, 16}:
            assert r["errnos"] == ["EAFNOSUPPORT"], (fam, r)
    pairs = {int(f) for f, r in got["socketpair"].items() if r["ok"]}
    assert pairs == {1}, f"socketpair opens for families {sorted(pairs)}"
    assert refused(got["vsock"], "EAFNOSUPPORT"), f"AF_VSOCK: {got['vsock']}"
    netlink = {int(p) for p, r in got["netlink"].items() if r["ok"]}
    assert netlink == {0}, f"netlink protocols open: {sorted(netlink)} (only NETLINK_ROUTE, 0, may)"
    for proto in (9, 15):  # NETLINK_AUDIT, NETLINK_KOBJECT_UEVENT
        assert refused(got["netlink"][str(proto)], "EPERM"), (proto, got["netlink"][str(proto)])
    assert_healthy(hearth, lam, fns)


def test_syscalls_newer_than_the_policy_answer_enosys(hearth, lam, fns):
    got = run(lam, fns["esc"], {"op": "unvetted"})
    for name, r in got.items():
        assert refused(r, "ENOSYS"), f"{name} (newer than the reviewed syscall table) got through: {r}"
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# /proc


def test_proc_shows_nothing_of_the_host(hearth, lam, fns):
    got = run(lam, fns["esc"], {"op": "proc"})
    binary = str(hearth_bin())
    data = str(hearth.data_dir)
    cmdline = got["init_cmdline"]
    assert cmdline["ok"] and cmdline["value"].split("\0")[0] == "init", cmdline
    assert "/" not in cmdline["value"], f"pid 1's command line names a path: {cmdline}"
    for key in ("init_exe", "init_maps"):
        r = got[key]
        assert not r["ok"] or (binary not in str(r["value"]) and data not in str(r["value"])), (key, r)
    # mountinfo: no mount names a host path but /var/task's (a bind's root is
    # its path in the source filesystem, and the code store is a directory of
    # the data directory's filesystem; see docs/design.md, issue 15).
    # /var/runtime is a detached tmpfs of its own.
    mountinfo = got["mountinfo"]
    assert mountinfo["ok"], mountinfo
    lines = {line.split()[4]: line for line in mountinfo["value"].splitlines()}
    runtime = lines.get("/var/runtime", "")
    assert " / /var/runtime " in runtime and "hearth-runtime" in runtime, runtime
    for mount_point, line in lines.items():
        if mount_point == "/var/task":
            continue
        assert data not in line and binary not in line, f"mountinfo shows a host path: {line}"
    assert got["sys"] == {"ok": True, "value": []}, f"/proc/sys: {got['sys']}"
    assert not got["sys_write"]["ok"], got["sys_write"]
    for f, r in got["files"].items():
        assert not r["ok"] or r["value"] == "", f"/proc/{f} shows the host kernel: {str(r)[:300]}"
    assert got["files"]["kallsyms"] == {"ok": True, "value": ""}, got["files"]["kallsyms"]
    for f, r in got["own"].items():
        assert r == {"ok": True, "value": True}, (f, r)
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Resource bombs


def test_fork_bomb_hits_the_pids_limit(hearth, lam, fns):
    got = run(lam, fns["esc"], {"op": "forkbomb", "max": 2000})
    assert got["failure"] == "EAGAIN", f"fork never failed with EAGAIN: {got}"
    assert 10 <= got["forked"] < 1024, got
    assert_healthy(hearth, lam, fns)
    # The same function still works (its children were reaped).
    assert run(lam, fns["esc"], {"x": 1}) == {"x": 1}


def test_memory_bomb_is_contained(hearth, lam, fns):
    inv, body = invoke_error(lam, fns["small"], {"op": "alloc", "mb": 640})
    assert body.get("errorType") in ("Runtime.OutOfMemory", "Runtime.ExitError"), body
    assert_healthy(hearth, lam, fns)
    assert invoke_ok(lam, fns["small"], {"after": "oom"}).json() == {"after": "oom"}


def test_fill_tmp_stops_at_its_size(hearth, lam, fns):
    got = run(lam, fns["esc"], {"op": "fill_tmp", "max_chunks": 40})  # 640 MB at most, in 16 MB chunks
    assert got["failure"] == "ENOSPC", got
    assert got["tmp_size_mb"] == 512, got
    assert got["written_mb"] <= 512, got
    assert_healthy(hearth, lam, fns)
    assert run(lam, fns["esc"], {"y": 2}) == {"y": 2}


@needs_root
def test_run_past_the_timeout_is_killed(hearth, lam, fns):
    inv, body = invoke_error(lam, fns["small"], {"op": "sleep", "seconds": 60})
    assert body.get("errorType") == "Sandbox.Timedout", body
    assert body.get("errorMessage") == f"RequestId: {inv.request_id} Error: Task timed out after 3.00 seconds", body
    me = identity_from_log(inv.log)
    wait_gone(hearth, me["uid"], [], "after a timeout")
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Daemonized children


def find_sleeper(seconds: str) -> HostProcess | None:
    for p in host_processes():
        if p.cmdline == f"sleep {seconds}" and SANDBOX_UID_MIN <= p.uid < SANDBOX_UID_MAX:
            return p
    return None


def unique_seconds() -> str:
    """A sleep length no other process on the host uses, to find the child by."""
    return f"{500 + int(nonce()[:6], 16) % 400}.{int(nonce()[:4], 16) % 1000:03d}"


@needs_root
def test_daemonized_child_dies_with_a_timed_out_sandbox(hearth, lam, fns):
    secs = unique_seconds()
    seen: list[HostProcess] = []
    result: dict = {}

    def call():
        result["inv"] = invoke(lam, fns["small"], {"op": "daemonize", "seconds": secs, "then_sleep": 60})

    t = threading.Thread(target=call, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while t.is_alive() and time.monotonic() < deadline and not seen:
        p = find_sleeper(secs)
        if p is not None:
            seen.append(p)
        else:
            time.sleep(0.05)
    t.join(timeout=60)
    assert not t.is_alive(), "the invocation did not end"
    inv = result["inv"]
    assert inv.function_error == "Unhandled" and inv.json().get("errorType") == "Sandbox.Timedout", inv.describe()
    assert seen, "never saw the daemonized child while the invocation ran"
    child = seen[0]
    me = identity_from_log(inv.log)
    assert child.uid == me["uid"], (child, me["uid"])
    wait_gone(hearth, child.uid, sandbox_cgroup_dirs(child), "after the timeout")
    assert find_sleeper(secs) is None
    assert_healthy(hearth, lam, fns)


@needs_root
def test_daemonized_child_dies_when_the_function_is_updated_or_deleted(hearth, lam, fns):
    name = unique_name("iso-daemon")
    create_fn(lam, name, zip_bytes=escape_zip(), handler="escape.handler", MemorySize=128, Timeout=30)

    for retire in ("update", "delete"):
        secs = unique_seconds()
        me = run(lam, name, {"op": "daemonize", "seconds": secs})
        child = wait_until(lambda: find_sleeper(secs), timeout=10, interval=0.1)
        assert child is not None, "the daemonized child is not running after the invocation"
        assert child.uid == me["uid"], (child, me)
        dirs = sandbox_cgroup_dirs(child)
        assert dirs and all(d.is_dir() for d in dirs), f"no cgroup found for the sandbox: {child.cgroups}"
        # Still alive while the sandbox is warm: only retiring the sandbox ends it.
        assert Path(f"/proc/{child.pid}").exists()
        if retire == "update":
            lam.update_function_configuration(FunctionName=name, Description=f"retire {secs}")
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        else:
            lam.delete_function(FunctionName=name)
        wait_gone(hearth, child.uid, dirs, f"after the function was {retire}d")
        if retire == "update":
            after = invoke_ok(lam, name, {"after": "update"})
            assert after.cold and after.json() == {"after": "update"}, after.describe()
    assert_healthy(hearth, lam, fns)


# ---------------------------------------------------------------------------
# Accounts


def test_accounts_never_share_a_uid_or_a_filesystem(hearth, lam, fns, fresh_client):
    code = escape_zip()
    name = unique_name("iso-acct")
    create_fn(lam, name, zip_bytes=code, handler="escape.handler")
    create_fn(fresh_client, name, zip_bytes=code, handler="escape.handler")

    a1 = run(lam, name, {"op": "marker", "tag": "account A"})
    assert a1["existed"] is False, a1
    a2 = run(lam, name, {"op": "marker", "tag": "account A"})
    assert a2["existed"] is True and a2["uid"] == a1["uid"], (a1, a2)  # same warm sandbox keeps its /tmp

    b = run(fresh_client, name, {"op": "marker", "tag": "account B"})
    assert b["uid"] != a1["uid"], f"two accounts' sandboxes share uid {b['uid']}"
    assert b["existed"] is False and "e2e-marker" not in b["tmp_before"], f"account B sees account A's /tmp: {b}"
    if is_root():
        pa, pb = processes_of_uid(a1["uid"], hearth), processes_of_uid(b["uid"], hearth)
        assert pa and pb, (pa, pb)
        cga = {d for p in pa for d in sandbox_cgroup_dirs(p)}
        cgb = {d for p in pb for d in sandbox_cgroup_dirs(p)}
        assert cga and cgb and not (cga & cgb), (cga, cgb)
    assert_healthy(hearth, lam, fns)
