"""Crash recovery of the execution side: `kill -9` of the daemon while
invocations run, then a restart on the same data dir. Afterwards no sandbox
process, cgroup or mount of the killed daemon remains, and invocations work.

The server under test runs in a cgroup of its own (hearth_e2e.ServerCgroup),
so everything its sandboxes were is found from the host: processes by uid
and cgroup, cgroup directories, mounts under the data dir.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from hearth_e2e import (
    PY_RUNTIME,
    HostProcess,
    cgroup_hierarchies,
    create_fn,
    invoke,
    invoke_ok,
    is_root,
    is_sandbox_cgroup,
    lang,
    mounts_under,
    sandbox_uid_processes,
    unique_name,
    wait_until,
)

SLEEPERS = 3
SLEEP_S = 20  # far longer than the test needs to kill the daemon; never waited for


def cgroup_dirs_named(name: str, max_dirs: int = 50_000) -> list[Path]:
    """Every directory called `name` in any mounted cgroup hierarchy (bounded walk)."""
    found: list[Path] = []
    seen = 0
    for h in cgroup_hierarchies():
        for root, dirs, _ in os.walk(h.mount_point):
            seen += 1
            if seen > max_dirs:
                return found
            if Path(root).name == name:
                found.append(Path(root))
                dirs[:] = []
    return found


def describe(procs: list[HostProcess]) -> str:
    return "\n".join(f"  pid {p.pid} uid {p.uid} ppid {p.ppid} {p.cmdline!r} {p.cgroups}" for p in procs)


@pytest.mark.skipif(not is_root(), reason="needs root: sandbox uids, cgroups and mounts are checked from the host")
def test_kill9_during_invocations_leaves_no_sandbox_behind(hearth, start_server):
    # Pools off: a restarted node would otherwise build fresh pooled
    # sandboxes at once, and this test counts every sandbox it finds.
    srv = start_server(unique_name("inv-crash"), config="[capacity]\ngeneral = []\n")
    try:
        assert srv.cgroup is not None, "the server under test has no cgroup of its own"
        lam = srv.client(read_timeout=120)
        lg = lang("python")
        sleeper, quick = unique_name("sleeper"), unique_name("quick")
        create_fn(lam, sleeper, zip_bytes=lg.zip(), runtime=PY_RUNTIME, handler=lg.handler, Timeout=60)
        create_fn(lam, quick, zip_bytes=lg.zip(), runtime=PY_RUNTIME, handler=lg.handler)
        invoke_ok(lam, quick, {"warm": True})  # leaves an idle sandbox too

        def mine() -> list[HostProcess]:
            return [p for p in sandbox_uid_processes() if srv.cgroup.contains(p)]

        outcomes: list[object] = []

        def call(i: int) -> None:
            try:
                outcomes.append(invoke(lam, sleeper, {"__e2e": "sleep", "seconds": SLEEP_S, "announce": f"s{i}"}))
            except Exception as e:  # noqa: BLE001 (the connection dies with the server)
                outcomes.append(e)

        threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(SLEEPERS)]
        for t in threads:
            t.start()
        # Wait (bounded) until every sleeper has a sandbox: 3 busy + 1 idle uids.
        running = wait_until(lambda: (lambda ps: ps if len({p.uid for p in ps}) >= SLEEPERS + 1 else None)(mine()),
                             timeout=60, interval=0.1)
        assert running, f"the sleepers' sandboxes never all ran:\n{describe(mine())}\n{srv.log_tail()}"
        old_pids = {p.pid: p.uid for p in running}
        old_dirs = srv.cgroup.sandbox_cgroup_dirs()
        assert old_dirs, "no sandbox cgroups found under the server's cgroup"
        parent_names = {p.name for p in srv.cgroup.sandbox_parents()}  # `hearth...` in each hierarchy
        assert any(e.is_dir() and e.name != ".probe" for e in (srv.data_dir / "sandboxes").iterdir())

        srv.kill9()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "in-flight invocations did not end with the server"
        assert not any(getattr(o, "json", None) and o.function_error is None for o in outcomes), outcomes

        srv.restart()
        # Reaping happens before the restarted daemon serves: check before any new invocation.
        orphans = [p for p in mine() if p.pid != srv.pid]
        assert not orphans, f"sandbox processes survived the crash and the restart:\n{describe(orphans)}"
        survivors = [p for p in sandbox_uid_processes() if p.pid in old_pids and p.uid == old_pids[p.pid]]
        assert not survivors, f"pre-crash sandbox processes still alive:\n{describe(survivors)}"
        strays = [p for p in sandbox_uid_processes()
                  if not (hearth.cgroup is not None and hearth.cgroup.contains(p))
                  and not any(is_sandbox_cgroup(c) for c in p.cgroups.values())]
        assert not strays, f"processes with sandbox uids outside any sandbox cgroup:\n{describe(strays)}"

        left = [d for d in old_dirs if d.exists()] + srv.cgroup.sandbox_cgroup_dirs()
        assert not left, f"leftover sandbox cgroups: {left}"
        # Anywhere in any hierarchy (v1 ones and the unified one), the daemon's
        # sandbox parents hold no sandbox now.
        parents = [d for n in sorted(parent_names) for d in cgroup_dirs_named(n)]
        assert parents, f"the daemon's sandbox cgroup parents {parent_names} are gone altogether"
        for parent in parents:
            children = [c for c in parent.iterdir() if c.is_dir()]
            assert not children, f"leftover sandbox cgroups under {parent}: {children}"
        assert not mounts_under(srv.data_dir), f"leftover mounts: {mounts_under(srv.data_dir)}"
        stale = [e.name for e in (srv.data_dir / "sandboxes").iterdir() if e.is_dir() and e.name != ".probe"]
        assert not stale, f"leftover sandbox state dirs: {stale}"

        # Invocations work again, on fresh sandboxes.
        lam = srv.client(read_timeout=120)
        after = invoke_ok(lam, quick, {"after": "crash"})
        assert after.json() == {"after": "crash"} and after.cold, after.describe()
        assert invoke_ok(lam, sleeper, {"__e2e": "sleep", "seconds": 0.1}).json() == {"slept": 0.1}
        assert len(srv.cgroup.sandbox_cgroup_dirs()) >= 2
    finally:
        srv.stop()
    # A clean stop destroys the sandboxes it had.
    gone = wait_until(lambda: not [p for p in sandbox_uid_processes() if srv.cgroup.contains(p)], timeout=30)
    assert gone, describe([p for p in sandbox_uid_processes() if srv.cgroup.contains(p)])
