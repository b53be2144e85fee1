"""The capacity suite: warm pools, placement, provisioned concurrency,
capacity policies and the memory budget, against real servers and real
sandboxes (issue 4, ARCHITECTURE.md sections 1-3).

Every invocation is asked where its sandbox came from (`X-Hearth-Placement`)
and the REPORT line of its log tail says whether it initialised one (Init
Duration). Servers with particular pools or budgets are started per test from
a TOML config (`[capacity]`); a test that must exhaust capacity computes it
from the sandbox sizes (pooled sandboxes count their memory class, 128 MB
here; assigned ones their MemorySize, also 128 MB here).

Host-side checks (sandbox cgroups and their memory limits, sandbox processes)
need root, as Hearth does for a cgroup per sandbox; without it those parts
are skipped with the reason. No assertion is on a duration: where a test must
overlap invocations, the overlapping one is sent only once the server shows
the first one holding its sandbox, and blockers sleep long enough for that
to be observed. Every loop is bounded; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from botocore.exceptions import ClientError

from hearth_e2e import (
    FUNCTIONS_DIR,
    NODE_ABSENT,
    NODE_HANDLER,
    NODE_RUNTIME,
    SANDBOX_UID_MAX,
    SANDBOX_UID_MIN,
    HearthServer,
    Invocation,
    assert_log_frame,
    cgroup_memory_limit,
    cgroup_procs,
    create_fn,
    expect_error,
    hearth_bin,
    host_processes,
    invoke,
    invoke_ok,
    is_root,
    make_zip,
    nonce,
    processes_of_uid,
    sandbox_cgroup_dirs,
    unique_name,
    wait_until,
)

CAP_APP = (FUNCTIONS_DIR / "capacity_app.py").read_text()
MIB = 1 << 20

FILL_TIMEOUT_S = 30       # a pool reaching its minimum
SETTLE_TIMEOUT_S = 20     # pools, metrics and cgroups agreeing
PC_READY_TIMEOUT_S = 60   # provisioned concurrency reaching READY
GONE_TIMEOUT_S = 30       # a destroyed sandbox's processes and cgroups going
BLOCK_S = 6               # how long a blocking invocation holds its sandbox
THREAD_JOIN_S = 120

ROOT_REASON = "needs root: only as root does Hearth give each sandbox a cgroup and uid to check from outside"

# A `provided.al2023` function: a shell bootstrap running a tiny Runtime API
# loop (python's http.client, no AWS client).
PROVIDED_BOOTSTRAP = "#!/bin/sh\nexec /usr/bin/python3 /var/task/loop.py\n"
PROVIDED_LOOP = '''
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime/invocation/"
for _ in range(1000000):
    conn.request("GET", base + "next")
    r = conn.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read() or b"null")
    body = json.dumps({"provided": True, "event": event,
                       "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}).encode()
    conn.request("POST", base + rid + "/response", body=body)
    conn.getresponse().read()
'''

# A small node: one runtime-warm Python sandbox (128 MB) in its general
# sub-pool, which the dedicated sandbox of the account under test (128 MB)
# fills to the budget: no cold start is possible until something is freed.
TIGHT_CONFIG = """
[capacity]
memory_budget_mb = 256
sizer = "fixed"
general = [ { profile = "python:128", min = 1, max = 1 } ]
[microvm]
general = []   # no pooled microVMs in this budget (test_vm_pools.py has theirs)
"""

# Issue 14's lone tenant: pools whose size (3) once capped one account at
# ceil(0.5 × 3) = 2 general sandboxes held for their whole life.
LONE_CONFIG = """
[capacity]
sizer = "fixed"
general = [
  { profile = "python:128", min = 2, max = 2 },
  { profile = "shell:128", min = 1, max = 1 },
]
[microvm]
general = []
"""


# ---------------------------------------------------------------------------
# Helpers


def cap_zip() -> bytes:
    return make_zip({"cap.py": CAP_APP, "nonce.txt": nonce()})


def create_cap_fn(client, name: str | None = None, **kw) -> str:
    name = name or unique_name("cap")
    kw.setdefault("Timeout", 30)
    create_fn(client, name, zip_bytes=cap_zip(), handler="cap.handler", **kw)
    return name


def general(p: dict, profile: str) -> dict | None:
    return next((g for g in p.get("General", []) if g.get("Profile") == profile), None)


def dedicated(p: dict, account_id: str, profile: str) -> dict | None:
    return next((d for d in p.get("Dedicated", [])
                 if d.get("AccountId") == account_id and d.get("Profile") == profile), None)


def provisioned(p: dict, account_id: str, name: str, qualifier: str) -> dict | None:
    return next((x for x in p.get("Provisioned", [])
                 if x.get("AccountId") == account_id and x.get("FunctionName") == name
                 and x.get("Qualifier") == qualifier), None)


def wait_pools(srv: HearthServer, pred: Callable[[dict], object], timeout: float, what: str) -> dict:
    """Polls GET /hearth/v1/pools (bounded) until `pred` holds; returns that snapshot."""
    last: dict = {}

    def check():
        nonlocal last
        last = srv.pools()
        return pred(last)

    if not wait_until(check, timeout=timeout, interval=0.1):
        raise AssertionError(f"{what}: not reached within {timeout}s; last /hearth/v1/pools:\n"
                             f"{json.dumps(last, indent=1)}\n{srv.log_tail(40)}")
    return last


def general_idle_at_least(profile: str, n: int) -> Callable[[dict], bool]:
    return lambda p: (general(p, profile) or {}).get("Idle", 0) >= n


def report_has_init(inv: Invocation) -> bool:
    return "Init Duration:" in inv.report


def placements_delta(before, after) -> dict[str, float]:
    out = {}
    for src in ("warm", "dedicated", "general_runtime", "general_shell", "cold", "queued", "rejected"):
        d = after.value("hearth_placements_total", source=src) - before.value("hearth_placements_total", source=src)
        if d:
            out[src] = d
    return out


def cli_account(srv: HearthServer) -> dict:
    """A second (non-admin) account, made with `hearth accounts create --json`."""
    cp = srv.cli("accounts", "create", unique_name("cap-acct"), "--json")
    acct = json.loads(cp.stdout)
    for k in ("AccountId", "AccessKeyId", "SecretAccessKey"):
        assert isinstance(acct.get(k), str) and acct[k], (k, cp.stdout)
    return acct


def sandbox_cgroup_of_uid(srv: HearthServer, uid: int) -> Path | None:
    """The memory-hierarchy cgroup directory of the (live) sandbox running as `uid`."""
    mem = srv.cgroup.memory_hierarchy_dir() if srv.cgroup else None
    if mem is None:
        return None
    root = mem[0].mount_point
    for proc in processes_of_uid(uid, srv):
        for d in sandbox_cgroup_dirs(proc):
            if d.is_relative_to(root):
                # The sandbox's own cgroup: `<server>/hearth*/<sandbox>`, maybe a child of it.
                for cand in [d, *d.parents]:
                    if cand.parent.name.startswith("hearth") and not cand.parent.name.startswith("hearth-e2e-"):
                        return cand
    return None


def exiting(pid: int) -> bool:
    """Whether a process has already released its address space (it is
    exiting: /proc/<pid>/status no longer shows VmSize), or is gone."""
    try:
        return "VmSize:" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def memory_limit_sum(srv: HearthServer) -> tuple[int, list[tuple[str, int, int, int]]]:
    """(sum of the memory limits in bytes of the server's sandbox cgroups that
    hold a process, [(sandbox cgroup, limit MiB, processes, of which exiting)]
    of every one) right now.

    A sandbox cgroup counts while it holds a process (even an exiting one: the
    sandbox is not gone until its processes are). One without any is either
    being set up (created, its limit not yet written; no process joins it
    before that) or what is left of a destroyed sandbox whose directory is not
    yet removed; neither holds memory."""
    total = 0
    seen = []
    for d in srv.cgroup.memory_sandbox_cgroups():
        lim = cgroup_memory_limit(d)
        if lim is None:
            continue
        pids = cgroup_procs(d)
        seen.append((d.name, lim // MIB, len(pids), sum(exiting(p) for p in pids)))
        if pids:
            total += lim
    return total, seen


class Background:
    """Runs a callable in a thread, keeping its result or exception and
    the monotonic time it ended."""

    def __init__(self, fn: Callable[[], object]):
        self.result: object = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self._fn = fn
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            self.result = self._fn()
        except BaseException as e:  # noqa: BLE001 - reported by get()
            self.error = e
        finally:
            self.ended_at = time.monotonic()

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    def get(self, timeout: float = THREAD_JOIN_S):
        self._t.join(timeout=timeout)
        assert not self._t.is_alive(), "a background invocation did not end"
        if self.error is not None:
            raise self.error
        return self.result


def throttled(e: object) -> bool:
    return (isinstance(e, ClientError)
            and e.response["Error"]["Code"] == "TooManyRequestsException"
            and e.response["ResponseMetadata"]["HTTPStatusCode"] == 429)


def assert_throttled(fn: Callable[[], object], what: str) -> dict:
    """`fn` must fail with Lambda's 429 TooManyRequestsException (Reason
    ConcurrentInvocationLimitExceeded); returns the error response."""
    try:
        got = fn()
    except ClientError as e:
        err = e.response
        assert throttled(e), f"{what}: expected 429 TooManyRequestsException, got {err.get('Error')} {err.get('ResponseMetadata', {}).get('HTTPStatusCode')}"
        assert err.get("Reason") == "ConcurrentInvocationLimitExceeded", err
        assert err["Error"].get("Message"), err
        return err
    raise AssertionError(f"{what}: expected 429 TooManyRequestsException, but it succeeded: "
                         f"{got.describe() if isinstance(got, Invocation) else got}")


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def servers(request, start_server):
    """Factory of servers for one test (`config`: the TOML text); each is
    stopped when the test ends, and its log tail printed if the test failed."""
    mine: list[HearthServer] = []

    def start(prefix: str, config: str | None = None) -> HearthServer:
        srv = start_server(unique_name(prefix), config=config)
        mine.append(srv)
        return srv

    yield start
    rep = getattr(request.node, "rep_call", None)
    for srv in mine:
        if rep is not None and rep.failed:
            print("\n" + srv.log_tail(60))
        srv.stop()


# The general sub-pools of the module's server: the defaults, plus a
# runtime-warm python:256 pool to check that assignment sets a sandbox's
# cgroup limit to the function's exact MemorySize.
CAP_CONFIG = """
[capacity]
general = [
  { profile = "python:128", min = 2, max = 32 },
  { profile = "nodejs:128", min = 1, max = 16 },
  { profile = "shell:128", min = 1, max = 16 },
  { profile = "python:256", min = 1, max = 4 },
]
"""


@pytest.fixture(scope="module")
def cap(start_server) -> HearthServer:
    """One server for the tests that only need warm general capacity; every
    test uses accounts of its own (a fresh account may hold its share of the
    general sub-pool: half of it by default)."""
    srv = start_server(unique_name("cap"), config=CAP_CONFIG)
    wait_pools(srv, lambda p: all(g["Idle"] >= g["Min"] for g in p["General"]
                                  if NODE_RUNTIME or not g["Profile"].startswith("nodejs")),
               FILL_TIMEOUT_S, "the module server's general sub-pools reach their minimum")
    yield srv
    srv.stop()


@pytest.fixture
def cap_log_on_failure(request, cap):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n" + cap.log_tail(60))


@pytest.fixture
def acct_client(cap, cap_log_on_failure):
    """A brand-new account on the module's server and its boto3 client."""
    acct = cap.create_account()
    return acct, cap.account_client(acct)


# ---------------------------------------------------------------------------
# 1. A fresh server fills its general sub-pool, with real sandboxes


def test_fresh_server_fills_its_general_sub_pool(servers):
    srv = servers("fill")  # no config: the defaults
    expect = {"python:128": ("runtime", 2, 32), "nodejs:128": ("runtime", 1, 16), "shell:128": ("shell", 1, 16)}
    p = srv.pools()
    got = {g["Profile"]: (g["Warmth"], g["Min"], g["Max"]) for g in p["General"]}
    assert got == expect, f"default general sub-pools: {p['General']}"
    assert p["Dedicated"] == [] and p["Provisioned"] == [] and p["ActiveIdle"] == 0 and p["Queued"] == 0, p
    assert p["MemoryBudgetMb"] > 0, p

    wanted = [k for k in expect if NODE_RUNTIME or not k.startswith("nodejs")]
    wait_pools(srv, lambda p: all((general(p, k) or {}).get("Idle", 0) >= expect[k][1] for k in wanted),
               FILL_TIMEOUT_S, "every general sub-pool reaches its minimum")

    # Once nothing is being built, the pools, the metric and the host agree.
    state: dict = {}

    def settled():
        a = srv.pools()
        m = srv.metrics()
        cgs = srv.cgroup.memory_sandbox_cgroups() if is_root() and srv.cgroup else None
        b = srv.pools()
        state.update(pools=b, metrics=m, cgroups=cgs)
        if a != b or any(g["Building"] for g in b["General"] + b["MicroVm"].get("General", [])):
            return False
        idle = sum(g["Idle"] for g in b["General"])
        for g in b["General"]:
            if m.get("hearth_pool_sandboxes", pool="general", profile=g["Profile"], warmth=g["Warmth"]) != g["Idle"]:
                return False
        return cgs is None or len(cgs) == idle

    if not wait_until(settled, timeout=SETTLE_TIMEOUT_S, interval=0.3):
        metric = {tuple(sorted(ls.items())): v for n, ls, v in state["metrics"].samples if n == "hearth_pool_sandboxes"}
        raise AssertionError(
            f"pools, metrics and sandbox cgroups never agreed:\npools {json.dumps(state['pools'])}\n"
            f"hearth_pool_sandboxes {metric}\ncgroups {state['cgroups']}")
    p = state["pools"]
    idle = sum(g["Idle"] for g in p["General"])
    # Pooled microVMs are charged what they hold (a few MB each).
    vm_mb = sum(g["IdleMemoryMb"] for g in p["MicroVm"].get("General", []))
    assert p["MemoryUsedMb"] == 128 * idle + vm_mb, \
        f"{idle} pooled 128 MB sandboxes and {vm_mb} MB of pooled VMs but MemoryUsedMb {p['MemoryUsedMb']}"
    assert "hearth_pool_sandboxes" in state["metrics"].names(), sorted(state["metrics"].names())

    if not (is_root() and srv.cgroup):
        print(f"host-side checks skipped: {ROOT_REASON}")
        return
    cgs = state["cgroups"]
    for d in cgs:
        assert cgroup_memory_limit(d) == 128 * MIB, f"pooled sandbox {d} has limit {cgroup_memory_limit(d)}"
        pids = cgroup_procs(d)
        assert pids, f"pooled sandbox cgroup {d} has no process"
        uids = {pr.uid for pr in host_processes() if pr.pid in pids}
        assert any(SANDBOX_UID_MIN <= u < SANDBOX_UID_MAX for u in uids), \
            f"no process of pooled sandbox {d} runs as a sandbox uid: {uids}"


# ---------------------------------------------------------------------------
# 2. First invocations drawn from the general sub-pool


def test_python_first_invoke_is_general_runtime_then_warm(cap, acct_client):
    acct, client = acct_client
    name = create_cap_fn(client)
    wait_pools(cap, general_idle_at_least("python:128", 1), FILL_TIMEOUT_S, "an idle python:128 sandbox")
    before = cap.metrics()
    first = invoke_ok(client, name, {"op": "id"})
    assert first.placement == "general-runtime", first.describe()
    assert report_has_init(first), f"first invocation without Init Duration: {first.report}"
    assert_log_frame(first, memory_mb=128)
    who = first.json()
    assert who["init_type"] == "on-demand", who
    # The runtime rehearsed an import while it waited: nothing of it is left.
    assert who["traces"] == [] and who["path0"] == "/var/task", who
    second = invoke_ok(client, name, {"op": "id"})
    assert second.placement == "warm", second.describe()
    assert not report_has_init(second), f"warm invocation with Init Duration: {second.report}"
    assert second.json()["boot"] == who["boot"], "the warm invocation did not reuse the sandbox"
    delta = placements_delta(before, cap.metrics())
    assert delta == {"general_runtime": 1, "warm": 1}, delta
    if is_root():
        d = sandbox_cgroup_of_uid(cap, who["uid"])
        assert d is not None, f"no sandbox cgroup for uid {who['uid']}"
        assert cgroup_memory_limit(d) == 128 * MIB, (d, cgroup_memory_limit(d))


def test_assignment_sets_the_exact_memory_size(cap, acct_client):
    """A 200 MB function fits the 256 MB class: it is drawn from python:256
    and its sandbox's cgroup limit becomes exactly 200 MB."""
    acct, client = acct_client
    name = create_cap_fn(client, MemorySize=200)
    wait_pools(cap, general_idle_at_least("python:256", 1), FILL_TIMEOUT_S, "an idle python:256 sandbox")
    inv = invoke_ok(client, name, {"op": "id"})
    assert inv.placement == "general-runtime", inv.describe()
    assert report_has_init(inv), inv.report
    assert_log_frame(inv, memory_mb=200)
    assert inv.json()["memory_limit_in_mb"] == "200", inv.json()
    if not is_root():
        pytest.skip(ROOT_REASON)
    d = sandbox_cgroup_of_uid(cap, inv.json()["uid"])
    assert d is not None, f"no sandbox cgroup for uid {inv.json()['uid']}"
    assert cgroup_memory_limit(d) == 200 * MIB, f"{d}: limit {cgroup_memory_limit(d)}, want {200 * MIB}"


# What a Node handler can see of the runtime's rehearsal before its
# assignment: modules, environment, working directory, live handles.
NODE_TRACES = b"""
exports.handler = async (event) => ({
  ok: true,
  event,
  traces: [
    ...Object.keys(require.cache).filter((k) => k.includes('rehearsal')),
    ...Object.keys(process.env).filter((k) => k.startsWith('HEARTH_')),
    ...process.getActiveResourcesInfo().filter((r) => /Server|TCP/.test(r)),
  ],
  cwd: process.cwd(),
});
"""


@pytest.mark.skipif(NODE_RUNTIME is None, reason=NODE_ABSENT)
def test_node_first_invoke_is_general_runtime_then_warm(cap, acct_client):
    acct, client = acct_client
    name = unique_name("cap-node")
    create_fn(client, name, zip_bytes=make_zip({"index.js": NODE_TRACES, "nonce.txt": nonce()}),
              runtime=NODE_RUNTIME, handler="index.handler", Timeout=30)
    wait_pools(cap, general_idle_at_least("nodejs:128", 1), FILL_TIMEOUT_S, "an idle nodejs:128 sandbox")
    tag = nonce()
    first = invoke_ok(client, name, {"tag": tag})
    assert first.placement == "general-runtime", first.describe()
    assert report_has_init(first), first.report
    # The runtime rehearsed (an HTTP exchange with a server of its own, a
    # module load, the environment swap) while it waited: nothing is left.
    assert first.json() == {"ok": True, "event": {"tag": tag}, "traces": [], "cwd": "/var/task"}, \
        first.describe()
    second = invoke_ok(client, name, {"tag": tag})
    assert second.placement == "warm", second.describe()
    assert not report_has_init(second), second.report


def test_provided_first_invoke_is_general_shell(cap, acct_client):
    acct, client = acct_client
    name = unique_name("cap-provided")
    z = make_zip({"bootstrap": PROVIDED_BOOTSTRAP, "loop.py": PROVIDED_LOOP, "nonce.txt": nonce()},
                 modes={"bootstrap": 0o755})
    create_fn(client, name, zip_bytes=z, runtime="provided.al2023", handler="none", Timeout=30)
    wait_pools(cap, general_idle_at_least("shell:128", 1), FILL_TIMEOUT_S, "an idle shell:128 sandbox")
    tag = nonce()
    first = invoke_ok(client, name, {"tag": tag})
    assert first.placement == "general-shell", first.describe()
    assert report_has_init(first), first.report
    body = first.json()
    assert body["event"] == {"tag": tag} and body["init_type"] == "on-demand", body
    second = invoke_ok(client, name, {"tag": tag})
    assert second.placement == "warm", second.describe()
    assert not report_has_init(second), second.report


# ---------------------------------------------------------------------------
# 3. Pooling disabled: every first start is cold


def test_without_general_pools_the_first_invoke_is_cold(servers):
    srv = servers("nopool", config="[capacity]\ngeneral = []\n[microvm]\ngeneral = []\n")
    p = srv.pools()
    assert p["General"] == [] and p["MemoryUsedMb"] == 0, p
    if is_root() and srv.cgroup:
        assert srv.cgroup.memory_sandbox_cgroups() == [], "a server without pools built sandboxes"
    client = srv.client()
    name = create_cap_fn(client)
    before = srv.metrics()
    first = invoke_ok(client, name, {"op": "id"})
    assert first.placement == "cold", first.describe()
    assert report_has_init(first), first.report
    second = invoke_ok(client, name, {"op": "id"})
    assert second.placement == "warm", second.describe()
    assert not report_has_init(second), second.report
    assert placements_delta(before, srv.metrics()) == {"cold": 1, "warm": 1}
    p = srv.pools()
    assert p["General"] == [] and p["ActiveIdle"] == 1 and p["MemoryUsedMb"] == 128, p


# ---------------------------------------------------------------------------
# 4. Provisioned concurrency


def test_provisioned_concurrency(cap, acct_client):
    acct, client = acct_client
    account_id = acct["AccountId"]
    name = create_cap_fn(client)
    version = client.publish_version(FunctionName=name)["Version"]
    assert version == "1"
    put = client.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                                    ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2, put
    assert put["Status"] in ("IN_PROGRESS", "READY"), put

    last: dict = {}

    def ready():
        nonlocal last
        last = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
        return last["Status"] == "READY"

    assert wait_until(ready, timeout=PC_READY_TIMEOUT_S, interval=0.2), f"never READY: {last}"
    assert last["RequestedProvisionedConcurrentExecutions"] == 2, last
    assert last["AllocatedProvisionedConcurrentExecutions"] == 2, last
    assert last["AvailableProvisionedConcurrentExecutions"] == 2, last
    listed = client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert len(listed) == 1 and listed[0]["FunctionArn"].endswith(f":function:{name}:{version}"), listed
    assert listed[0]["Status"] == "READY", listed

    p = wait_pools(cap, lambda p: (provisioned(p, account_id, name, version) or {}).get("Idle") == 2,
                   FILL_TIMEOUT_S, "both provisioned sandboxes idle")
    entry = provisioned(p, account_id, name, version)
    assert entry["Requested"] == 2 and entry["Allocated"] == 2, entry

    # Two invocations at once: each gets a provisioned sandbox, already initialised.
    barrier = threading.Barrier(2)

    def call():
        barrier.wait(timeout=30)
        return invoke_ok(client, name, {"op": "sleep", "seconds": 1}, qualifier=version)

    runs = [Background(call) for _ in range(2)]
    outs = [r.get() for r in runs]
    for inv in outs:
        assert inv.placement == "dedicated", inv.describe()
        assert not report_has_init(inv), f"provisioned invocation with Init Duration: {inv.report}"
        assert_log_frame(inv, version=version, memory_mb=128)
        assert inv.json()["init_type"] == "provisioned-concurrency", inv.json()
    assert outs[0].json()["boot"] != outs[1].json()["boot"], "two overlapping invocations shared a sandbox"
    uids = [inv.json()["uid"] for inv in outs]

    # $LATEST is another version: not served by the provisioned sandboxes.
    latest = invoke_ok(client, name, {"op": "id"})
    assert latest.placement != "dedicated", latest.describe()
    assert latest.json()["init_type"] == "on-demand", latest.json()

    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    expect_error(client.get_provisioned_concurrency_config, FunctionName=name, Qualifier=version,
                 code="ProvisionedConcurrencyConfigNotFoundException", status=404)
    assert client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    wait_pools(cap, lambda p: provisioned(p, account_id, name, version) is None, FILL_TIMEOUT_S,
               "the provisioned entry leaves /hearth/v1/pools")
    if is_root():
        gone = wait_until(lambda: not any(processes_of_uid(u, cap) for u in uids), timeout=GONE_TIMEOUT_S)
        assert gone, f"provisioned sandboxes (uids {uids}) still run after the configuration was deleted"
    after = invoke_ok(client, name, {"op": "id"}, qualifier=version)
    assert after.placement != "dedicated", after.describe()
    assert after.json()["init_type"] == "on-demand", after.json()
    # The pool-size gauge no longer counts the deleted configuration's sandboxes.
    left = wait_until(lambda: not cap.metrics().value("hearth_pool_sandboxes", pool="dedicated", account=account_id),
                      timeout=SETTLE_TIMEOUT_S)
    assert left, ("hearth_pool_sandboxes still counts the deleted configuration's sandboxes: "
                  f"{[x for x in cap.metrics().samples if x[0] == 'hearth_pool_sandboxes' and x[1].get('account') == account_id]}")


# ---------------------------------------------------------------------------
# 5. Capacity policies when the dedicated sub-pool is exhausted


def tight_server(servers, prefix: str, policy: str, max_wait_ms: int = 1000):
    """A server whose budget (256 MB) is exactly its one general python
    sandbox plus one dedicated python:128 sandbox of a second account with
    `policy`; returns (server, account, client)."""
    srv = servers(prefix, config=TIGHT_CONFIG)
    wait_pools(srv, lambda p: (general(p, "python:128") or {}).get("Idle") == 1, FILL_TIMEOUT_S,
               "the general python sandbox is built")
    acct = cli_account(srv)
    stored = srv.put_capacity(acct["AccountId"], {"Dedicated": {"python:128": 1}, "Policy": policy,
                                                  "MaxWaitMs": max_wait_ms})
    assert stored["Dedicated"] == {"python:128": 1} and stored["Policy"] == policy, stored
    assert stored["MaxWaitMs"] == max_wait_ms, stored
    p = wait_pools(srv, lambda p: (dedicated(p, acct["AccountId"], "python:128") or {}).get("Idle") == 1,
                   FILL_TIMEOUT_S, "the account's dedicated sandbox is built")
    assert p["MemoryUsedMb"] == 256 == p["MemoryBudgetMb"], p
    assert (general(p, "python:128") or {}).get("Idle") == 1, p
    return srv, acct, srv.account_client(acct)


def nothing_idle_for(srv: HearthServer, account_id: str) -> Callable[[dict], bool]:
    """Every sandbox the account could use is taken (none idle)."""
    return lambda p: p["ActiveIdle"] == 0 and (dedicated(p, account_id, "python:128") or {}).get("Idle", 0) == 0


def test_policy_burst_uses_the_general_sub_pool(servers):
    srv, acct, client = tight_server(servers, "burst", "burst")
    f1, f2, f3 = (create_cap_fn(client) for _ in range(3))
    before = srv.metrics()
    barrier = threading.Barrier(2)

    def blocker(name):
        def run():
            barrier.wait(timeout=30)
            return invoke_ok(client, name, {"op": "sleep", "seconds": BLOCK_S})
        return run

    runs = [Background(blocker(f1)), Background(blocker(f2))]
    wait_pools(srv, lambda p: (general(p, "python:128") or {}).get("Idle") == 0
               and nothing_idle_for(srv, acct["AccountId"])(p), FILL_TIMEOUT_S,
               "both blockers hold a sandbox")
    # The general sub-pool is empty and the budget full: a third function has nowhere to go.
    assert not any(r.done for r in runs), "a blocker ended before the probe: the host is too slow for this test"
    err = assert_throttled(lambda: invoke(client, f3, {"op": "id"}), "burst with neither general capacity nor memory")
    assert not any(r.done for r in runs), "a blocker ended before the probe's 429 came back"
    outs = [r.get() for r in runs]
    assert sorted(o.placement for o in outs) == ["dedicated", "general-runtime"], [o.describe() for o in outs]
    for o in outs:
        assert report_has_init(o), o.report
    delta = placements_delta(before, srv.metrics())
    assert delta == {"dedicated": 1, "general_runtime": 1, "rejected": 1}, (delta, err)


def test_a_lone_tenant_draws_the_whole_general_pool(servers):
    """One developer alone on the node deploys function after function: each
    first invoke comes from the general pool once it has refilled, far past
    the account's share (0.5) of the pool's size, because nobody else asks
    for it (ADR 0011). A share counted as sandboxes held made the third one
    on a cold start."""
    srv = servers("lone", config=LONE_CONFIG)
    client = srv.account_client(srv.create_account())
    names = [create_cap_fn(client) for _ in range(5)]
    for k, name in enumerate(names):
        wait_pools(srv, general_idle_at_least("python:128", 2), FILL_TIMEOUT_S,
                   f"the python:128 pool refilled before first invoke {k + 1}")
        first = invoke_ok(client, name, {"op": "id"})
        assert first.placement == "general-runtime", (k, first.describe())
        assert report_has_init(first), first.report
    # Every one of them is still alive, idle and warm for its function.
    p = srv.pools()
    assert p["ActiveIdle"] >= len(names), p


def test_policy_wait_queues_then_serves_or_times_out(servers):
    srv, acct, client = tight_server(servers, "wait", "wait", max_wait_ms=8000)
    account_id = acct["AccountId"]
    f1 = create_cap_fn(client)
    before = srv.metrics()

    # The dedicated sandbox is busy and the budget full: the next invocation waits
    # for it, and is served once the first one ends.
    blocker = Background(lambda: invoke_ok(client, f1, {"op": "sleep", "seconds": BLOCK_S}))
    wait_pools(srv, nothing_idle_for(srv, account_id), FILL_TIMEOUT_S, "the blocker holds the dedicated sandbox")
    assert not blocker.done, "the blocker ended before the probe was sent: the host is too slow for this test"
    probe = Background(lambda: invoke_ok(client, f1, {"op": "sleep", "seconds": 0}))
    queued = wait_until(lambda: blocker.done or srv.pools()["Queued"] >= 1, timeout=FILL_TIMEOUT_S, interval=0.05)
    assert queued and not blocker.done, "the waiting invocation never showed in Queued while the blocker ran"
    first = blocker.get()
    second = probe.get()
    assert first.placement == "dedicated", first.describe()
    assert second.placement in ("warm", "dedicated", "queued"), second.describe()
    # Served after the first one ended (by the freed sandbox; the host's clock inside it).
    assert second.json()["boot"] == first.json()["boot"], "the waiting invocation was not served by the freed sandbox"
    assert second.json()["start"] >= first.json()["end"], (first.json(), second.json())
    assert srv.pools()["Queued"] == 0
    m = srv.metrics()
    delta = placements_delta(before, m)
    assert delta.get("dedicated") == 1 and "rejected" not in delta and (delta.get("warm") or delta.get("queued")), delta
    assert m.value("hearth_queue_wait_seconds_count", outcome="woken") - \
        before.value("hearth_queue_wait_seconds_count", outcome="woken") == 1, \
        [s for s in m.samples if s[0].startswith("hearth_queue")]

    # With a short wait, the same situation ends in a 429.
    stored = srv.put_capacity(account_id, {"Dedicated": {"python:128": 1}, "Policy": "wait", "MaxWaitMs": 500})
    assert stored["MaxWaitMs"] == 500 and stored["Policy"] == "wait", stored
    wait_pools(srv, lambda p: p["ActiveIdle"] + (dedicated(p, account_id, "python:128") or {}).get("Idle", 0) >= 1,
               FILL_TIMEOUT_S, "the account's sandbox is idle again")
    before = srv.metrics()
    blocker = Background(lambda: invoke_ok(client, f1, {"op": "sleep", "seconds": BLOCK_S}))
    wait_pools(srv, nothing_idle_for(srv, account_id), FILL_TIMEOUT_S, "the blocker holds the account's sandbox")
    assert not blocker.done, "the blocker ended before the probe was sent: the host is too slow for this test"
    assert_throttled(lambda: invoke(client, f1, {"op": "id"}), "wait with MaxWaitMs 500 while the only sandbox is busy")
    assert not blocker.done, "the blocker ended before the probe's 429: the wait could have been served"
    blocker.get()
    m = srv.metrics()
    assert m.value("hearth_queue_wait_seconds_count", outcome="timeout") - \
        before.value("hearth_queue_wait_seconds_count", outcome="timeout") == 1, \
        [s for s in m.samples if s[0].startswith("hearth_queue")]
    assert placements_delta(before, m).get("rejected") == 1, placements_delta(before, m)


def test_policy_reject_answers_429_at_once(servers):
    srv, acct, client = tight_server(servers, "reject", "reject")
    account_id = acct["AccountId"]
    f1, f2 = create_cap_fn(client), create_cap_fn(client)
    before = srv.metrics()
    blocker = Background(lambda: invoke_ok(client, f1, {"op": "sleep", "seconds": BLOCK_S}))
    wait_pools(srv, nothing_idle_for(srv, account_id), FILL_TIMEOUT_S, "the blocker holds the dedicated sandbox")
    assert not blocker.done, "the blocker ended before the probe was sent: the host is too slow for this test"
    # `reject` never bursts into the general sub-pool (it has an idle sandbox) and the budget is full.
    assert (general(srv.pools(), "python:128") or {}).get("Idle") == 1
    for name in (f2, f1):
        assert_throttled(lambda: invoke(client, name, {"op": "id"}), f"reject while the dedicated sandbox is busy ({name})")
    assert not blocker.done, "the blocker ended before the probes' 429s"
    assert srv.pools()["Queued"] == 0
    first = blocker.get()
    assert first.placement == "dedicated", first.describe()
    assert placements_delta(before, srv.metrics()) == {"dedicated": 1, "rejected": 2}
    # Once the sandbox is free, the function is served again (warm).
    again = invoke_ok(client, f1, {"op": "id"})
    assert again.placement == "warm", again.describe()


# ---------------------------------------------------------------------------
# 6. The memory budget holds under a bounded load of many functions


BUDGET_MB = 768
JOB_ATTEMPTS = 40
BUDGET_CONFIG = f"""
[capacity]
memory_budget_mb = {BUDGET_MB}
general = [
  {{ profile = "python:128", min = 1, max = 2 }},
  {{ profile = "shell:128", min = 0, max = 1 }},
]
[microvm]
general = []
"""


@pytest.mark.skipif(not is_root(), reason=ROOT_REASON)
def test_memory_budget_is_never_exceeded(servers):
    srv = servers("budget", config=BUDGET_CONFIG)
    assert srv.cgroup is not None and srv.cgroup.memory_hierarchy_dir() is not None, \
        "no memory cgroup hierarchy for the server"
    wait_pools(srv, general_idle_at_least("python:128", 1), FILL_TIMEOUT_S, "the general python sandbox")
    # Two accounts, so that each may burst into its share of the general sub-pool.
    clients = [srv.client(), srv.account_client(srv.create_account())]
    fns = [(clients[i % 2], create_cap_fn(clients[i % 2])) for i in range(10)]
    jobs = [(c, n, 0.2 + 0.1 * (k % 3)) for k in range(3) for c, n in fns]

    stop = threading.Event()
    samples: list[tuple[int, list]] = []
    used: list[int] = []

    def sampler():
        deadline = time.monotonic() + THREAD_JOIN_S
        k = 0
        while not stop.is_set() and time.monotonic() < deadline:
            samples.append(memory_limit_sum(srv))
            k += 1
            if k % 3 == 0:
                used.append(srv.pools()["MemoryUsedMb"])
            time.sleep(0.005)

    results: list[object] = []
    lock = threading.Lock()
    it = iter(jobs)

    def worker():
        for _ in range(len(jobs)):
            with lock:
                job = next(it, None)
            if job is None:
                return
            c, n, secs = job
            # A throttled job is tried again (bounded), so the load keeps
            # the node at its budget and cold starts must evict idle sandboxes.
            for _ in range(JOB_ATTEMPTS):
                try:
                    r: object = invoke(c, n, {"op": "sleep", "seconds": secs})
                except ClientError as e:
                    r = e
                with lock:
                    results.append(r)
                if not throttled(r):
                    break
                time.sleep(0.05)

    s = threading.Thread(target=sampler, daemon=True)
    s.start()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=THREAD_JOIN_S)
    assert not any(w.is_alive() for w in workers), "the load did not end"
    # After the load, every function is served again (idle sandboxes give way).
    after = [invoke(c, n, {"op": "id"}) for c, n in fns]
    stop.set()
    s.join(timeout=30)

    assert len(results) >= len(jobs)
    ok = [r for r in results if isinstance(r, Invocation)]
    refused = [r for r in results if isinstance(r, ClientError)]
    for r in ok:
        assert r.status == 200 and r.function_error is None, r.describe()
    for e in refused:
        assert throttled(e), f"neither success nor 429: {e.response.get('Error')} {e.response['ResponseMetadata']}"
    assert ok, "no invocation succeeded under the load"
    for inv in after:
        assert inv.status == 200 and inv.function_error is None, inv.describe()

    assert samples, "no cgroup sample taken"
    worst, worst_seen = max(samples, key=lambda s: s[0])
    evicted = srv.metrics().value("hearth_evictions_total", reason="memory-budget")
    print(f"budget test: {len(ok)} served, {len(refused)} throttled, {evicted:.0f} evicted for the budget, "
          f"{len(samples)} cgroup samples, "
          f"max {worst // MIB} MiB over {len(worst_seen)} sandboxes, max MemoryUsedMb {max(used or [0])}")
    over = [s for s in samples if s[0] > BUDGET_MB * MIB]
    assert not over, (
        f"{len(over)} of {len(samples)} samples of the sandbox cgroups' memory limits exceed the budget "
        f"{BUDGET_MB} MiB (MemoryUsedMb peaked at {max(used or [0])}); the worst, {worst / MIB:.0f} MiB, "
        f"(sandbox cgroup, limit MiB, processes, of which exiting): {worst_seen}")
    assert max(used or [0]) <= BUDGET_MB, f"MemoryUsedMb reached {max(used)} > {BUDGET_MB}"


# ---------------------------------------------------------------------------
# 7. /tmp is the sandbox's own


def test_tmp_is_never_shared_across_accounts_or_sandbox_lives(cap, cap_log_on_failure):
    a = cap.create_account()
    b = cap.create_account()
    ca, cb = cap.account_client(a), cap.account_client(b)
    code = cap_zip()  # the same code in both accounts
    fa, fb = unique_name("tmp-a"), unique_name("tmp-b")
    create_fn(ca, fa, zip_bytes=code, handler="cap.handler", Timeout=30)
    create_fn(cb, fb, zip_bytes=code, handler="cap.handler", Timeout=30)
    n = nonce()

    wrote = invoke_ok(ca, fa, {"op": "tmp-write", "nonce": n}).json()
    assert wrote["exists"] and wrote["markers"] == [f"marker-{n}"], wrote
    seen = invoke_ok(ca, fa, {"op": "tmp-check", "nonce": n})
    assert seen.placement == "warm" and seen.json()["exists"], seen.describe()  # the same sandbox still has it

    other = invoke_ok(cb, fb, {"op": "tmp-check", "nonce": n}).json()
    assert not other["exists"] and other["markers"] == [], f"account B sees account A's /tmp: {other}"
    assert other["uid"] != wrote["uid"] or not is_root(), (other, wrote)

    # Retire A's sandbox (a configuration update), then invoke again: a new sandbox, an empty /tmp.
    ca.update_function_configuration(FunctionName=fa, Description="retire the sandbox " + nonce())
    ca.get_waiter("function_updated_v2").wait(FunctionName=fa, WaiterConfig={"Delay": 0.25, "MaxAttempts": 240})
    if is_root():
        gone = wait_until(lambda: not processes_of_uid(wrote["uid"], cap), timeout=GONE_TIMEOUT_S)
        assert gone, f"the retired sandbox (uid {wrote['uid']}) still runs"
    fresh = invoke_ok(ca, fa, {"op": "tmp-check", "nonce": n})
    body = fresh.json()
    assert body["boot"] != wrote["boot"], "the retired sandbox served again"
    assert fresh.placement != "warm", fresh.describe()
    assert not body["exists"] and body["markers"] == [], f"a new sandbox of account A sees the old /tmp: {body}"


# ---------------------------------------------------------------------------
# 8. The CLI: hearth pools, hearth capacity


def test_cli_pools_and_capacity(cap, cap_log_on_failure):
    table = cap.cli("pools").stdout
    for needle in ("POOL", "python:128", "shell:128", "runtime", "memory:"):
        assert needle in table, f"{needle!r} not in `hearth pools`:\n{table}"
    as_json = json.loads(cap.cli("pools", "--json").stdout)
    for k in ("General", "Dedicated", "Provisioned", "ActiveIdle", "MemoryUsedMb", "MemoryBudgetMb", "Queued"):
        assert k in as_json, (k, as_json)
    assert general(as_json, "python:128") is not None, as_json

    acct = cli_account(cap)
    account_id = acct["AccountId"]
    # A non-admin account may see neither the pools nor capacity settings.
    r = cap.raw("GET", "/hearth/v1/pools", access_key=acct["AccessKeyId"], secret=acct["SecretAccessKey"])
    assert r.status == 403, (r.status, r.body)
    r = cap.raw("GET", f"/hearth/v1/accounts/{account_id}/capacity",
                access_key=acct["AccessKeyId"], secret=acct["SecretAccessKey"])
    assert r.status == 403, (r.status, r.body)

    default = json.loads(cap.cli("capacity", "get", account_id, "--json").stdout)
    assert default == {"AccountId": account_id, "Dedicated": {}, "Policy": "burst", "MaxWaitMs": 1000,
                       "GeneralShare": 0.5}, default
    out = cap.cli("capacity", "set", account_id, "--dedicated", "python:128=1", "--policy", "wait",
                  "--max-wait-ms", "1500", "--general-share", "0.25", "--json").stdout
    want = {"AccountId": account_id, "Dedicated": {"python:128": 1}, "Policy": "wait", "MaxWaitMs": 1500,
            "GeneralShare": 0.25}
    assert json.loads(out) == want, out
    assert json.loads(cap.cli("capacity", "get", account_id, "--json").stdout) == want
    assert cap.get_capacity(account_id) == want
    text = cap.cli("capacity", "get", account_id).stdout
    for needle in ("wait", "1500", "python:128=1"):
        assert needle in text, f"{needle!r} not in `hearth capacity get`:\n{text}"
    p = wait_pools(cap, lambda p: (dedicated(p, account_id, "python:128") or {}).get("Idle") == 1,
                   FILL_TIMEOUT_S, "the dedicated sandbox set through the CLI is built")
    assert dedicated(p, account_id, "python:128")["Target"] == 1, p
    table = cap.cli("pools").stdout
    assert any(line.split()[:2] == ["dedicated", "python:128"] and account_id in line
               for line in table.splitlines()), f"`hearth pools` has no row for the dedicated sub-pool:\n{table}"
    shown = wait_until(lambda: cap.metrics().get("hearth_pool_sandboxes", pool="dedicated", profile="python:128",
                                                 account=account_id) == 1, timeout=SETTLE_TIMEOUT_S)
    assert shown, [s for s in cap.metrics().samples if s[0] == "hearth_pool_sandboxes"]

    # Its invocations draw it as `dedicated`.
    client = cap.account_client(acct)
    name = create_cap_fn(client)
    inv = invoke_ok(client, name, {"op": "id"})
    assert inv.placement == "dedicated", inv.describe()
    assert report_has_init(inv), inv.report

    # A refused setting changes nothing.
    bad = cap.cli("capacity", "set", account_id, "--dedicated", "python:100=1", check=False)
    assert bad.returncode != 0 and "python:100" in (bad.stderr + bad.stdout), bad
    assert cap.get_capacity(account_id) == want

    out = cap.cli("capacity", "set", account_id, "--no-dedicated", "--policy", "burst", "--json").stdout
    assert json.loads(out)["Dedicated"] == {} and json.loads(out)["Policy"] == "burst", out
    wait_pools(cap, lambda p: (dedicated(p, account_id, "python:128") or {}).get("Idle", 0) == 0,
               FILL_TIMEOUT_S, "the dedicated sub-pool empties once the setting is removed")

    # `hearth pools --watch` refreshes until stopped.
    proc = subprocess.Popen([str(hearth_bin()), "pools", "--watch"], env={
        "PATH": "/usr/bin:/bin", "HEARTH_ENDPOINT": cap.endpoint, "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    }, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        time.sleep(2.5)
        assert proc.poll() is None, f"`hearth pools --watch` exited {proc.returncode}: {proc.stderr.read()}"
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
    assert out.count("python:128") >= 2, f"`hearth pools --watch` did not refresh:\n{out}\n{err}"
